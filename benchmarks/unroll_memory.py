"""Seconds per outer step and peak memory of full-parameter distillation against the number of unrolled inner
steps T, with the whole unroll kept for BPTT (``distill.bptt=full``) or recomputed step by step (``checkpoint``).

    python benchmarks/unroll_memory.py                  # writes benchmarks/results/unroll_memory.json
    python benchmarks/unroll_memory.py --device cuda --seeds 0 1 2

AG News, MiniLM, 1 example per class, the ``all`` preset (every encoder weight trains, 32 real examples a step)
with ``distill.inner_steps=T``. Each (T, bptt, seed) runs in its own process, so that its peak memory is its own:
peak resident memory (``ru_maxrss``) on a CPU, ``torch.cuda.max_memory_allocated`` on CUDA, next to the baseline
(model and data, measured right before the first outer step). A step is timed from one outer loss to the next
inside :func:`condense.distill.loop.distill`, so it is exactly distill's step; the first is a warm-up.
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
RESULTS = ROOT / "benchmarks" / "results" / "unroll_memory.json"
MODES = ("full", "checkpoint")

MEASURE = r"""
import json, resource, sys, time
import torch
import condense.distill.loop
from condense.config.parsing import compose, task_config
from condense.config.device import resolve_device
from condense.models.encoders import load_encoder
from condense.distill.loop import distill, initial_set
from condense.jobs.distill_task import load_task_config, real_data, task_labels

inner_steps, mode, steps, seed, device, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
torch.set_num_threads(threads)
# One warm-up step, the measured ones, and one more whose start ends the last measured step.
config = compose("config", ["distill=all", f"distill.inner_steps={inner_steps}", f"distill.bptt={mode}",
                            f"distill.seed={seed}", f"distill.outer_steps={steps + 2}"]).distill
task_cfg = task_config("ag_news", "bench")
task = load_task_config(task_cfg)
encoder = load_encoder("minilm", device=resolve_device(device))
cuda = encoder.device.type == "cuda"
labels = task_labels(task.train, encoder)
real = real_data(encoder, task, labels, None, task_cfg.max_length, config)
start = initial_set(encoder, task.train["text"], labels, task.label_names, config.ipc, config.seq_len, seed)


def memory_gib():
    if cuda:
        return torch.cuda.memory_allocated(encoder.device) / 2**30
    try:
        with open("/proc/self/statm") as statm:  # the resident set now, not the peak so far
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**30
    except OSError:
        return peak_gib()


