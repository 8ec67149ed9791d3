"""The seed's table: "fine-tuned on entire dataset" against "fine-tuned on distilled dataset".

Entire: the standard recipe (``bench.seed_table.recipe``: AdamW on every weight, one epoch of batches of 32,
linear warm-up and decay) on every training row the task loads, ``entire_seeds`` fresh heads and data orders,
tested on the whole test split (:mod:`condense.eval.reference`, cached). Distilled: the same recipe on k-per-class
sets, from ``n_inits`` fresh heads per distillation seed, tested on the encoder-test subsample
(``eval.encoder_test_examples``): the head-mode set's decoded text; the sets distilled with every weight in the
inner loop (``distill=all``, trained through the straight-through text projection, with and without attention
labels), under the recipe and under their own learned protocol, in both forms; and random, k-centers and
herding subsets of the same size, given soft labels and learning rates by the same (head-mode) outer loop.
Every evaluation is a cell (:func:`condense.bench.common.cell`), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging

from tqdm.auto import tqdm

import torch
import torch.nn.functional as F

from condense.bench.common import TaskData, cell, distilled, learned_accuracy, task_data, text_form, training_form
from condense.bench.seed_table_report import encoder_set, method_text_set
from condense.data.coresets import select_coreset
from condense.cache import to_jsonable
from condense.config.parsing import preset, task_config
from condense.eval.protocols import finetune_protocol
from condense.data.sampling import fixed_subsample
from condense.eval.baselines import labelled_subset
from condense.eval.reference import entire_dataset_reference, summarize_reference
from condense.report.tables import points, pooled
from condense.config.bench import BenchJob

log = logging.getLogger(__name__)

DETERMINISTIC = ("kcenters", "herding")  # selectors that pick the same rows whatever the seed


def encoder_distillation(job: BenchJob, data: TaskData, k: int, seed: int, attention: str):
    """The set distilled with every weight in the inner loop (the ``all`` preset) and ``attention`` labels."""
    return distilled(data, **{**preset("distill", "all"), "ipc": k, "seed": seed, "attention_labels": attention,
                              "outer_steps": job.bench.seed_table.encoder_outer_steps})


def baseline_set(job: BenchJob, data: TaskData, name: str, k: int, seed: int):
    """A real subset of k per class, as text: with its own (hard) labels, or soft labels and lrs learned by the
    head-mode outer loop (``bench.seed_table.baseline_labels``)."""
    config = dataclasses.replace(job.distill, ipc=k, seed=seed, outer_steps=job.bench.outer_steps)
    if job.bench.seed_table.baseline_labels == "hard":
        index = torch.as_tensor(select_coreset(name, data.train_features, data.train_labels, k, seed))
        texts = [data.task.train["text"][i] for i in index.tolist()]
        return text_form(data, texts, F.one_hot(data.train_labels[index], data.task.num_classes).float())
    labelled = labelled_subset(data.encoder, data.task, name, data.train_features, data.train_labels, data.real(config),
                               config, data.job.task.max_length)
    return training_form(data, labelled, "text")


def method_set(job: BenchJob, data: TaskData, method: str, k: int, seed: int):
    """The set of k per class distilled with the ``configs/distill/<method>.yaml`` preset, over the bench's
    distill config and outer steps."""
    return distilled(data, **{**preset("distill", method), "ipc": k, "seed": seed, "outer_steps": job.bench.outer_steps})


def set_runs(job: BenchJob, data: TaskData, k: int, seed: int) -> dict[str, dict]:
    """Every set of k per class for one distillation seed: {set name: {protocol: summary over fresh models}}."""
    table, recipe = job.bench.seed_table, job.bench.seed_table.recipe
    key = {"k": k, "seed": seed, "n_inits": table.n_inits, "head_distill": to_jsonable(job.distill),
           "outer_steps": job.bench.outer_steps}

    def finetuned(name: str, make_train, extra: dict | None = None, n_inits: int = table.n_inits) -> dict:
        settings = {**key, **(extra or {}), "set": name, "protocol": "finetune", "recipe": to_jsonable(recipe)}
        if n_inits != table.n_inits:
            settings["n_inits"] = n_inits
        return cell(data, settings, lambda: finetune_protocol(data.encoder, make_train(), data.test, recipe, n_inits=n_inits,
                                                              seed=data.job.eval.seed))

    runs: dict[str, dict] = {}
    for method in table.methods:
        made = method_set(job, data, method, k, seed)
        # The head preset's cells keep the key they were made with before presets could be compared.
        made_with = {} if method == "head" else {"method": method}
        runs[method_text_set(method)] = {"finetune": finetuned(method_text_set(method), lambda: training_form(data, made, "text"), made_with)}
    encoder_tasks = {task_config(entry, "bench.seed_table.encoder_tasks").name for entry in table.encoder_tasks}
    if data.name in encoder_tasks and k in table.encoder_ks:
        for attention in table.attention:
            made = encoder_distillation(job, data, k, seed, attention)
            made_with = {"encoder_distill": made.meta["config"]["distill"]}  # the preset and encoder_outer_steps
            for form in ("embedding", "text"):
                name = encoder_set(form, attention)
                train = training_form(data, made, form)
                runs[name] = {"learned": cell(data, {**key, **made_with, "set": name, "protocol": "learned"},
                                              lambda: learned_accuracy(data, train, made.inner, table.n_inits))}
                if form == "text":
                    runs[name]["finetune"] = finetuned(name, lambda: train, made_with)
    for name in table.baselines:
        n_inits = table.n_inits
        if table.baseline_labels == "hard" and name in DETERMINISTIC:
            if seed != job.bench.seeds[0]:
                continue
            # The same rows and labels for every seed: measured once, with as many fresh models as the other sets.
            n_inits = table.n_inits * len(job.bench.seeds)
        labels = {} if table.baseline_labels == "learned" else {"labels": "hard"}
        runs[name] = {"finetune": finetuned(name, lambda name=name: baseline_set(job, data, name, k, seed), labels, n_inits)}
    for name, result in runs.items():
        log.info("%s k=%d seed %d %s: %s", data.name, k, seed, name, {p: points(s) for p, s in result.items()})
    return runs


def pool_seeds(seeds: list[dict[str, dict]]) -> dict[str, dict]:
    """{set: {protocol: pooled summary}} over the distillation seeds that measured each set."""
    return {name: {protocol: pooled([s[name][protocol] for s in seeds if name in s]) for protocol in seeds[0][name]}
            for name in seeds[0]}


def run(job: BenchJob) -> dict:
    table = job.bench.seed_table
    tasks: dict[str, dict] = {}
    for entry in tqdm(table.tasks, desc="seed table: tasks"):
        data = task_data(job, entry)
        keep = fixed_subsample(len(data.test.labels), job.eval.encoder_test_examples)
        per_k = {}
        for k in table.ks:
            seeds = [set_runs(job, data, k, seed) for seed in job.bench.seeds]
            per_k[str(k)] = pool_seeds(seeds)
        # After the sets: another process may be computing the (locked, cached) full-data runs meanwhile.
        entire = None
        if table.entire_seeds:
            runs = entire_dataset_reference(data.encoder, data.job.task, data.task, table.recipe, table.entire_seeds)
            entire = summarize_reference(runs, keep)
        tasks[data.name] = {"entire": entire, "sets": per_k,
                            "train_examples": len(data.train_labels), "test_examples": len(data.test.labels)}
    return {"tasks": tasks}
