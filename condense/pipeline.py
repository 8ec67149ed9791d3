"""One task end to end: load, distil, decode, save, evaluate against baselines, save again.

``python -m condense.distill task=sst2 distill.ipc=1 out=DIR`` parses its config into a typed
:class:`condense.schema.DistillJob` and calls :func:`distill_task`, which takes such a job from Python too
(``condense.config.compose("config", [...])``). The artefact is written as soon as distillation
ends, and checkpoints during it, so an evaluation that fails loses nothing already computed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import condense
from condense import checkpoint
from condense.artifact import DistilledSet, InnerProtocol, TrainingSet
from condense.cache import atomic_write_json, cache_dir, cached, digest, locked, read_json, to_jsonable
from condense.coresets import select_coreset
from condense.data import Task, check_examples_per_class, task_from_config
from condense.device import resolve_device
from condense.evaluate import HeldOutData, finetune_protocol, learned_protocol, linear_probe
from condense.features import text_features, tokenize
from condense.models import Encoder, load_encoder
from condense.outer import RealData, distill, initial_set, learn_labels, real_examples_set
from condense.report import metrics_table
from condense.schema import DistillConfig, DistillJob, EvalConfig, FinetuneRecipe, TaskConfig

log = logging.getLogger(__name__)


def distill_task(job: DistillJob) -> DistilledSet:
    """Distil (or reuse) the task's set, then evaluate it against the baselines; both saved in ``job.out``.

    A search trial (``job.search.enabled``) distils on the training rows outside a validation split and is scored on
    that split alone (:mod:`condense.search`): its test split is dropped before anything is encoded."""
    from condense import search  # here: only this function of the module knows about searches

    torch.set_num_threads(job.threads)
    out = Path(job.out)
    encoder = job_encoder(job)  # first: an unusable device fails before the data loads
    task = load_task_config(job.task)
    max_length = job.task.max_length
    train_labels = task_labels(task.train, encoder)
    train_features = text_features(encoder, task.train["text"], max_length, f"{task.name} train texts")
    if job.search.enabled:  # the whole split's features are cached already: select the kept rows, never re-encode
        task, keep = search.validation_split(task, job.search)
        train_labels, train_features = train_labels[keep.to(encoder.device)], train_features[keep.to(train_features.device)]
    search.claim_folder(out, job)
    real = real_data(encoder, task, train_labels, train_features, max_length, job.distill)
    distilled = distilled_set(job, encoder, task, real)

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
    """The task's data, loaded and validated (:func:`condense.data.load_task`)."""
    return task_from_config(dataclasses.asdict(task))


def job_encoder(job) -> Encoder:
    """The job's encoder on the job's device (``device``, ``precision``: resolved here, once)."""
    return load_encoder(job.model.name, job.model.pooling, device=resolve_device(job.device), precision=job.precision)


def task_labels(split, encoder: Encoder) -> torch.Tensor:
    return torch.tensor(split["label"], device=encoder.device)


def distilled_set(job: DistillJob, encoder: Encoder, task: Task, real: RealData | None = None) -> DistilledSet:
    """The set in ``job.out`` when it was made with this task, model and distill config; else distil and save it,
    resuming from the checkpoint there when one of this run exists. Processes sharing ``out`` (two benches on one
    cache) wait for one another (a lock beside the folder), so the set is made once."""
    out = Path(job.out)
    with locked(out):
        distilled = finished_distillation(out, job)
        if distilled is not None:
            log.info("reusing the distilled set in %s, made with this task, model and distill config", out)
            return distilled
        config = job.distill
        check_examples_per_class(task, config.ipc)
        train_labels = task_labels(task.train, encoder)
        if real is None:
            features = None if config.trains_encoder else text_features(
                encoder, task.train["text"], job.task.max_length, f"{task.name} train texts"
            )
            real = real_data(encoder, task, train_labels, features, job.task.max_length, config)
        start = initial_set(encoder, task.train["text"], train_labels, task.label_names, config.ipc, config.seq_len, config.seed)

        checkpoint_path, identity = out / checkpoint.FILE, checkpoint.run_identity(job)
        resume = checkpoint.load(checkpoint_path, identity)
        if resume is None:
            log.info("distilling %s: %d per class, inner loop trains %s", task.name, config.ipc, config.params)
        else:
            log.info("distilling %s: resuming from outer step %d of %d (checkpoint %s)", task.name, resume.step,
                     config.outer_steps, checkpoint_path)
        result = distill(encoder, real, start, config, resume=resume, checkpoint_seconds=job.checkpoint_seconds,
                         on_checkpoint=lambda state: checkpoint.save(checkpoint_path, state, identity))
        distilled = with_provenance(encoder, task, result, job)
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


def real_data(
    encoder: Encoder, task: Task, labels: torch.Tensor, features: torch.Tensor | None, max_length: int, config: DistillConfig
) -> RealData:
    if config.trains_encoder:
        return RealData(labels=labels, tokens=tokenize(encoder, task.train["text"], max_length))
    return RealData(labels=labels, features=features)


def held_out_data(encoder: Encoder, task: Task, max_length: int, eval_cfg: EvalConfig) -> HeldOutData:
    """Frozen features of the whole test split, and tokens of a fixed subsample for models whose encoder trains.

    A trained encoder must re-encode the test set once per fresh model, which on a CPU costs minutes per model
    for the full split, so those models are tested on ``eval.encoder_test_examples`` examples drawn once.
    """
    labels = task_labels(task.test, encoder)
    features = text_features(encoder, task.test["text"], max_length, f"{task.name} test texts")
    keep = fixed_subsample(len(labels), eval_cfg.encoder_test_examples)
    texts = [task.test["text"][i] for i in keep.tolist()]
    return HeldOutData(labels=labels, features=features, tokens=tokenize(encoder, texts, max_length), token_labels=labels[keep])


