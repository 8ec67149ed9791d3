"""Scaling: test accuracy against examples per class k, for distilled sets and real subsets of the same size.

For every task and k of ``bench.scaling``, the set distilled with the library's default (head-only) protocol
is evaluated as ``python -m condense.distill`` evaluates it: the distilled set, its decoded text, and random,
k-centers and herding subsets given their own learned soft labels and learning rates, each over
``bench.n_inits`` fresh heads; the full-data linear probe is the ceiling. Each (task, k, seed) is a cell, and
inside one each evaluated set is recorded as it finishes, so an interrupted run loses at most one set's evaluation.
"""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

from condense.bench.common import cell, cell_path, distilled, evaluate_sets, task_data
from condense.bench.scaling_report import SETS
from condense.cache import to_jsonable
from condense.report.tables import points, pooled
from condense.config.bench import BenchJob

log = logging.getLogger(__name__)


def run(job: BenchJob) -> dict:
    settings = job.bench.scaling
    jobs = [(entry, k, seed) for entry in settings.tasks for k in settings.ks for seed in settings.seeds]
    per_task: dict[str, dict] = {}
    for entry, k, seed in tqdm(jobs, desc="scaling: (task, k, seed)"):
        data = task_data(job, entry)
        result = per_task.setdefault(data.name, {"label_names": data.task.label_names, "train_examples": len(data.train_labels),
                                                 "test_examples": len(data.test.labels), "ks": {}})
        distilled_set = distilled(data, ipc=k, outer_steps=settings.outer_steps, seed=seed)
        key = {"experiment": "scaling", "distill": distilled_set.meta["config"]["distill"], "eval": to_jsonable(job.eval),
               "baselines": list(settings.baselines), "n_inits": job.bench.n_inits}
        # Beside the cell, not a .json: only finished cells are named so.
        progress = cell_path(data, key).with_suffix(".partial")
        metrics = cell(data, key, lambda: evaluate_sets(data, distilled_set, list(settings.baselines), job.bench.n_inits,
                                                        progress_file=progress))
        progress.unlink(missing_ok=True)
        runs = result["ks"].setdefault(str(k), {"runs": []})["runs"]
        runs.append({"seed": seed, "learned": metrics["learned"], "distill_seconds": distilled_set.progress.seconds})
        result["full"] = metrics["learned"]["full"]
        log.info("%s k=%d seed %d: %s", data.name, k, seed,
                 ", ".join(f"{name} {points(metrics['learned'].get(name))}" for name in SETS))
    for result in per_task.values():
        for entry in result["ks"].values():
            entry["summary"] = {name: pooled([r["learned"][name] for r in entry["runs"]])
                                for name in SETS if name in entry["runs"][0]["learned"]}
    return {"tasks": per_task}

