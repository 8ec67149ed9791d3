"""Re-fitting the heads on the replay memory (``continual.refit``), chosen on held-out training rows, never the test
split: for every replay strategy and seed, the model as the last experience leaves it is copied, each refit variant
is applied to a copy, and every copy is scored on a validation sample of each task's training split outside the
continual sample (the rows no strategy trains on).

    python benchmarks/refit_validation.py                                   # AG News then SST-2, class-incremental
    python benchmarks/refit_validation.py task_sequence=sst2_then_agnews    # any python -m condense.run overrides
    python benchmarks/refit_validation.py --strategies=learner_distilled_replay   # adds a strategy to the file
    python benchmarks/refit_validation.py --name short continual.train_examples_per_task=64   # a variant, kept apart

Writes ``benchmarks/results/refit_validation_[{name}_]{sequence}.json`` and prints the table: each variant's accuracy on the
first task and on average, and its difference from no refit, paired by seed. The runs themselves are the plain
strategies (``continual.refit.steps`` stays 0 in them), so each variant starts from the same trained model.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import shlex
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import condense  # noqa: F401  (registers torchvision's ops before Avalanche imports it)
from condense.cache import atomic_write_text, to_jsonable
from condense.config.parsing import compose, sequence_name, task_config
from condense.continual.strategies import run_strategy
from condense.continual.model import accuracy
from condense.data.sampling import training_rows
from condense.jobs.distill_task import job_encoder, load_task_config
from condense.continual.refit import MemoryRefit
from condense.bench.refit_report import refit_table
from condense.report.tables import machine
from condense.config.schema import RefitConfig
from condense.jobs.sequence import _real_examples, distilled_sets, sequence_data
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import ReplayPlugin

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# Every replay strategy, in the tables' order; the default runs those that need no distillation per run.
REPLAYS = ["random_replay", "herding_replay", "distilled_replay", "distilled_text_replay", "learner_distilled_replay"]
STRATEGIES = REPLAYS[:4]
# From the heads as they are at two learning rates, from fresh heads gently (a distilled set was made to train a
# fresh classifier in a few steps), and with the distilled sets' soft labels replaced by their classes.
VARIANTS = {
    "current, lr 0.01, 100 steps": RefitConfig(steps=100, lr=0.01, start="current"),
    "current, lr 0.001, 300 steps": RefitConfig(steps=300, lr=0.001, start="current"),
    "fresh, lr 0.001, 300 steps": RefitConfig(steps=300, lr=0.001, start="fresh"),
    "fresh, lr 0.01, 100 steps": RefitConfig(steps=100, lr=0.01, start="fresh"),
    "current, lr 0.01, 100 steps, hard targets": RefitConfig(steps=100, lr=0.01, start="current", targets="hard"),
    "fresh, lr 0.001, 300 steps, hard targets": RefitConfig(steps=300, lr=0.001, start="fresh", targets="hard"),
}
VALIDATION_ROWS = 300  # per task


class RefitVariants(SupervisedPlugin):
    """After the last experience, the validation accuracy of the model as it is and of a copy under each variant."""

    def __init__(self, last: int, validation: list):
        super().__init__()
        self.last, self.validation = last, validation
        self.scores: dict[str, list[float]] = {}

    def after_training_exp(self, strategy, *args, **kwargs):
        if strategy.experience.current_experience != self.last:
            return
        memory = next(p for p in strategy.plugins if isinstance(p, ReplayPlugin)).storage_policy
        self.scores["none"] = [accuracy(strategy.model, v) for v in self.validation]
        state = torch.get_rng_state()
        for name, variant in VARIANTS.items():
            model = copy.deepcopy(strategy.model)
            torch.manual_seed(0)  # fresh heads: the same draw for every strategy and seed
            MemoryRefit(memory, variant).after_training_exp(SimpleNamespace(model=model, experience=strategy.experience))
            self.scores[name] = [accuracy(model, v) for v in self.validation]
        torch.set_rng_state(state)  # the run goes on (its evaluation) as it would have


def _kept_runs(path: Path, config: dict, scenario: str, rerun: list[str]) -> list[dict]:
    """The runs of ``path`` of strategies not in ``rerun``, when it was made with the same config and scenario."""
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())

    def shared(cfg: dict) -> dict:  # the settings every strategy's run depends on: not the list, nor one's own
        return {**cfg, "continual": {k: v for k, v in cfg["continual"].items() if k not in ("strategies", "learner_distill")}}

    if shared(earlier["config"]) != shared(config) or earlier["scenario"] != scenario:
        return []
    return [r for r in earlier["runs"] if r["strategy"] not in rerun]


def validation_examples(job, encoder, tasks, task_cfgs, layout) -> list:
    """``VALIDATION_ROWS`` training rows of each task outside its continual sample, the same draw every time."""
    examples = []
    for index, (task, task_cfg) in enumerate(zip(tasks, task_cfgs)):
        used = np.zeros(len(task.train), dtype=bool)
        used[training_rows(task, job.continual.train_examples_per_task)] = True
        keep = np.sort(np.random.default_rng(0).choice(np.flatnonzero(~used), VALIDATION_ROWS, replace=False))
        examples.append(_real_examples(encoder, task, "train", keep, task_cfg.max_length,
                                       job.continual.trainable_layers, layout, index))
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="class", choices=["class", "task"])
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help="comma-separated; a results file of the same settings keeps its runs of the others")
    parser.add_argument("--name", default="", help="a variant's name, in the results file's name before the sequence")
    args, overrides = parser.parse_known_args()
    args.strategies = args.strategies.split(",")
    if unknown := sorted(set(args.strategies) - set(REPLAYS)):
        parser.error(f"--strategies: unknown {unknown}; choose from {REPLAYS}")
    overrides = ["continual=full", "threads=1", *overrides]
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    job = compose("run", overrides)
    torch.set_num_threads(job.threads)
    task_cfgs = [task_config(entry) for entry in job.task_sequence.tasks]
    encoder = job_encoder(job)
    tasks = [load_task_config(task_cfg) for task_cfg in task_cfgs]
    sets = distilled_sets(job, encoder, tasks, task_cfgs)
    data = sequence_data(encoder, tasks, task_cfgs, sets, args.scenario, job)
    validation = validation_examples(job, encoder, tasks, task_cfgs, data.layout)
    path = RESULTS / f"refit_validation_{'_'.join(filter(None, [args.name, sequence_name([t.name for t in task_cfgs])]))}.json"
    kept = _kept_runs(path, to_jsonable(job), args.scenario, args.strategies)
    runs = []
    for strategy in args.strategies:
        for seed in job.continual.seeds:
            probe = RefitVariants(len(tasks) - 1, validation)
            run_strategy(strategy, encoder, data, job.continual, seed, probes=[probe])
            runs.append({"strategy": strategy, "seed": seed, "scores": probe.scores})
            print(strategy, seed, {k: [round(100 * a, 1) for a in v] for k, v in probe.scores.items()}, flush=True)
    names = [task.name for task in tasks]
    runs = kept + runs
    strategies = [s for s in REPLAYS if any(r["strategy"] == s for r in runs)]
    results = {
        "sequence": names,
        "scenario": args.scenario,
        "name": path.stem,
        "command": shlex.join(["python", "benchmarks/refit_validation.py", *(["--name", args.name] if args.name else []),
                               f"--scenario={args.scenario}",
                               *([f"--strategies={','.join(strategies)}"] if strategies != STRATEGIES else []),
                               *overrides[2:]]),
        "config": to_jsonable(job),  # learner_distill as this invocation had it
        "validation_rows_per_task": VALIDATION_ROWS,
        "variants": {name: dataclasses.asdict(v) for name, v in VARIANTS.items()},
        "strategies": strategies,
        "machine": machine(),
        "seconds": time.perf_counter() - started,
        "runs": runs,
    }
    atomic_write_text(path, json.dumps(results, indent=1) + "\n")
    print("\n".join(refit_table(results)))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
