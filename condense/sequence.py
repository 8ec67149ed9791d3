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

from condense.artifact import FORMS, DistilledSet
from condense.cache import atomic_write_json, atomic_write_text, cached_json, read_json, to_jsonable
from condense.config import sequence_name, task_config
from condense.continual import USES_DISTILLED_SETS, Examples, LabelLayout, SequenceData, run_strategy
from condense.data import Task
from condense.features import text_hidden_states
from condense.joint_distill import jointly_distilled, row_tasks, training_rows
from condense.merge import merge_distilled
from condense.models import Encoder, hidden_states_below
from condense.pipeline import cached_distillation_dir, distilled_set, fixed_subsample, job_encoder, load_task_config
from condense.plots import accuracy_matrices, forgetting_curves
from condense.report import machine, one_line, results_table, summarize_runs
from condense.schema import STRATEGY_SETTINGS, DistillJob, RunJob, TaskConfig

log = logging.getLogger(__name__)

# The two forms of a task's distilled set that are replayed: continuous input embeddings, and text (trained
# through the straight-through projection, so its decoded tokens are exactly what was optimised).
PROJECTION = dict(zip(FORMS, ("none", "straight_through")))


def distill_job(job: RunJob, task_cfg: TaskConfig, task: Task, form: str) -> DistillJob:
    """The single-task job whose distilled set has ``memory_per_class`` examples per class, in the given form."""
    distill = dataclasses.replace(job.distill, ipc=job.continual.memory_per_class, projection=PROJECTION[form])
    groups = {"task": task_cfg, "model": job.model, "distill": distill}
    out = cached_distillation_dir(groups, f"{task.name}-{distill.params}-ipc{distill.ipc}-{form}")
    return DistillJob(**groups, threads=job.threads, device=job.device, precision=job.precision,
                      checkpoint_seconds=job.checkpoint_seconds, out=str(out))


def distilled_sets(job: RunJob, encoder: Encoder, tasks: list[Task], task_cfgs: list[TaskConfig]) -> dict[str, list[DistilledSet]]:
    """Each task's distilled set in each form, distilled now when no cached set has the same config."""
    sets: dict[str, list[DistilledSet]] = {form: [] for form in FORMS}
    for task, task_cfg in zip(tasks, task_cfgs):
        for form in FORMS:
            sets[form].append(distilled_set(distill_job(job, task_cfg, task, form), encoder, task))
    return sets


def sequence_data(
    encoder: Encoder,
    tasks: list[Task],
    task_cfgs: list[TaskConfig],
    sets: dict[str, list[DistilledSet]],
    scenario: str,
    job: RunJob,
    joint: DistilledSet | None = None,
) -> SequenceData:
    """Every task's real, held-out and distilled examples as hidden states below the trained blocks; ``joint`` is
    the jointly re-distilled merged set, when a strategy replays it."""
    continual = job.continual
    layers = continual.trainable_layers
    layout = LabelLayout(scenario, [task.num_classes for task in tasks])
    train, test, curve = [], [], []
    distilled: dict[str, list[Examples]] = {form: [] for form in sets}
    for index, (task, task_cfg) in enumerate(zip(tasks, task_cfgs)):
        keep = training_rows(task, continual.train_examples_per_task)
        train.append(_real_examples(encoder, task, "train", keep, task_cfg.max_length, layers, layout, index))
        held_out = fixed_subsample(len(task.test), continual.test_examples_per_task).numpy()
        test.append(_real_examples(encoder, task, "test", held_out, task_cfg.max_length, layers, layout, index))
        # The curve sample is a fixed part of the test sample, so its encoding comes from the same cache entry.
        part = fixed_subsample(len(held_out), continual.curve_examples_per_task)
        curve.append(test[-1].subset(part))
        for form, form_sets in sets.items():
            distilled[form].append(_distilled_examples(encoder, form_sets[index], form, task_cfg, layers, layout, index))
    merged = merge_distilled(sets["embedding"], label_space=scenario) if sets else None
    merged_examples = merged_lrs = None
    if merged is not None:
        if merged.soft_labels.shape[1] != layout.width:
            raise ValueError(f"merged soft labels have {merged.soft_labels.shape[1]} columns, the {scenario} layout {layout.width}")
        hidden = hidden_states_below(encoder, layers, merged.attention_mask, inputs_embeds=merged.embeddings).cpu()
        merged_examples = Examples(hidden, merged.attention_mask.cpu(), merged.soft_labels.cpu(), merged.task_ids.cpu())
        merged_lrs = merged.inner_lrs.cpu()
    joint_examples = None if joint is None else _joint_examples(encoder, joint, layers, layout)
    return SequenceData(layout, [t.name for t in tasks], train, test, curve, distilled, merged_examples, merged_lrs,
                        joint_examples, None if joint is None else joint.inner_lrs.cpu())


