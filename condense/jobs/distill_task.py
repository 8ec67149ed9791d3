"""One task end to end: load, distil, decode, save, evaluate against baselines, save again.

``python -m condense.distill task=sst2 distill.ipc=1 out=DIR`` parses its config into a typed
:class:`condense.config.schema.DistillJob` and calls :func:`distill_task`, which takes such a job from Python too
(``condense.config.parsing.compose("config", [...])``). The artefact is written as soon as distillation
ends, and checkpoints during it, so an evaluation that fails loses nothing already computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from functools import partial
from pathlib import Path

import torch

from condense import distributed
from condense.distill import checkpoint
from condense.artifact.distilled_set import DistilledSet
from condense.cache import cache_dir, digest, locked, to_jsonable
from condense.data.tasks import Task, check_examples_per_class, task_from_config
from condense.config.device import resolve_device, set_tf32
from condense.eval.baselines import evaluate_against_baselines, held_out_data
from condense.models.features import text_features
from condense.models.encoders import Encoder, load_encoder
from condense.distill.loop import RealData, distill, real_data
from condense.distill.start import initial_set
from condense.report.tables import metrics_table
from condense.config.schema import DistillJob, TaskConfig

log = logging.getLogger(__name__)


def distill_task(job: DistillJob) -> DistilledSet:
    """Distil (or reuse) the task's set, then evaluate it against the baselines; both saved in ``job.out``.

    A search trial (``job.search.enabled``) distils on the training rows outside a validation split and is scored on
    that split alone (:mod:`condense.jobs.search`): its test split is dropped before anything is encoded."""
    from condense.jobs import search  # here: only this function of the module knows about searches

    torch.set_num_threads(job.threads)
    out = Path(job.out)
    # Under torchrun or srun: join the run's process group, on this process's own GPU.
    world, device = distributed.init(resolve_device(job.device))
    if world.size > 1 and job.search.enabled:
        raise ValueError("a search trial runs in one process: start searches with -m, not under torchrun or srun")
    encoder = job_encoder(job, device)  # first: an unusable device fails before the data loads
    task = load_task_config(job.task)
    max_length = job.task.max_length
    train_labels = task_labels(task.train, encoder)
    train_features = text_features(encoder, task.train["text"], max_length, f"{task.name} train texts")
    if job.search.enabled:  # the whole split's features are cached already: select the kept rows, never re-encode
        task, keep = search.validation_split(task, job.search)
        train_labels, train_features = train_labels[keep.to(encoder.device)], train_features[keep.to(train_features.device)]
    if world.is_main:
        search.claim_folder(out, job)
    real = real_data(encoder, task, train_labels, train_features, max_length, job.distill)
    distilled = distilled_set(job, encoder, task, real)
    distributed.leave()
    if not world.is_main:  # the main process evaluates the set and writes the results, alone
        return distilled

    test = held_out_data(encoder, task, max_length, job.eval)  # a search trial's validation rows
    if job.search.enabled:
        distilled.metrics = search.validation_metrics(encoder, task, distilled, test, job)
        distilled.save(out)
        log.info("search trial on %s: validation accuracy %s", task.name, distilled.metrics["validation"]["distilled"])
        return distilled
    progress_file = out / "metrics.partial.json"
    distilled.metrics = evaluate_against_baselines(
        encoder, task, distilled, train_labels, train_features, real, test, job, progress_file
    )
    distilled.save(out)
    progress_file.unlink(missing_ok=True)
    log.info("results for %s (test accuracy, mean ± std over fresh models):\n%s", task.name, metrics_table(distilled.metrics))
    return distilled


def load_task_config(task: TaskConfig) -> Task:
    """The task's data, loaded and validated (:func:`condense.data.tasks.load_task`)."""
    return task_from_config(dataclasses.asdict(task))


def job_encoder(job, device: torch.device | None = None) -> Encoder:
    """The job's encoder on ``device`` (default: the job's ``device``, resolved here) in its ``precision``, with
    TF32 as ``tf32`` says."""
    set_tf32(job.tf32)
    return load_encoder(job.model.name, job.model.pooling, device=device or resolve_device(job.device),
                        precision=job.precision)


