"""A task sequence end to end: distil every task, then replay the sets across the sequence and measure forgetting.

``python -m condense.run task_sequence=agnews_then_sst2`` (:mod:`condense.run`) parses its config and calls
:func:`run_sequence`, which distils any task whose distilled set is not cached yet
(keyed by a hash of its task, model and distill config), runs every strategy of ``continual.strategies`` in every
scenario over every seed, and writes ``results.json``, ``results.md``, ``forgetting_curves.png`` and
``accuracy_matrices.png`` in the run folder. Each finished strategy x scenario x seed run is kept under
``runs/`` there, so a job stopped at any point and started again resumes after the last finished run, and writes
the ``results.json`` an uninterrupted job writes (wall times aside); a job that lists other strategies, scenarios
or seeds reuses every run it shares with one that ran before.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from tqdm.auto import tqdm

from condense.artifact.distilled_set import DistilledSet
from condense.artifact.merge import merge_distilled
from condense.cache import atomic_write_json, atomic_write_text, cached_json, read_json, to_jsonable
from condense.config.parsing import sequence_name, task_config
from condense.config.schema import STRATEGIES, DistillJob, RunJob, TaskConfig
from condense.continual.data import Examples, LabelLayout, SequenceData
from condense.continual.strategies import run_strategy
from condense.data.sampling import fixed_subsample, training_rows
from condense.data.tasks import Task
from condense.jobs.distill_task import cached_distillation_dir, distilled_set, job_encoder, load_task_config
from condense.jobs.super_dataset import jointly_distilled
from condense.models.encoders import Encoder, hidden_states_below
from condense.models.features import text_hidden_states
from condense.report.plots import accuracy_matrices, forgetting_curves
from condense.report.tables import machine, one_line, results_table, summarize_runs

log = logging.getLogger(__name__)

# Which form of each task's distilled set a strategy reads, and the projection that distils it: the decoded text
# (trained through the straight-through projection, so its tokens are exactly what was optimised) for replay, the
# continuous embeddings for the super-dataset, which re-distils their merge.
FORMS_READ = {"distilled_text_replay": "text", "super_dataset": "embedding", "merged_sets": "embedding"}
PROJECTION = {"text": "straight_through", "embedding": "none"}


def distill_job(job: RunJob, task_cfg: TaskConfig, task: Task, form: str) -> DistillJob:
    """The single-task job whose distilled set has ``memory_per_class`` examples per class, in the given form."""
    distill = dataclasses.replace(job.distill, ipc=job.continual.memory_per_class, projection=PROJECTION[form])
    groups = {"task": task_cfg, "model": job.model, "distill": distill}
    out = cached_distillation_dir({**groups, **({"tf32": True} if job.tf32 else {})},
                                  f"{task.name}-{distill.params}-ipc{distill.ipc}-{form}")
    return DistillJob(**groups, threads=job.threads, device=job.device, precision=job.precision, tf32=job.tf32,
                      checkpoint_seconds=job.checkpoint_seconds, out=str(out))


def distilled_sets(job: RunJob, encoder: Encoder, tasks: list[Task], task_cfgs: list[TaskConfig],
                   form: str) -> list[DistilledSet]:
    """Each task's distilled set in ``form``, distilled now when no cached set has the same config."""
    return [distilled_set(distill_job(job, task_cfg, task, form), encoder, task) for task, task_cfg in zip(tasks, task_cfgs)]


