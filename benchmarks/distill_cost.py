"""Outer steps per second and peak memory of distillation for each inner parameter subset.

    python benchmarks/distill_cost.py            # writes benchmarks/results/distill_cost.json

Each (mode, seed) runs in its own process, so that peak resident memory (``ru_maxrss``) is that mode's alone:
AG News, MiniLM, 1 example per class, the mode's default config from ``configs/distill/``, 1 torch thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from condense.cache import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distill_cost.json"
MODES = {"head": ("head", 60), "last_n_layers=1": ("last_layer", 10), "all": ("all", 6)}

MEASURE = r"""
import json, resource, sys, time
import torch
from condense.config.parsing import compose
from condense.models.features import text_features
from condense.distill.loop import distill, initial_set
from condense.jobs.distill_task import job_encoder, load_task_config, real_data, task_labels

preset, steps, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
job = compose("config", ["task=ag_news", f"distill={preset}", f"distill.outer_steps={steps}", f"distill.seed={seed}"])
task = load_task_config(job.task)
config = job.distill
encoder = job_encoder(job)
labels = task_labels(task.train, encoder)
features = text_features(encoder, task.train["text"], job.task.max_length)
real = real_data(encoder, task, labels, features, job.task.max_length, config)
start = initial_set(encoder, task.train["text"], labels, task.label_names, config.ipc, config.seq_len, seed)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = distill(encoder, real, start, config, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"steps_per_second": steps / result.progress.seconds, "peak_rss_gib": peak / 2**20,
                  "rss_before_gib": before / 2**20, "seq_len": config.seq_len, "inner_steps": config.inner_steps,
                  "real_batch_size": config.real_batch_size}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    report: dict = {"command": "python benchmarks/distill_cost.py", "task": "ag_news", "ipc": 1, "modes": {}}
    for mode, (preset, steps) in MODES.items():
        runs = []
        for seed in args.seeds:
            output = subprocess.run(
                [sys.executable, "-c", MEASURE, preset, str(steps), str(seed)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            ).stdout
            runs.append(json.loads(output.strip().splitlines()[-1]))
        rates = [r["steps_per_second"] for r in runs]
        peaks = [r["peak_rss_gib"] for r in runs]
        report["modes"][mode] = {
            "preset": f"distill={preset}",
            "outer_steps_measured": steps,
            "steps_per_second": {"mean": statistics.fmean(rates), "std": statistics.stdev(rates) if len(rates) > 1 else 0.0},
            "peak_rss_gib": {"mean": statistics.fmean(peaks), "std": statistics.stdev(peaks) if len(peaks) > 1 else 0.0},
            "rss_before_distill_gib": statistics.fmean(r["rss_before_gib"] for r in runs),
            **{k: runs[0][k] for k in ("seq_len", "inner_steps", "real_batch_size")},
        }
        row = report["modes"][mode]
        print(f"{mode:>16}: {row['steps_per_second']['mean']:.2f} ± {row['steps_per_second']['std']:.2f} outer steps/s, "
              f"peak {row['peak_rss_gib']['mean']:.2f} GiB", flush=True)
    from distill_tasks import machine

    report["machine"] = machine()
    report["seeds"] = args.seeds
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(report, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