def _joint_examples(encoder: Encoder, joint: DistilledSet, layers: int, layout: LabelLayout) -> Examples:
    """The jointly re-distilled set (one label space over every task's classes) in the scenario's layout: with a
    head per task, each row keeps its own task's share of its soft label, renormalised."""
    hidden = hidden_states_below(encoder, layers, joint.attention_mask, inputs_embeds=joint.embeddings).cpu()
    soft, tasks = joint.soft_labels.cpu().float(), row_tasks(joint.labels.cpu(), layout.num_classes)
    targets = soft.clone()
    if layout.per_task_heads:
        targets = soft.new_zeros(len(soft), layout.width)
        for task, count in enumerate(layout.num_classes):
            rows, start = tasks == task, sum(layout.num_classes[:task])
            share = soft[rows, start : start + count]
            targets[rows] = layout.targets(task, share / share.sum(1, keepdim=True))
    return Examples(hidden, joint.attention_mask.cpu(), targets, tasks)


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


def _distilled_examples(
    encoder: Encoder, distilled: DistilledSet, form: str, task_cfg: TaskConfig, layers: int, layout: LabelLayout, index: int
) -> Examples:
    # The text form is replayed as text: re-tokenised, as any user of the decoded set would.
    train = distilled.training_set(form, encoder.tokenizer, task_cfg.max_length)
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
    needs_sets = bool(USES_DISTILLED_SETS & set(strategies))
    sets = distilled_sets(job, encoder, tasks, task_cfgs) if needs_sets else {}
    joint = jointly_distilled(job, encoder, tasks, task_cfgs, sets["embedding"]) if "merged_joint" in strategies else None

    settings = to_jsonable({"continual": continual, "model": job.model, "distill": job.distill, "tasks": task_cfgs})
    if job.precision != "fp32":  # bf16 trains other runs; fp32 keys stay those of runs made before precisions
        settings["precision"] = job.precision
    reused = 0
    runs: list[dict] = []
    total = len(continual.scenarios) * len(strategies) * len(continual.seeds)
    with tqdm(total=total, desc=f"{sequence_name(names)}: strategy runs") as progress:
        for scenario in continual.scenarios:
            data = sequence_data(encoder, tasks, task_cfgs, sets, scenario, job, joint)
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
    """What ``strategy``'s runs depend on of a job's settings: not its lists, nor the settings other strategies
    own (so a run of random replay is reused across jobs that distil memories differently)."""
    continual = {key: value for key, value in settings["continual"].items()
                 if key not in JOB_LISTS and strategy in STRATEGY_SETTINGS.get(key, (strategy,))}
    return {**settings, "continual": continual}


def _run_or_reuse(path: Path, settings: dict, strategy: str, compute) -> tuple[dict, bool]:
    """A finished run of the same settings is read back, so an interrupted job resumes where it stopped; returns the
    run and whether it was read back. A fresh run is returned as it reads back (non-finite floats as None, tuples as
    lists), so the summaries of a resumed job are those of an uninterrupted one."""
    key = _run_settings(settings, strategy)

    def load(saved_path: Path) -> dict | None:
        saved = read_json(saved_path)
        # Runs saved before the job lists and other strategies' settings left the key still carry them.
        return saved["result"] if _run_settings(saved["settings"], strategy) == key else None

    def save(saved_path: Path, result: dict) -> None:
        atomic_write_json(saved_path, {"settings": key, "result": result}, indent=None)

    result, computed = cached_json(path, compute, load, save)
    log.debug("%s %s", "ran" if computed else "reusing finished run", path.name)
    return result, not computed