def peak_gib():
    if cuda:
        return torch.cuda.max_memory_allocated(encoder.device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


starts, baseline, outer_loss = [], [], condense.distill.loop.outer_loss


def timed_outer_loss(*args, **kwargs):
    if cuda:
        torch.cuda.synchronize(encoder.device)  # the previous step's backward and update have finished
    if not starts:
        baseline.append(memory_gib())
        if cuda:
            torch.cuda.reset_peak_memory_stats(encoder.device)
    starts.append(time.perf_counter())
    return outer_loss(*args, **kwargs)


condense.distill.loop.outer_loss = timed_outer_loss
distill(encoder, real, start, config, progress=False)
seconds = [b - a for a, b in zip(starts[1:], starts[2:])]
print(json.dumps({"seconds_per_step": seconds, "peak_gib": peak_gib(), "baseline_gib": baseline[0],
                  "device": torch.cuda.get_device_name(encoder.device) if cuda else encoder.device.type,
                  "memory": "torch.cuda.max_memory_allocated" if cuda else "ru_maxrss (peak RSS)",
                  "seq_len": config.seq_len, "real_batch_size": config.real_batch_size,
                  "inner_optimizer": config.inner_optimizer, "torch": torch.__version__}))
"""


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def measure(inner_steps: int, mode: str, seed: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-c", MEASURE, str(inner_steps), mode, str(args.steps), str(seed), args.device, str(args.threads)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"T={inner_steps} bptt={mode} seed={seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    """Step times pooled over seeds (and their per-seed means' spread); memory as mean ± std over seeds."""
    per_seed = [statistics.fmean(r["seconds_per_step"]) for r in runs]
    growth = [r["peak_gib"] - r["baseline_gib"] for r in runs]
    return {
        "seconds_per_step": mean_std([s for r in runs for s in r["seconds_per_step"]]),
        "seconds_per_step_over_seeds": mean_std(per_seed),
        "peak_gib": mean_std([r["peak_gib"] for r in runs]),
        "baseline_gib": mean_std([r["baseline_gib"] for r in runs]),
        "peak_minus_baseline_gib": mean_std(growth),
        "runs": runs,
    }


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--ts", nargs="+", type=int, default=[1, 2, 4, 8], help="inner steps T")
    parser.add_argument("--steps", type=int, default=3, help="measured outer steps, after one warm-up step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="distillation seeds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes (a smoke run: elsewhere)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    configs: dict[str, dict] = {}
    for inner_steps in args.ts:
        for mode in MODES:
            runs = [measure(inner_steps, mode, seed, args) for seed in args.seeds]
            row = configs[f"T={inner_steps},{mode}"] = {"inner_steps": inner_steps, "bptt": mode, **summarise(runs)}
            print(f"T={inner_steps} {mode:>10}: {row['seconds_per_step']['mean']:.2f} ± "
                  f"{row['seconds_per_step']['std']:.2f} s/step, peak {row['peak_gib']['mean']:.2f} GiB", flush=True)

    lo, hi = min(args.ts), max(args.ts)
    peak = {mode: {t: configs[f"T={t},{mode}"]["peak_gib"]["mean"] for t in args.ts} for mode in MODES}
    growth = {mode: {t: configs[f"T={t},{mode}"]["peak_minus_baseline_gib"]["mean"] for t in args.ts} for mode in MODES}
    speed = {t: ratio(configs[f"T={t},checkpoint"]["seconds_per_step"]["mean"],
                      configs[f"T={t},full"]["seconds_per_step"]["mean"]) for t in args.ts}
    ratios = {
        f"peak_T{hi}_over_T{lo}": {mode: ratio(peak[mode][hi], peak[mode][lo]) for mode in MODES},
        f"peak_minus_baseline_T{hi}_over_T{lo}": {mode: ratio(growth[mode][hi], growth[mode][lo]) for mode in MODES},
        "seconds_checkpoint_over_full": {str(t): speed[t] for t in args.ts},
    }

    first = next(iter(configs.values()))["runs"][0]
    print(f"\nmemory: {first['memory']}\n\n| T | bptt | s / outer step | peak memory (GiB) | peak − baseline (GiB) | s/step checkpoint ÷ full |")
    print("|---|---|---|---|---|---|")
    for row in configs.values():
        cells = [str(row["inner_steps"]), row["bptt"],
                 f"{row['seconds_per_step']['mean']:.2f} ± {row['seconds_per_step']['std']:.2f}",
                 f"{row['peak_gib']['mean']:.2f} ± {row['peak_gib']['std']:.2f}",
                 f"{row['peak_minus_baseline_gib']['mean']:.2f} ± {row['peak_minus_baseline_gib']['std']:.2f}",
                 fmt(speed[row["inner_steps"]]) if row["bptt"] == "checkpoint" else ""]
        print("| " + " | ".join(cells) + " |")
    worst = max((s for s in speed.values() if s is not None), default=None)
    print(f"\npeak(T={hi}) / peak(T={lo}), checkpoint: {fmt(ratios[f'peak_T{hi}_over_T{lo}']['checkpoint'])} "
          f"(goal ≤ 2.5; full: {fmt(ratios[f'peak_T{hi}_over_T{lo}']['full'])}); "
          f"peak − baseline: {fmt(ratios[f'peak_minus_baseline_T{hi}_over_T{lo}']['checkpoint'])} "
          f"(full: {fmt(ratios[f'peak_minus_baseline_T{hi}_over_T{lo}']['full'])})")
    print(f"s/step checkpoint ÷ full at the same T: at most {fmt(worst)} (goal ≤ 1.5)")

    from distill_tasks import machine

    report = {
        "command": "python benchmarks/unroll_memory.py " + " ".join(sys.argv[1:]),
        "machine": machine().replace("1 torch thread", f"{args.threads} torch thread(s)"),
        "device": first["device"],
        "torch": first["torch"],
        "memory": first["memory"],
        "task": "ag_news", "model": "minilm", "ipc": 1, "preset": "distill=all",
        **{k: first[k] for k in ("seq_len", "real_batch_size", "inner_optimizer")},
        "warmup_steps": 1, "measured_steps": args.steps, "seeds": args.seeds, "threads": args.threads,
        "configs": configs,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
