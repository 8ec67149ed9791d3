"""How far the continual model's trained blocks move over each experience: for every parameter tensor, the RMS of
its change over the experience divided by its RMS before it; the median over tensors per experience and seed.

    python benchmarks/block_drift.py            # both two-task sequences, herding_replay, class-incremental
    python benchmarks/block_drift.py --seeds 0 1 2 3 4

It sets the a-priori size of ``continual.learner_distill.weight_noise`` (the drift a memory made when a task ends
meets during the next one). Writes ``benchmarks/results/block_drift.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

import condense  # noqa: F401  (registers torchvision's ops before Avalanche imports it)
from condense.cache import atomic_write_text
from condense.config.parsing import compose, task_config
from condense.continual.strategies import run_strategy
from condense.jobs.distill_task import job_encoder, load_task_config
from condense.report.tables import machine
from condense.jobs.sequence import sequence_data
from avalanche.core import SupervisedPlugin

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "block_drift.json"
SEQUENCES = ("agnews_then_sst2", "sst2_then_agnews")


class BlockDrift(SupervisedPlugin):
    """The median over the trained blocks' tensors of RMS(change) / RMS(before), for each experience."""

    def __init__(self):
        super().__init__()
        self.before: dict[str, torch.Tensor] = {}
        self.medians: list[float] = []

    def before_training_exp(self, strategy, *args, **kwargs):
        self.before = {name: p.detach().clone() for name, p in strategy.model.blocks.named_parameters()}

    def after_training_exp(self, strategy, *args, **kwargs):
        ratios = [float((p.detach() - self.before[name]).pow(2).mean().sqrt() / self.before[name].pow(2).mean().sqrt())
                  for name, p in strategy.model.blocks.named_parameters()]
        self.medians.append(statistics.median(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategy", default="herding_replay")
    parser.add_argument("--scenario", default="class", choices=["class", "task"])
    args = parser.parse_args()
    started = time.perf_counter()
    results = {"command": shlex.join(["python", "benchmarks/block_drift.py", *sys.argv[1:]]),
               "preset": "continual=full", "strategy": args.strategy, "scenario": args.scenario, "seeds": args.seeds,
               "sequences": {}}
    for sequence in SEQUENCES:
        job = compose("run", ["continual=full", "threads=1", f"task_sequence={sequence}"])
        torch.set_num_threads(job.threads)
        task_cfgs = [task_config(entry) for entry in job.task_sequence.tasks]
        encoder = job_encoder(job)
        tasks = [load_task_config(task_cfg) for task_cfg in task_cfgs]
        data = sequence_data(encoder, tasks, task_cfgs, {}, args.scenario, job)
        per_seed = []
        for seed in args.seeds:
            probe = BlockDrift()
            run_strategy(args.strategy, encoder, data, job.continual, seed, probes=[probe])
            per_seed.append(probe.medians)
        experiences = list(zip(*per_seed))
        results["sequences"][" -> ".join(t.name for t in task_cfgs)] = {
            "per_seed": per_seed,
            "mean": [statistics.mean(e) for e in experiences],
            "std": [statistics.stdev(e) if len(e) > 1 else 0.0 for e in experiences],
        }
    results["machine"], results["seconds"] = machine(), time.perf_counter() - started
    atomic_write_text(RESULTS, json.dumps(results, indent=1) + "\n")
    print("| sequence | " + " | ".join(f"experience {i + 1}" for i in range(2)) + " |\n|---|---:|---:|")
    for name, drift in results["sequences"].items():
        print(f"| {name} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(drift["mean"], drift["std"])) + " |")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
