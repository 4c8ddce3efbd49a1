// cmd_train.c — `camoxpert train`: the reference trainer's options (same names,
// so its launch lines carry over) turned into a TrainConfig for train/trainer.h.
// With --resume-from, options the command line leaves out are taken from the
// checkpoint's metadata (the options of the run that wrote it), so
// `camoxpert train --resume-from runs/a/last.safetensors` continues that run as it was,
// writing beside the checkpoint it resumes (never into a directory the file names).
// Ctrl-C (SIGINT) or SIGTERM asks the trainer to checkpoint at the next step and
// stop; a second Ctrl-C stops at once. --report keeps CHECKPOINT_DIR/report.html
// (camoxpert report) up to date after every epoch.
// Data parallel (docs/MULTIGPU.md): under torchrun, Slurm or Open MPI each process is
// one rank (train/dist.h reads the environment); --gpus N / --procs N start and
// supervise N local ranks (launch.c). Each rank runs this same command.
#include "cli.h"
#include "nn/weights.h"
#include "ops/ops.h"
#include "report/report.h"
#include "train/dist.h"
#include "train/rundir.h"
#include "train/trainer.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void on_signal(int sig) {
    trainer_request_stop();
    signal(sig, SIG_DFL);   // a second signal ends the process
}

// Options not carried from a checkpoint into the resumed run.
static int run_local(const char *name) {
    static const char *const local[] = { "resume-from", "max-steps", "threads", "num-workers", "progress", "device",
                                         "precision", "checkpoint-dir", "overwrite", "gpus", "procs", "master-port",
                                         "use-ddp", "recompute", NULL };
    for (int i = 0; local[i]; i++) if (!strcmp(name, local[i])) return 1;
    return 0;
}

// The options given (explicitly or restored) as a JSON object of strings.
static char *options_json(const CliOpt *opts, int n) {
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < n; i++) {
        const CliOpt *o = &opts[i];
        if (!o->seen || run_local(o->name)) continue;
        char v[64];
        switch (o->kind) {
        case OPT_FLAG: snprintf(v, sizeof v, "%d", *(int *)o->dst); break;
        case OPT_INT: snprintf(v, sizeof v, "%d", *(int *)o->dst); break;
        case OPT_INT64: snprintf(v, sizeof v, "%lld", (long long)*(int64_t *)o->dst); break;
        case OPT_FLOAT: snprintf(v, sizeof v, "%.9g", (double)*(float *)o->dst); break;
        case OPT_DOUBLE: snprintf(v, sizeof v, "%.17g", *(double *)o->dst); break;
        case OPT_STR: {
            // Paths are kept absolute, so a resume from another directory finds them.
            char abs[PATH_MAX];
            const char *s = *(const char **)o->dst;
            int path = !strcmp(o->name, "dataset-path") || !strcmp(o->name, "backbone-weights");
            cJSON_AddStringToObject(j, o->name, path && realpath(s, abs) ? abs : s);
            continue;
        }
        case OPT_STRS: continue;   // train has no repeatable option
        }
        cJSON_AddStringToObject(j, o->name, v);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *out = cx_strdup(s);
    cJSON_free(s);
    return out;
}

// The command line as a shell would take it back ("camoxpert train ..."), for the log.
static char *command_line(int argc, char **argv) {
    size_t cap = 16;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 3;
    char *s = cx_malloc(cap), *o = s + sprintf(s, "camoxpert");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int plain = *a != 0;
        for (const char *p = a; *p && plain; p++) plain = strchr("/._-=,:+@%", *p) || (*p >= '0' && *p <= '9') ||
                                                          ((*p | 32) >= 'a' && (*p | 32) <= 'z');
        *o++ = ' ';
        if (plain) { o += sprintf(o, "%s", a); continue; }
        *o++ = '\'';
        for (const char *p = a; *p; p++) {
            if (*p == '\'') o += sprintf(o, "'\\''");
            else *o++ = *p;
        }
        *o++ = '\'';
    }
    *o = 0;
    return s;
}

// --report: the page written after each epoch (a failure to write it is a warning only).
static void refresh_report(void *arg) {
    if (report_write(arg, NULL)) log_warn("--report: %s", cx_errmsg());
}