def task_labels(split, encoder: Encoder) -> torch.Tensor:
    return torch.tensor(split["label"], device=encoder.device)


def distilled_set(job: DistillJob, encoder: Encoder, task: Task, real: RealData | None = None) -> DistilledSet:
    """The set in ``job.out`` when it was made with this task, model and distill config; else distil and save it,
    resuming from the checkpoint there when one of this run exists. Processes sharing ``out`` (two benches on one
    cache) wait for one another (a lock beside the folder), so the set is made once."""
    out = Path(job.out)
    world = distributed.world()
    # Only the main process locks, reads and writes ``out``: the others would wait on the lock while it waits for
    # them in the outer loop's collectives. They learn from it what it found.
    with locked(out) if world.is_main else contextlib.nullcontext():
        distilled = finished_distillation(out, job) if world.is_main else None
        if distributed.from_main(distilled is not None):
            log.info("reusing the distilled set in %s, made with this task, model and distill config", out)
            return distilled if world.is_main else DistilledSet.load(out)
        config = job.distill
        check_examples_per_class(task, config.ipc)
        train_labels = task_labels(task.train, encoder)
        if real is None:
            features = None if config.trains_encoder else text_features(
                encoder, task.train["text"], job.task.max_length, f"{task.name} train texts"
            )
            real = real_data(encoder, task, train_labels, features, job.task.max_length, config)
        start = initial_set(encoder, task.train["text"], train_labels, task.label_names, config.ipc, config.seq_len, config.seed)

        checkpoint_path, identity = out / checkpoint.FILE, checkpoint.run_identity(job, encoder.device)
        resume = distributed.from_main(checkpoint.load(checkpoint_path, identity) if world.is_main else None)
        if resume is None:
            log.info("distilling %s: %d per class, inner loop trains %s", task.name, config.ipc, config.params)
        else:
            log.info("distilling %s: resuming from outer step %d of %d (checkpoint %s)", task.name, resume.step,
                     config.outer_steps, checkpoint_path)
        result = distill(encoder, real, start, config, resume=resume, checkpoint_seconds=job.checkpoint_seconds,
                         on_checkpoint=partial(checkpoint.save, checkpoint_path, identity=identity) if world.is_main else None)
        distilled = with_provenance(encoder, task, result, job)
        if world.is_main:
            distilled.save(out)
            checkpoint_path.unlink(missing_ok=True)  # the artefact supersedes it
            log.info("saved the distilled set to %s", out)
        return distilled


def cached_distillation_dir(groups: dict, label: str) -> Path:
    """Where the distilled set of these ``task``, ``model`` and ``distill`` configs is kept, keyed by their hash."""
    return cache_dir() / "distilled" / f"{label}-{digest(groups, length=12)}"


def finished_distillation(out: Path, job: DistillJob) -> DistilledSet | None:
    """The artefact already in ``out`` when it was distilled with the same task, model and distill config.

    An artefact made with other data or settings is replaced, and the log says so: two runs that share an ``out``
    folder must not silently overwrite each other's results."""
    if not (out / "meta.json").exists():
        return None
    previous = DistilledSet.load(out)
    current = to_jsonable(job)
    changed = [group for group in ("task", "model", "distill") if previous.meta["config"].get(group) != current[group]]
    finished = previous.progress.outer_step == job.distill.outer_steps
    if changed:
        log.warning(
            "%s holds a distilled set of task %r made with a different %s config; it will be replaced (choose "
            "another out=... to keep it)", out, previous.meta.get("task"), "/".join(changed),
        )
    return previous if not changed and finished else None


def with_provenance(encoder: Encoder, task: Task, state: DistilledSet, job: DistillJob) -> DistilledSet:
    """The set as an artefact: what it was distilled from and with, beside what distillation recorded."""
    return dataclasses.replace(state, meta={
        "task": task.name,
        "source": task.source,
        "label_names": task.label_names,
        "model": encoder.name,
        "tokenizer": encoder.name,
        "hidden_size": encoder.hidden_size,
        "pooling": encoder.pooling,
        "max_length": job.task.max_length,
        **{key: state.meta[key] for key in ("inner", "progress", "outer_loss")},
        "config": to_jsonable(job),
    })