def sequence_data(encoder: Encoder, tasks: list[Task], task_cfgs: list[TaskConfig], scenario: str, job: RunJob,
                  texts: list[DistilledSet] | None = None, super_dataset: DistilledSet | None = None,
                  embeddings: list[DistilledSet] | None = None) -> SequenceData:
    """Every task's real training, test and curve examples as hidden states below the trained blocks, with what the
    strategies read of the distilled sets: each task's text (``texts``), the super-dataset, and the merge of the
    embedding-form sets (``embeddings``)."""
    continual = job.continual
    layers = continual.trainable_layers
    layout = LabelLayout(scenario, [task.num_classes for task in tasks])
    train, test, curve = [], [], []
    for index, (task, task_cfg) in enumerate(zip(tasks, task_cfgs)):
        keep = training_rows(task.train["label"], continual.train_examples_per_task)
        train.append(_real_examples(encoder, task, "train", keep, task_cfg.max_length, layers, layout, index))
        held_out = fixed_subsample(len(task.test), continual.test_examples_per_task).numpy()
        test.append(_real_examples(encoder, task, "test", held_out, task_cfg.max_length, layers, layout, index))
        # The curve sample is a fixed part of the test sample, so its encoding comes from the same cache entry.
        curve.append(test[-1].subset(fixed_subsample(len(held_out), continual.curve_examples_per_task)))
    text_examples = None if texts is None else [_text_examples(encoder, distilled, task_cfg, layers, layout, index)
                                                for index, (distilled, task_cfg) in enumerate(zip(texts, task_cfgs))]
    data = SequenceData(layout, [t.name for t in tasks], train, test, curve, text_examples)
    if super_dataset is not None:
        data.super_dataset = _super_dataset_examples(encoder, super_dataset, layers, layout)
        data.super_dataset_lrs = super_dataset.inner_lrs.cpu()
    if embeddings is not None:
        merged = merge_distilled(embeddings, label_space=scenario)
        hidden = hidden_states_below(encoder, layers, merged.attention_mask, inputs_embeds=merged.embeddings).cpu()
        data.merged_sets = Examples(hidden, merged.attention_mask.cpu(), merged.soft_labels.cpu(), merged.task_ids.cpu())
        data.merged_sets_lrs = merged.inner_lrs.cpu()
    return data


def _super_dataset_examples(encoder: Encoder, merged: DistilledSet, layers: int, layout: LabelLayout) -> Examples:
    """The super-dataset (one label space over every task's classes) in the scenario's layout: with a head per task,
    each row keeps its own task's share of its soft label, renormalised."""
    hidden = hidden_states_below(encoder, layers, merged.attention_mask, inputs_embeds=merged.embeddings).cpu()
    soft = merged.soft_labels.cpu().float()
    tasks = LabelLayout("class", layout.num_classes).task_of(merged.labels.cpu())
    targets = soft.clone()
    if layout.per_task_heads:
        targets = soft.new_zeros(len(soft), layout.width)
        for task, count in enumerate(layout.num_classes):
            rows, start = tasks == task, sum(layout.num_classes[:task])
            share = soft[rows, start : start + count]
            targets[rows] = layout.targets(task, share / share.sum(1, keepdim=True))
    return Examples(hidden, merged.attention_mask.cpu(), targets, tasks)


def _real_examples(
    encoder: Encoder, task: Task, split: str, keep: np.ndarray, max_length: int, layers: int, layout: LabelLayout, index: int
) -> Examples:
    rows = getattr(task, split)
    texts = [rows["text"][i] for i in keep.tolist()]
    states = text_hidden_states(encoder, texts, max_length, layers, f"{task.name} {split} texts")
    labels = torch.as_tensor(np.asarray(rows["label"])[keep])
    targets = layout.targets(index, F.one_hot(labels, task.num_classes))
    examples = Examples(states["hidden_states"], states["attention_mask"], targets, torch.full((len(keep),), index))
    # Evaluation batches are taken in order: sorted by length, they carry little padding. Training shuffles anyway.
    return examples.subset(torch.argsort(examples.attention_mask.sum(1), stable=True))


def _text_examples(encoder: Encoder, distilled: DistilledSet, task_cfg: TaskConfig, layers: int, layout: LabelLayout,
                   index: int) -> Examples:
    # Replayed as text: re-tokenised, as any user of the decoded set would.
    train = distilled.training_set("text", encoder.tokenizer, task_cfg.max_length)
    # Kept on the host like the cached real examples: Avalanche moves each mixed mini-batch to the device.
    hidden = hidden_states_below(encoder, layers, train.attention_mask, **train.inputs()).cpu()
    targets = layout.targets(index, train.soft_labels.cpu())
    return Examples(hidden, train.attention_mask.cpu(), targets, torch.full((distilled.num_examples,), index))


