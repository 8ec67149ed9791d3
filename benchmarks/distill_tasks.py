"""Distil every task over several seeds and write ``benchmarks/results/{task}.json``.

    python benchmarks/distill_tasks.py                       # all four tasks, seeds 0 1 2, every variant
    python benchmarks/distill_tasks.py --tasks sst2 --variants head --jobs 2

Each (variant, task, seed) is one ``python -m condense.distill`` run under ``runs/benchmark/``; a run whose
``metrics.json`` is filled in is reused, so an interrupted benchmark resumes. Figures are the mean ± std over seeds of
each seed's mean over fresh models (``n`` seeds, each over ``inits`` fresh models).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from condense.cache import atomic_write_text, finish_interrupted_writes, locked

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "benchmark"
TASKS = ("ag_news", "sst2", "rotten_tomatoes", "imdb")
# The first variant is the library's default configuration; its figures are the file's top-level metrics.
VARIANTS = {
    "head": ["distill=head"],
    "head_embedding": ["distill=head", "distill.projection=none", "eval.finetune.n_inits=0"],
    # Every learned-protocol model re-encodes the test subsample and each baseline's labels cost a whole
    # full-parameter distillation (~1-2 s an outer step here), so this variant keeps the random baseline only.
    "all": ["distill=all", "distill.projection=none", "eval.finetune.n_inits=0", "eval.baselines=[random]"],
}
VARIANT_TASKS = {"all": ("ag_news",)}  # full-parameter unrolls cost ~1 s a step on this CPU


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, 1 torch thread per run"


def finished(out: Path) -> bool:
    finish_interrupted_writes(out)  # a save killed between two renames: its files are read only once complete
    # metrics.json is written empty when distillation ends and filled once evaluation ends.
    return (out / "metrics.json").exists() and bool(json.loads((out / "metrics.json").read_text()).get("learned"))


def run_unless_finished(variant: str, task: str, seed: int, out: Path) -> None:
    if finished(out):
        return
    command = [sys.executable, "-m", "condense.distill", f"task={task}", *VARIANTS[variant], f"distill.seed={seed}", f"out={out}"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    atomic_write_text(out / "wall_seconds.txt", f"{time.perf_counter() - started:.1f}\n")
    print(f"done {variant} {task} seed {seed}", flush=True)


def run_one(variant: str, task: str, seed: int) -> dict:
    out = RUNS / variant / task / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    # Several benchmark processes may share the queue (e.g. one per variant): one run at a time per folder.
    with locked(out / "run"):
        run_unless_finished(variant, task, seed, out)
        finish_interrupted_writes(out)
    meta = json.loads((out / "meta.json").read_text())
    return {
        "metrics": json.loads((out / "metrics.json").read_text()),
        "distill_seconds": meta["progress"]["seconds"],
        "wall_seconds": float((out / "wall_seconds.txt").read_text()) if (out / "wall_seconds.txt").exists() else None,
        "texts": (out / "text.jsonl").read_text().splitlines(),
    }


def aggregate(runs: list[dict]) -> dict:
    """Mean ± std over seeds of each seed's mean, per protocol and set."""
    summary: dict = {}
    for protocol in ("learned", "finetune"):
        names = runs[0]["metrics"].get(protocol, {})
        for name in names:
            means = [r["metrics"][protocol][name]["mean"] for r in runs]
            summary.setdefault(protocol, {})[name] = {
                "mean": statistics.fmean(means),
                "std": statistics.stdev(means) if len(means) > 1 else 0.0,
                "n": len(means),
                "inits": runs[0]["metrics"][protocol][name]["n"],
                "std_within_seed": statistics.fmean(r["metrics"][protocol][name]["std"] for r in runs),
                "per_seed": means,
            }
    seconds = [r["distill_seconds"] for r in runs]
    summary["distill_seconds"] = {"mean": statistics.fmean(seconds), "max": max(seconds)}
    walls = [r["wall_seconds"] for r in runs if r["wall_seconds"] is not None]
    if walls:
        summary["wall_seconds"] = {"mean": statistics.fmean(walls), "max": max(walls)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    parser.add_argument("--no-run", action="store_true", help="only aggregate the runs that have finished")
    args = parser.parse_args()

    # Seed-major order: runs in parallel are of different tasks, so none waits on another's shared
    # full-data reference (computed once per task, under a lock).
    jobs = [
        (variant, task, seed)
        for variant in args.variants
        for seed in args.seeds
        for task in args.tasks
        if task in VARIANT_TASKS.get(variant, TASKS)
    ]
    if args.no_run:
        jobs = [job for job in jobs if finished(RUNS / job[0] / job[1] / f"seed{job[2]}")]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(lambda job: run_one(*job), jobs)))

    RESULTS.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        path = RESULTS / f"{task}.json"
        report = json.loads(path.read_text()) if path.exists() else {"task": task, "variants": {}}
        for variant in args.variants:
            seeds = [seed for seed in args.seeds if (variant, task, seed) in results]
            if not seeds:
                continue
            summary = aggregate([results[(variant, task, seed)] for seed in seeds])
            summary["seeds"] = seeds
            summary["overrides"] = VARIANTS[variant]
            summary["texts_seed0"] = results[(variant, task, seeds[0])]["texts"]
            report["variants"][variant] = summary
        default = report["variants"].get("head")
        if default:
            report["learned"], report["finetune"] = default["learned"], default.get("finetune", {})
        report.update(
            seeds=args.seeds,
            machine=machine(),
            command=f"python benchmarks/distill_tasks.py --tasks {task} --seeds {' '.join(map(str, args.seeds))}",
        )
        atomic_write_text(path, json.dumps(report, indent=1) + "\n")
        print(f"wrote {path}")
        for variant, summary in report["variants"].items():
            print(f"  {variant}: " + ", ".join(
                f"{name} {100 * v['mean']:.1f}±{100 * v['std']:.1f}" for name, v in summary["learned"].items()
            ))


if __name__ == "__main__":
    main()