// Second pass: the checkpoint's options that the command line did not give.
static int restore_options(const char *ckpt, CliOpt *opts, int n, char ***keep, int *n_keep, int verbose) {
    char *cfg = NULL;
    if (weights_read_config_json(ckpt, &cfg)) {
        fprintf(stderr, "error: --resume-from: %s\n", cx_errmsg());
        return 2;
    }
    cJSON *j = cfg ? cJSON_Parse(cfg) : NULL;
    free(cfg);
    const cJSON *to = j ? cJSON_GetObjectItemCaseSensitive(j, "train_options") : NULL;
    if (!to) { cJSON_Delete(j); return 0; }
    int cap = cJSON_GetArraySize(to) + 1, argc = 1;
    char **argv = cx_calloc((size_t)cap + 1, sizeof *argv);
    argv[0] = cx_strdup("train");
    const cJSON *it;
    cJSON_ArrayForEach(it, to) {
        const CliOpt *o = cli_find(opts, n, it->string);
        if (!o || o->seen || run_local(it->string) || !cJSON_IsString(it)) continue;
        char buf[4200];
        snprintf(buf, sizeof buf, "--%s=%s", it->string, it->valuestring);
        argv[argc++] = cx_strdup(buf);
    }
    cJSON_Delete(j);
    *keep = argv, *n_keep = argc;   // OPT_STR values point into these strings
    if (argc > 1 && verbose) {
        printf("from %s:", ckpt);
        for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
        printf("\n");
    }
    return cli_parse(argc, argv, "train", opts, n, NULL, 0, NULL, NULL) ? 2 : 0;
}