def run_sequence(job: RunJob) -> dict:
    """Every strategy x scenario x seed of ``job.continual`` on ``job.task_sequence``; returns the results dict."""
    started = time.perf_counter()
    torch.set_num_threads(job.threads)
    out = Path(job.out)
    continual = job.continual
    task_cfgs = [task_config(entry) for entry in job.task_sequence.tasks]
    names = [task_cfg.name for task_cfg in task_cfgs]
    encoder = job_encoder(job)  # first: an unusable device fails before the data loads
    tasks = [load_task_config(task_cfg) for task_cfg in task_cfgs]
    strategies = list(continual.strategies)
    sets = {FORMS_READ[s]: distilled_sets(job, encoder, tasks, task_cfgs, FORMS_READ[s]) for s in strategies if s in FORMS_READ}
    merged = jointly_distilled(job, encoder, tasks, task_cfgs, sets["embedding"]) if "super_dataset" in strategies else None
    sets_seconds = time.perf_counter() - started  # loading, and distilling every set that was not cached yet

    settings = to_jsonable({"continual": continual, "model": job.model, "distill": job.distill, "tasks": task_cfgs})
    if job.precision != "fp32":  # bf16 trains other runs; fp32 keys stay those of runs made before precisions
        settings["precision"] = job.precision
    if job.tf32:  # TF32 matrix multiplies train other runs on CUDA
        settings["tf32"] = True
    reused = 0
    runs: list[dict] = []
    total = len(continual.scenarios) * len(strategies) * len(continual.seeds)
    with tqdm(total=total, desc=f"{sequence_name(names)}: strategy runs") as progress:
        for scenario in continual.scenarios:
            data = sequence_data(encoder, tasks, task_cfgs, scenario, job, sets.get("text"), merged,
                                 sets.get("embedding") if "merged_sets" in strategies else None)
            for strategy in strategies:
                for seed in continual.seeds:
                    progress.set_postfix_str(f"{scenario}/{strategy}/seed {seed}")
                    path = out / "runs" / f"{scenario}-{strategy}-seed{seed}.json"
                    result, finished = _run_or_reuse(path, settings, strategy,
                                                     lambda: run_strategy(strategy, encoder, data, continual, seed))
                    runs.append(result)
                    reused += finished
                    progress.update()
                log.info("%s / %s: %s", scenario, strategy, one_line(summarize_runs([r for r in runs if
                         r["scenario"] == scenario and r["strategy"] == strategy])))

    log.info("reusing %d finished runs of %d, ran %d", reused, total, total - reused)
    results = {
        "sequence": names,
        "command": shlex.join(["python", "-m", "condense.run", *HydraConfig.get().overrides.task]) if HydraConfig.initialized() else None,
        "config": to_jsonable(job),
        "machine": machine(),
        "seconds": time.perf_counter() - started,
        "sets_seconds": sets_seconds,  # of ``seconds``: the encoder, the data and the distilled sets, made or read back
        "reused_runs": reused,  # read back from an earlier job, so ``seconds`` is not the runs' whole cost
        "summary": {
            scenario: {strategy: summarize_runs([r for r in runs if r["scenario"] == scenario and r["strategy"] == strategy])
                       for strategy in strategies}
            for scenario in continual.scenarios
        },
        "runs": runs,
    }
    atomic_write_json(out / "results.json", results, indent=1)
    atomic_write_text(out / "results.md", results_table(results) + "\n")
    drawn = [name for name, draw in (("forgetting_curves.png", forgetting_curves), ("accuracy_matrices.png", accuracy_matrices))
             if draw(results, out / name)]  # no matrices without a sequential strategy
    log.info("wrote results.json, results.md%s to %s", "".join(f", {name}" for name in drawn), out)
    return results


# A run's outcome depends on its own scenario, strategy and seed (its file's name), not on which others its job
# lists: a job restarted with more, fewer or reordered strategies, scenarios or seeds reuses every run it shares.
JOB_LISTS = ("strategies", "scenarios", "seeds")


def _run_settings(settings: dict, strategy: str) -> dict:
    """What ``strategy``'s runs depend on of a job's settings: not its lists, nor the settings another strategy keeps
    under its own name (so a run of random replay is reused across jobs that match means differently)."""
    continual = {key: value for key, value in settings["continual"].items()
                 if key not in JOB_LISTS and (key == strategy or key not in STRATEGIES)}
    return {**settings, "continual": continual}


def _run_or_reuse(path: Path, settings: dict, strategy: str, compute) -> tuple[dict, bool]:
    """A finished run of the same settings is read back, so an interrupted job resumes where it stopped; returns the
    run and whether it was read back. A fresh run is returned as it reads back (non-finite floats as None, tuples as
    lists), so the summaries of a resumed job are those of an uninterrupted one."""
    key = _run_settings(settings, strategy)

    def load(saved_path: Path) -> dict | None:
        saved = read_json(saved_path)
        return saved["result"] if _run_settings(saved["settings"], strategy) == key else None

    def save(saved_path: Path, result: dict) -> None:
        atomic_write_json(saved_path, {"settings": key, "result": result}, indent=None)

    result, computed = cached_json(path, compute, load, save)
    log.debug("%s %s", "ran" if computed else "reusing finished run", path.name)
    return result, not computed
