"""runlog.py — the step records of a camoxpert run's train_log.jsonl, for the summaries that
scripts/gpu_run.sh prints on the GPU machine (dev tool; the program never needs Python).

    steps(run_dir)                  -> [(loss, grad_norm), ...] in step order
    steps(run_dir, keys=("loss",))  -> [(loss,), ...]
"""
import json


def steps(run_dir, keys=("loss", "grad_norm")):
    out = []
    with open(f"{run_dir}/train_log.jsonl") as f:
        for line in f:
            j = json.loads(line)
            if j.get("type") == "step":
                out.append(tuple(j[k] for k in keys))
    return out