int cmd_train(int argc, char **argv) {
    TrainConfig c;
    train_config_default(&c);
    const char *scheduler = "cosine", *balance = "mse", *recompute = "auto";
    int threads = 0, progress = -1, report = 0, gpus = 0, procs = 0, master_port = 0, use_ddp = 0, cod_specialized = 0;
    int64_t seed = (int64_t)c.seed;
    CliOpt opts[] = {
        { "dataset-path", OPT_STR, &c.dataset_path, "training data: COD10K-v3, TrainDataset/{Imgs,GT}, CAMO or an Imgs/GT folder "
          "(camoxpert synth --out DIR makes one)", "DIR", NULL, 0 },
        { "checkpoint-dir", OPT_STR, &c.checkpoint_dir, "where last/best checkpoints and train_log.jsonl go (with "
          "--resume-from: the checkpoint's own directory)", "DIR", NULL, 0 },
        { "overwrite", OPT_FLAG, &c.overwrite, "start a new run in --checkpoint-dir even if it holds another run "
          "(that run's checkpoints and log are deleted)", NULL, NULL, 0 },
        { "backbone", OPT_STR, &c.backbone, "EdgeNeXt variant: edgenext_xx_small, edgenext_x_small, edgenext_small, edgenext_base, edgenext_small_rw", "NAME",
          "edgenext_xx_small|edgenext_x_small|edgenext_small|edgenext_base|edgenext_small_rw", 0 },
        { "backbone-weights", OPT_STR, &c.backbone_weights, "timm EdgeNeXt weights (safetensors) for the backbone", "FILE", NULL, 0 },
        { "batch-size", OPT_INT, &c.batch_size, "images per batch in stage 1", "N", NULL, 0 },
        { "stage2-batch-size", OPT_INT, &c.stage2_batch_size, "images per batch in stage 2 (0: --batch-size)", "N", NULL, 0 },
        { "img-size", OPT_INT, &c.img_size, "images are resized to S x S (a multiple of 32)", "S", NULL, 0 },
        { "epochs", OPT_INT, &c.epochs, "epochs over both stages", "N", NULL, 0 },
        { "stage1-epochs", OPT_INT, &c.stage1_epochs, "the first N epochs train everything but the backbone", "N", NULL, 0 },
        { "lr", OPT_DOUBLE, &c.lr, "stage 1 peak learning rate", "LR", NULL, 0 },
        { "stage2-lr", OPT_DOUBLE, &c.stage2_lr, "stage 2 peak learning rate", "LR", NULL, 0 },
        { "weight-decay", OPT_DOUBLE, &c.weight_decay, "AdamW decoupled weight decay (none on norms and biases)", "WD", NULL, 0 },
        { "scheduler", OPT_STR, &scheduler, "learning-rate schedule of each stage", "onecycle|cosine|cosine_restart|none",
          "onecycle|cosine|cosine_restart|none", 0 },
        { "min-lr", OPT_DOUBLE, &c.min_lr, "floor of the cosine schedules", "LR", NULL, 0 },
        { "warmup-epochs", OPT_DOUBLE, &c.warmup_epochs, "linear warm-up at the start of each stage", "N", NULL, 0 },
        { "t-mult", OPT_INT, &c.t_mult, "cosine_restart: period multiplier (T_0 = stage epochs / 4)", "N", NULL, 0 },
        { "accumulation-steps", OPT_INT, &c.accumulation_steps, "batches whose gradients are averaged per optimizer step", "N", NULL, 0 },
        { "grad-clip", OPT_DOUBLE, &c.grad_clip, "maximum global gradient norm (0: off)", "NORM", NULL, 0 },
        { "deep-supervision", OPT_FLAG, &c.deep_supervision, "add the deep-supervision loss term (0.4 x mean BCE of the three deep heads)", NULL, NULL, 0 },
        { "use-ema", OPT_FLAG, &c.use_ema, "keep an exponential moving average of the weights; validate and save best with it", NULL, NULL, 0 },
        { "ema-decay", OPT_DOUBLE, &c.ema_decay, "EMA decay (with --use-ema)", "D", NULL, 0 },
        { "progressive-unfreeze", OPT_FLAG, &c.progressive_unfreeze, "stage 2 unfreezes the backbone's last stage, then the last two, "
          "then all (thirds of stage 2)", NULL, NULL, 0 },
        { "resume-from", OPT_STR, &c.resume_from, "continue from a checkpoint (exactly, when its .state file is beside it); "
          "options not given are taken from it", "FILE", NULL, 0 },
        { "skip-stage1", OPT_FLAG, &c.skip_stage1, "start with stage 2 (e.g. from a stage-1 checkpoint's weights)", NULL, NULL, 0 },
        { "seed", OPT_INT64, &seed, "seed of the initialisation, split, shuffling and augmentation", "K", NULL, 0 },
        { "num-workers", OPT_INT, &c.num_workers, "data-loading threads", "N", NULL, 0 },
        { "skip-bad", OPT_FLAG, &c.skip_bad, "leave out (with a warning each) image/mask pairs the scan finds bad or "
          "unpaired instead of stopping", NULL, NULL, 0 },
        { "include-noncam", OPT_FLAG, &c.include_noncam, "COD10K: keep the NonCAM images (nothing hidden, empty masks)",
          NULL, NULL, 0 },
        { "cache", OPT_FLAG, &c.cache, "keep resized images in memory after the first epoch (small datasets)", NULL, NULL, 0 },
        { "use-sparse-moe", OPT_FLAG, &c.sparse, "sparse top-k mixture of experts (CamoXpertSparseMoE) instead of dense experts", NULL, NULL, 0 },
        { "num-experts", OPT_INT, &c.num_experts, "experts per scale (sparse)", "E", NULL, 0 },
        { "top-k", OPT_INT, &c.top_k, "experts each image uses per scale (sparse)", "K", NULL, 0 },
        { "lb-coef", OPT_DOUBLE, &c.lb_coef, "load-balancing loss coefficient (sparse)", "C", NULL, 0 },
        { "balance", OPT_STR, &balance, "load balancing (sparse): mse = the reference's squared deviation, switch = E*sum f*P, "
          "zloss = router z-loss, bias = auxiliary-loss-free selection bias", "mse|switch|zloss|bias", "mse|switch|zloss|bias", 0 },
        { "bias-update-rate", OPT_DOUBLE, &c.bias_rate, "--balance bias: bias step after each optimizer step", "R", NULL, 0 },
        { "router-lr-scale", OPT_DOUBLE, &c.router_lr_scale, "router learning rate = lr x this (sparse)", "S", NULL, 0 },
        { "routing", OPT_STR, &c.routing, "sparse: global = one choice of experts per image and scale; spatial = one per "
          "tile of a grid over each scale's map (docs/ROUTING.md)", "global|spatial", "global|spatial", 0 },
        { "route-grid", OPT_INT, &c.route_grid, "--routing spatial: at most GxG tiles per scale (fewer where a tile would "
          "be under 4 pixels a side)", "G", NULL, 0 },
        { "val-fraction", OPT_DOUBLE, &c.val_fraction, "share of the training images held out for validation (0: none)", "F", NULL, 0 },
        { "val-every", OPT_INT, &c.val_every, "validate every N epochs (and after the last)", "N", NULL, 0 },
        { "val-from-test", OPT_FLAG, &c.val_from_test, "accept a validation split drawn from a test set (--dataset-path "
          "a test set's folder: Test/, TestDataset/<set>, NC4K, ...), which is refused otherwise: the best epoch would "
          "be chosen on test images. A warning, recorded in train_log.jsonl and shown by camoxpert report", NULL, NULL, 0 },
        { "max-steps", OPT_INT64, &c.max_steps, "stop (checkpointing as on Ctrl-C) after N optimizer steps in total", "N", NULL, 0 },
        { "device", OPT_STR, &c.device, "where to train: cpu, cuda (GPU 0), cuda:N, or auto (a GPU when one is usable)",
          "cpu|cuda|cuda:N|auto", NULL, 0 },
        { "precision", OPT_STR, &c.precision, "arithmetic: bf16 (GPU: bf16 activations; a CPU with AMX-BF16 or "
          "AVX512-BF16: bf16 convolutions and matmuls; fp32 master weights and accumulation), fp32 (TF32 off), auto "
          "(bf16 on a GPU or on such a CPU, else fp32)", "fp32|bf16|auto", "fp32|bf16|auto", 0 },
        { "recompute", OPT_STR, &recompute, "what the forward keeps for the backward: none (every activation), cheap "
          "(convolution and GEMM outputs; element-wise, norm and activation outputs recomputed), blocks (each block's "
          "input; every backbone block, expert and head stage re-run in the backward), auto (the cheapest that fits "
          "the device's memory). The losses are the same to the last bit at every level (docs/TRAINING.md)",
          "none|cheap|blocks|auto", "none|cheap|blocks|auto", 0 },
        { "threads", OPT_INT, &threads, "compute threads (0: all cores)", "N", NULL, 0 },
        { "progress", OPT_INT, &progress, "1: progress bar, 0: plain lines, -1: bar when stdout is a terminal", "N", NULL, 0 },
        { "report", OPT_FLAG, &report, "write CHECKPOINT_DIR/report.html (camoxpert report: curves, routing, predictions "
          "of 12 validation images) after every epoch and at the end", NULL, NULL, 0 },
        { "gpus", OPT_INT, &gpus, "data parallel on N GPUs of this machine: starts and supervises N ranks (rank i on GPU i; "
          "--batch-size is per GPU). Under torchrun/Slurm/Open MPI leave it out: each process is a rank", "N", NULL, 0 },
        { "procs", OPT_INT, &procs, "the same with N processes on the CPU (cores/N threads each unless --threads or "
          "OMP_NUM_THREADS; --device cuda puts rank i on GPU i; for testing the multi-GPU path without GPUs)", "N",
          NULL, 0 },
        { "master-port", OPT_INT, &master_port, "--gpus/--procs: the rendezvous port on 127.0.0.1 (0: a free one)", "PORT",
          NULL, 0 },
        { "sync-bn", OPT_FLAG, &c.sync_bn, "data parallel: BatchNorm statistics over the global batch, as "
          "torch.nn.SyncBatchNorm (without it each rank's own, as the reference's DDP)", NULL, NULL, 0 },
        { "use-ddp", OPT_FLAG, &use_ddp, "the reference's DDP switch, accepted: the ranks come from the launcher "
          "(torchrun, Slurm, Open MPI, --gpus); with one process it changes nothing", NULL, NULL, 0 },
        { "use-cod-specialized", OPT_FLAG, &cod_specialized, "the reference's switch to its COD-specialised models "
          "(CamoXpertCOD; with --use-sparse-moe CamoXpertSparseMoE), accepted: they are the models camoxpert trains, "
          "with or without it", NULL, NULL, 0 },
    };
    const int n = CLI_N(opts);
    const char *syn = "--dataset-path DIR [--checkpoint-dir DIR] [--backbone NAME] [--use-sparse-moe ...] [options]";
    int rc = cli_parse(argc, argv, "train", opts, n, NULL, 0, NULL, syn);   // the exit status from here on
    if (rc) return rc == CLI_HELP ? 0 : 2;
    cx_oom_hint("reduce --batch-size or --img-size");
    // Who this process is: one of the ranks of a launcher, or the one process (maybe
    // about to launch --gpus/--procs ranks).
    DistEnv de;
    if (dist_env_read(&de)) {
        fprintf(stderr, "error: camoxpert train: %s\n", cx_errmsg());
        return 2;
    }
    const int nprocs = gpus ? gpus : procs;
    const int launched = getenv("CAMOXPERT_LAUNCHED") != NULL;
    if (gpus && procs) {
        fprintf(stderr, "error: camoxpert train: --gpus and --procs both given; --gpus N on GPUs, --procs N on --device\n");
        return 2;
    }
    if ((cli_seen(opts, n, "gpus") || cli_seen(opts, n, "procs")) && (nprocs < 1 || nprocs > 1024)) {
        fprintf(stderr, "error: camoxpert train: --%s %d: must be from 1 to 1024 ranks\n", gpus ? "gpus" : "procs", nprocs);
        return 2;
    }
    if (master_port < 0 || master_port > 65535) {
        fprintf(stderr, "error: camoxpert train: --master-port %d is not a TCP port (1-65535, or 0 for a free one)\n",
                master_port);
        return 2;
    }
    if (gpus && cli_seen(opts, n, "device") && strncmp(c.device, "cuda", 4)) {
        fprintf(stderr, "error: camoxpert train: --gpus %d with --device %s; --gpus trains on GPUs (use --procs %d for "
                "processes on the CPU)\n", gpus, c.device, gpus);
        return 2;
    }
    if (gpus) c.device = "cuda";
    // --procs: CPU ranks unless --device says otherwise (auto would give rank i GPU i where there are GPUs)
    if (procs && !cli_seen(opts, n, "device")) c.device = "cpu";
    if (gpus > 1 && !launched) {   // more GPUs than the machine has: said before any rank starts
        char why[160] = "";
        int have = ops_cuda_device_count(why, sizeof why);
        if (have < gpus) {
            fprintf(stderr, "error: camoxpert train: --gpus %d but this machine has %d usable GPU%s%s%s; lower --gpus (or "
                    "--procs %d to run the ranks on the CPU)\n", gpus, have, have == 1 ? "" : "s", why[0] ? ": " : "", why,
                    gpus);
            return 2;
        }
    }
    if (nprocs > 1 && !launched && de.world > 1) {
        fprintf(stderr, "error: camoxpert train: --%s %d inside a %s launch (%d ranks already); drop --%s: each process "
                "the launcher starts is one rank\n", gpus ? "gpus" : "procs", nprocs, de.source, de.world,
                gpus ? "gpus" : "procs");
        return 2;
    }
    if (launched && nprocs > 1 && de.world != nprocs) {
        fprintf(stderr, "error: camoxpert train: started by --%s %d but WORLD_SIZE=%d\n", gpus ? "gpus" : "procs", nprocs,
                de.world);
        return 2;
    }
    if (use_ddp && de.world == 1 && nprocs <= 1)
        printf("note: --use-ddp with one process (no torchrun/Slurm/Open MPI environment, no --gpus): training on one "
               "device as usual\n");
    // Threads per rank: the machine's cores shared by its ranks, unless told.
    if (!cli_seen(opts, n, "threads") && de.local_world > 1) {
        const char *omp = getenv("OMP_NUM_THREADS");
        int t = omp && atoi(omp) > 0 ? atoi(omp) : cx_threads_default() / de.local_world;
        threads = t < 1 ? 1 : t > cx_threads_max() ? cx_threads_max() : t;
        cx_threads_set(threads);
    }
    if ((rc = cli_workers("train", "num-workers", c.num_workers))) return rc;
    char **keep = NULL;
    int n_keep = 0;
    if (c.resume_from && io_path_exists(c.resume_from) && (rc = restore_options(c.resume_from, opts, n, &keep, &n_keep,
                                                                      de.rank == 0 && !(nprocs > 1 && !launched))))
        goto out;
    // A resumed run writes beside the checkpoint it resumes.
    char resume_dir[4200];
    if (c.resume_from && !cli_seen(opts, n, "checkpoint-dir")) {
        rundir_dirname(c.resume_from, resume_dir, sizeof resume_dir);
        c.checkpoint_dir = resume_dir;
    }
    // Contradictions the parser cannot see.
    static const char *const sparse_only[] = { "num-experts", "top-k", "lb-coef", "balance", "router-lr-scale",
                                               "bias-update-rate", "routing", "route-grid", NULL };
    for (int i = 0; sparse_only[i]; i++)
        if (cli_seen(opts, n, sparse_only[i]) && !c.sparse) {
            fprintf(stderr, "error: camoxpert train: --%s applies to sparse models only; add --use-sparse-moe or drop --%s\n",
                    sparse_only[i], sparse_only[i]);
            rc = 2;
            goto out;
        }
    if (cli_seen(opts, n, "route-grid") && strcmp(c.routing, "spatial")) {
        fprintf(stderr, "error: camoxpert train: --route-grid applies to --routing spatial only (not %s)\n", c.routing);
        rc = 2;
        goto out;
    }
    if (cli_seen(opts, n, "ema-decay") && !c.use_ema) {
        fprintf(stderr, "error: camoxpert train: --ema-decay without --use-ema does nothing; add --use-ema\n");
        rc = 2;
        goto out;
    }
    if (cli_seen(opts, n, "t-mult") && strcmp(scheduler, "cosine_restart")) {
        fprintf(stderr, "error: camoxpert train: --t-mult applies to --scheduler cosine_restart only (not %s)\n", scheduler);
        rc = 2;
        goto out;
    }
    if (cli_seen(opts, n, "bias-update-rate") && strcmp(balance, "bias")) {
        fprintf(stderr, "error: camoxpert train: --bias-update-rate applies to --balance bias only (not %s)\n", balance);
        rc = 2;
        goto out;
    }
    if ((c.progressive_unfreeze || cli_seen(opts, n, "stage2-lr") || cli_seen(opts, n, "stage2-batch-size")) &&
        c.stage1_epochs >= c.epochs && c.stage1_epochs > 0) {
        fprintf(stderr, "error: camoxpert train: --stage1-epochs %d = --epochs %d leaves no stage 2, so the stage-2 options "
                "(--stage2-lr, --stage2-batch-size, --progressive-unfreeze) have no effect; lower --stage1-epochs\n",
                c.stage1_epochs, c.epochs);
        rc = 2;
        goto out;
    }
    c.seed = (uint64_t)seed;
    lr_kind_parse(scheduler, &c.scheduler);
    if (nn_recompute_parse(recompute, &c.recompute)) {
        fprintf(stderr, "error: camoxpert train: %s\n", cx_errmsg());
        rc = 2;
        goto out;
    }
    if (moe_balance_parse(balance, &c.balance)) {
        fprintf(stderr, "error: %s\n", cx_errmsg());
        rc = 2;
        goto out;
    }
    c.progress = progress;
    if (train_config_check(&c)) {
        fprintf(stderr, "error: camoxpert train: %s", cx_errmsg());
        // A value the resume took from the checkpoint is said to be the checkpoint's, not the user's.
        for (int i = 1; i < n_keep; i++) {
            const char *eq = strchr(keep[i], '=');
            char name[128];
            snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - keep[i]) : 0, keep[i]);
            const char *m = strstr(cx_errmsg(), name);
            size_t L = strlen(name);
            if (eq && m && !((m[L] >= 'a' && m[L] <= 'z') || m[L] == '-'))
                fprintf(stderr, " (%s is %s's, from its training options; give %s to change it)", name, c.resume_from,
                        name);
        }
        fputc('\n', stderr);
        rc = 2;
        goto out;
    }
    if (nprocs > 1 && !launched) {   // the launcher: the ranks do the work
        rc = launch_ranks("train", nprocs, master_port, argc, argv);
        goto out;
    }
    char *oj = options_json(opts, n), *cl = command_line(argc, argv);
    c.options_json = oj;
    c.command_line = cl;
    Report *rep = NULL;
    if (report && de.rank == 0) {
        ReportOptions ro = report_options_default();
        ro.max_images = 12;
        ro.live = 1;
        ro.overwrite = c.overwrite;
        ro.opt = "--report";
        if (report_open(&rep, &c.checkpoint_dir, 1, &ro)) {
            fprintf(stderr, "error: camoxpert train: %s\n", cx_errmsg());
            free(oj);
            free(cl);
            rc = 2;
            goto out;
        }
        c.epoch_done = refresh_report;
        c.epoch_done_arg = rep;
        printf("report: %s, written after every epoch\n", report_path(rep));
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    TrainResult r;
    cx_status cs = trainer_run(&c, &r);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    char err[4096];
    snprintf(err, sizeof err, "%s", cx_errmsg());   // the training error, kept across the report's writing
    if (rep) {
        // The last word: how the run ended (done, stopped, failed) is in the log now
        // (there is no log when the run failed before its first record).
        char log[4200];
        snprintf(log, sizeof log, "%s/train_log.jsonl", c.checkpoint_dir);
        if (io_path_exists(log) && report_write(rep, stdout)) log_warn("--report: %s", cx_errmsg());
        report_close(rep);
    }
    free(oj);
    free(cl);
    if (cs) {
        fprintf(stderr, "error: %s\n", err);
        rc = cs == CX_EARG ? 2 : 1;
    } else {
        rc = r.interrupted && !c.max_steps ? 130 : 0;
    }
out:
    for (int i = 0; i < n_keep; i++) free(keep[i]);
    free(keep);
    return rc;
}