def fixed_subsample(total: int, size: int | None) -> torch.Tensor:
    """Sorted indices of ``size`` of ``total`` rows, the same draw in every run; all rows when size is None."""
    if size is None or size >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:size].sort().values


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


def evaluate_against_baselines(
    encoder: Encoder,
    task: Task,
    distilled: DistilledSet,
    train_labels: torch.Tensor,
    train_features: torch.Tensor,
    real: RealData,
    test: HeldOutData,
    job: DistillJob,
    progress_file: Path | None = None,
) -> dict:
    """The ``metrics.json`` dict: every set of the same size under both training protocols.

    Each finished set is recorded in ``progress_file``, so a run that stops part way resumes from there.
    """
    config, evaluation = job.distill, job.eval
    recipe = evaluation.finetune.recipe
    eval_cfg = to_jsonable(evaluation)
    metrics: dict = {"learned": {}, "finetune": {}}
    if progress_file is not None and progress_file.exists():
        saved = read_json(progress_file)
        if saved["eval"] == eval_cfg:
            metrics = saved["metrics"]
            log.info("resuming the evaluation: %s already done", sorted(metrics["learned"]))

    def training_set(name: str) -> tuple[TrainingSet, InnerProtocol]:
        if name in ("distilled", "decoded"):
            form = "embedding" if name == "distilled" else "text"
            return distilled.training_set(form, encoder.tokenizer, job.task.max_length), distilled.inner
        labelled = labelled_subset(encoder, task, name, train_features, train_labels, real, config, job.task.max_length)
        return labelled.training_set("text", encoder.tokenizer, job.task.max_length), labelled.inner

    finetune_inits = evaluation.finetune.n_inits
    for name in ("distilled", "decoded", *evaluation.baselines):
        if name in metrics["learned"] and (name in metrics["finetune"] or not finetune_inits):
            continue
        train, inner = training_set(name)
        metrics["learned"][name] = learned_protocol(
            encoder, train, test, inner, n_inits=evaluation.n_inits, seed=evaluation.seed, desc=f"learned protocol: {name}",
        )
        if finetune_inits:
            metrics["finetune"][name] = finetune_protocol(
                encoder, train, test, recipe, n_inits=finetune_inits, seed=evaluation.seed, desc=f"fine-tuning: {name}"
            )
        log.info("%s: learned %s, finetune %s", name, metrics["learned"][name], metrics["finetune"].get(name))
        if progress_file is not None:
            atomic_write_json(progress_file, {"eval": eval_cfg, "metrics": metrics})

    full_finetune_key = {k: eval_cfg[k] for k in ("seed", "encoder_test_examples", "full_finetune_examples", "full_finetune_inits")}
    finetune_full = None
    if finetune_inits or config.trains_encoder:
        finetune_full = reference(
            "finetune-full", encoder, job.task, {**full_finetune_key, "recipe": eval_cfg["finetune"]["recipe"]},
            lambda: full_finetune(encoder, task, train_labels, test, recipe, job),
        )
    if finetune_inits:
        metrics["finetune"]["full"] = finetune_full
    if config.trains_encoder:
        metrics["learned"]["full"] = finetune_full
    else:
        metrics["learned"]["full"] = reference(
            "linear-probe", encoder, job.task, {k: eval_cfg[k] for k in ("seed", "probe_inits")},
            lambda: linear_probe(train_features, train_labels, test, n_inits=evaluation.probe_inits, seed=evaluation.seed),
        )
    return metrics


def labelled_subset(
    encoder: Encoder, task: Task, name: str, train_features: torch.Tensor, train_labels: torch.Tensor, real: RealData,
    config: DistillConfig, max_length: int,
) -> DistilledSet:
    """The ``name`` coreset (random, kcenters, herding) of ``config.ipc`` real examples per class, with soft labels
    and lrs learned for its fixed inputs by the same outer loop: the baselines' label treatment."""
    chosen = torch.from_numpy(select_coreset(name, train_features, train_labels, config.ipc, config.seed))
    texts = [task.train["text"][i] for i in chosen.tolist()]
    start = real_examples_set(encoder, texts, train_labels[chosen], task.label_names, max_length)
    return learn_labels(encoder, real, start, config)


def full_finetune(
    encoder: Encoder, task: Task, train_labels: torch.Tensor, test: HeldOutData, recipe: FinetuneRecipe, job: DistillJob
) -> dict:
    """The fine-tuning recipe on all the training data (or ``eval.full_finetune_examples`` of it)."""
    keep = fixed_subsample(len(train_labels), job.eval.full_finetune_examples)
    tokens = tokenize(encoder, [task.train["text"][i] for i in keep.tolist()], job.task.max_length)
    full = TrainingSet(tokens["attention_mask"], F.one_hot(train_labels[keep], task.num_classes).float(), input_ids=tokens["input_ids"])
    return finetune_protocol(
        encoder, full, test, recipe, n_inits=job.eval.full_finetune_inits, seed=job.eval.seed, desc="fine-tuning: full"
    )


def reference(kind: str, encoder: Encoder, task: TaskConfig, settings: dict, compute: Callable[[], dict]) -> dict:
    """Full-data references do not depend on the distillation seed or config; compute each once and cache it."""
    key = {"kind": kind, "model": encoder.name, "pooling": encoder.pooling, "task": task, "settings": settings,
           "version": condense.__version__}
    # Seeds run in parallel (benchmarks/distill_tasks.py --jobs 2); the lock makes the second one wait for the
    # first's result instead of computing the same reference again.
    return cached(cache_dir() / "references" / f"{digest(key)}.json", compute, read_json, atomic_write_json, lock=True)
