"""Ablations of the distillation recipe, one factor at a time from the studied set's configuration.

Each factor changes one thing of ``distill=head`` (learned soft labels, T=10 unrolled SGD steps on a fresh linear
head, initialisation from real text, straight-through text projection): hard labels; T in {1, 3}; the inner loop
training the last encoder block or every weight (``configs/distill/last_layer.yaml``, ``all.yaml``); momentum or
Adam inner steps; noise initialisation; continuous embeddings instead of text. Every variant is evaluated under its
own learned protocol. The label-only effect is separated on real inputs: a random real subset of the same size is
trained on with hard labels, with the learned labels of the distilled set, and with labels learned for it.
Each variant and seed, and each seed's label-only comparison, is a cell: an interrupted run resumes after the last
one it finished.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from condense.bench.ablations_report import BASE, DISTILLED_LABELS, FACTORS, HARD, OWN_LABELS
from condense.bench.common import (
    TaskData,
    cell,
    distill_settings,
    distilled,
    learned_accuracy,
    studied_set,
    task_data,
    text_form,
    training_form,
)
from condense.cache import to_jsonable
from condense.config.parsing import preset
from condense.data.coresets import select_coreset
from condense.distill.loop import learn_labels
from condense.distill.start import real_examples_set
from condense.report.tables import points, pooled
from condense.config.bench import BenchJob

log = logging.getLogger(__name__)


def variant_overrides(job: BenchJob, choice: dict | str, seed: int) -> tuple[dict, int]:
    """Distill overrides of one variant and how many fresh models evaluate it."""
    common = {"ipc": job.bench.ipc, "seed": seed}
    if choice == BASE:
        return {**common, "outer_steps": job.bench.outer_steps}, job.bench.n_inits
    if isinstance(choice, str):  # a distill preset whose inner loop trains encoder weights
        return {**preset("distill", choice), **common, "outer_steps": job.bench.ablations.encoder_outer_steps}, job.bench.ablations.encoder_n_inits
    return {**common, "outer_steps": job.bench.outer_steps, **choice}, job.bench.n_inits


def evaluate_variant(data: TaskData, overrides: dict, n_inits: int) -> dict:
    distilled_set = distilled(data, **overrides)
    inner = distilled_set.inner
    key = {"experiment": "ablations", "cell": "variant", "distill": distilled_set.meta["config"]["distill"], "n_inits": n_inits}
    accuracies = cell(data, key, lambda: {
        "distilled": learned_accuracy(data, training_form(data, distilled_set, "embedding"), inner, n_inits),
        "decoded": learned_accuracy(data, training_form(data, distilled_set, "text"), inner, n_inits),
    })
    return {**accuracies, "distill_seconds": distilled_set.progress.seconds}


def label_only(job: BenchJob, data: TaskData, seed: int) -> dict:
    """A random real subset of the studied set's size under three label treatments, all with its learned lrs."""
    config = distill_settings(data, **variant_overrides(job, BASE, seed)[0]).distill
    key = {"experiment": "ablations", "cell": "label_only", "distill": to_jsonable(config), "n_inits": job.bench.n_inits}
    return cell(data, key, lambda: _label_only(job, data, seed))


def _label_only(job: BenchJob, data: TaskData, seed: int) -> dict:
    base = studied_set(job, data, seed)
    chosen = torch.from_numpy(select_coreset("random", data.train_features, data.train_labels, job.bench.ipc, seed))
    texts = [data.task.train["text"][i] for i in chosen.tolist()]
    labels = data.train_labels[chosen]
    # select_coreset groups its picks by class in class order, as the distilled set is: row i of either is the
    # same class, so the distilled set's learned labels transfer row by row.
    if not torch.equal(labels, base.labels):
        raise RuntimeError("the random subset and the distilled set order their classes differently")
    config = distill_settings(data, **variant_overrides(job, BASE, seed)[0]).distill
    start = real_examples_set(data.encoder, texts, labels, data.task.label_names, data.job.task.max_length)
    own = learn_labels(data.encoder, data.real(config), start, config)
    n_inits = job.bench.n_inits
    hard = F.one_hot(labels, data.task.num_classes).float()
    return {
        HARD: learned_accuracy(data, text_form(data, texts, hard), base.inner, n_inits),
        DISTILLED_LABELS: learned_accuracy(data, text_form(data, texts, base.soft_labels), base.inner, n_inits),
        OWN_LABELS: learned_accuracy(data, text_form(data, texts, own.soft_labels), own.inner, n_inits),
    }


def run(job: BenchJob) -> dict:
    jobs = [(entry, factor, choice, seed) for entry in job.bench.tasks for factor, choices in FACTORS.items()
            for choice in choices for seed in job.bench.seeds]
    per_task: dict[str, dict] = {}
    evaluated: dict[tuple, dict] = {}  # the base appears under every factor; evaluate it once
    for entry, factor, choice, seed in tqdm(jobs, desc="ablations: (task, variant, seed)"):
        data = task_data(job, entry)
        overrides, n_inits = variant_overrides(job, FACTORS[factor][choice], seed)
        key = (data.name, str(sorted(overrides.items())))
        if key not in evaluated:
            evaluated[key] = evaluate_variant(data, overrides, n_inits)
            log.info("%s %s=%s seed %d: distilled %s, decoded %s", data.name, factor, choice, seed,
                     points(evaluated[key]["distilled"]), points(evaluated[key]["decoded"]))
        variants = per_task.setdefault(data.name, {"factors": {}, "label_only": {}})["factors"]
        variants.setdefault(factor, {}).setdefault(choice, {"overrides": overrides, "runs": []})["runs"].append(
            {"seed": seed, **evaluated[key]})
    for entry in job.bench.tasks:
        data = task_data(job, entry)
        runs = [label_only(job, data, seed) for seed in job.bench.seeds]
        per_task[data.name]["label_only"] = {name: pooled([r[name] for r in runs]) for name in runs[0]}
        for choices in per_task[data.name]["factors"].values():
            for result in choices.values():
                for form in ("distilled", "decoded"):
                    result[form] = pooled([r[form] for r in result["runs"]])
    return {"tasks": per_task}

