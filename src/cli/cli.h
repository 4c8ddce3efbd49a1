// cli.h — subcommands of the camoxpert program and the shared option parser.
// Each command lives in cmd_<name>.c and is listed in main.c's table.
//
//   int verbose = 0; const char *out = NULL;
//   CliOpt opts[] = {
//       { "out", OPT_STR, &out, "directory to write into", "DIR" },
//       { "verbose", OPT_FLAG, &verbose, "print more", NULL },
//   };
//   int parsed = cli_parse(argc, argv, "synth", opts, CLI_N(opts), NULL, 0);
//   if (parsed) return parsed == CLI_HELP ? 0 : 2;
#pragma once
#include "core/core.h"
#include <stdio.h>

#define CAMOXPERT_VERSION "0.1.0"

typedef enum { OPT_FLAG, OPT_INT, OPT_INT64, OPT_FLOAT, OPT_DOUBLE, OPT_STR, OPT_STRS } cli_opt_kind;

// An option that may be given several times (OPT_STRS): its values in order.
#define CLI_STRS_MAX 64
typedef struct { const char *v[CLI_STRS_MAX]; int n; } CliStrs;

typedef struct {
    const char *name;      // without the leading "--"
    cli_opt_kind kind;
    void *dst;             // int*, int64_t*, float*, double*, const char**; OPT_FLAG: int* set to 1;
                           // OPT_STRS: CliStrs*, one value per time the option is given
    const char *help;
    const char *metavar;   // shown in --help ("N", "DIR"); for OPT_STR with choices: "a|b|c"
    const char *choices;   // OPT_STR only: "a|b|c" restricts the value; NULL allows any
    int seen;              // set by cli_parse when the option was given
} CliOpt;

#define CLI_N(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define CLI_HELP 1000      // cli_parse returns this after printing --help

// Parses argv[1..] (argv[0] is the command name). Positional arguments are
// stored into pos[0..max_pos-1] (or rejected when max_pos is 0); *n_pos gets
// their count when pos is non-NULL. Returns 0, CLI_HELP, or 2 after printing an
// error that names the option and suggests the closest known one. A command's
// --threads option (OPT_INT named "threads") is checked and applied here, by
// cli_threads: one rule for every command.
int cli_parse(int argc, char **argv, const char *cmd, CliOpt *opts, int n_opts,
              const char **pos, int max_pos, int *n_pos, const char *synopsis);
void cli_print_help(FILE *fp, const char *cmd, const char *synopsis, const CliOpt *opts, int n_opts);
const CliOpt *cli_find(const CliOpt *opts, int n_opts, const char *name);
int cli_seen(const CliOpt *opts, int n_opts, const char *name);

// The options that give a checkpoint without a model config (a reference PyTorch one)
// its model — --backbone, --use-sparse-moe, --num-experts, --top-k — as rows of a
// command's option table (predict, export), and which of them were given, as the
// MODEL_GIVEN_* bits of infer/open.h: a checkpoint that names its model is used as it
// names it, and a given option that disagrees is an error.
//
//   CliOpt opts[] = { ..., CLI_OPTS_CKPT_MODEL(&backbone, &sparse, &E, &k), ... };
//   unsigned given = cli_ckpt_model_given(opts, CLI_N(opts));
#define CLI_OPTS_CKPT_MODEL(backbone, sparse, E, k) \
    { "backbone", OPT_STR, backbone, "for a checkpoint without a model config (a reference one, converted with " \
      "tools/pth_to_safetensors.py): the EdgeNeXt variant; a checkpoint that names its model is used as it names " \
      "it", "NAME", NULL, 0 }, \
    { "use-sparse-moe", OPT_FLAG, sparse, "with --backbone: the checkpoint is a sparse model", NULL, NULL, 0 }, \
    { "num-experts", OPT_INT, E, "with --backbone --use-sparse-moe: experts per scale", "E", NULL, 0 }, \
    { "top-k", OPT_INT, k, "with --backbone --use-sparse-moe: experts per image", "K", NULL, 0 }
unsigned cli_ckpt_model_given(const CliOpt *opts, int n_opts);

// --threads N of command cmd: 0 = all cores; negative or above cx_threads_max()
// prints an error naming the value and the limit and returns 2; else sets the
// OpenMP/OpenBLAS thread count and returns 0.
int cli_threads(const char *cmd, int threads);
// The same range rule for a worker-thread option (--num-workers, --workers; >= 1).
int cli_workers(const char *cmd, const char *opt, int workers);

// The local launcher (launch.c): runs "camoxpert ARGV..." (argv[0] = the command
// name) as nprocs ranks with torchrun's environment and a rendezvous on 127.0.0.1:port
// (port <= 0: a free one), passes Ctrl-C/SIGTERM on, stops every rank when one fails
// and names it. Returns rank 0's exit status, or the failed rank's (non-zero).
int launch_ranks(const char *cmd, int nprocs, int port, int argc, char **argv);
int launch_free_port(void);

// Subcommands (return the process exit status).
int cmd_version(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_report(int argc, char **argv);
