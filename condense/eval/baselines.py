"""A distilled set against the baselines of its size: the ``metrics.json`` of ``python -m condense.distill``.

Every set of the same size (the distilled embeddings, their decoded text, and random, k-centers and herding subsets
of real rows given soft labels and learning rates by the same outer loop) is trained on by fresh models under the
learned inner protocol and the standard fine-tuning recipe; beside them, the same model trained on the whole training
data (a linear probe on frozen features, or the recipe), computed once per task and cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import condense
from condense.artifact.distilled_set import DistilledSet, InnerProtocol, TrainingSet
from condense.cache import atomic_write_json, cache_dir, cached, digest, read_json, to_jsonable
from condense.config.schema import DistillConfig, DistillJob, EvalConfig, FinetuneRecipe, TaskConfig
from condense.data.coresets import select_coreset
from condense.data.sampling import fixed_subsample
from condense.data.tasks import Task
from condense.distill.loop import RealData, learn_labels
from condense.distill.start import real_examples_set
from condense.eval.protocols import HeldOutData, finetune_protocol, learned_protocol, linear_probe
from condense.models.encoders import Encoder
from condense.models.features import text_features, tokenize

log = logging.getLogger(__name__)


def held_out_data(encoder: Encoder, task: Task, max_length: int, eval_cfg: EvalConfig) -> HeldOutData:
    """Frozen features of the whole test split, and tokens of a fixed subsample for models whose encoder trains.

    A trained encoder must re-encode the test set once per fresh model, which on a CPU costs minutes per model
    for the full split, so those models are tested on ``eval.encoder_test_examples`` examples drawn once.
    """
    labels = torch.tensor(task.test["label"], device=encoder.device)
    features = text_features(encoder, task.test["text"], max_length, f"{task.name} test texts")
    keep = fixed_subsample(len(labels), eval_cfg.encoder_test_examples)
    texts = [task.test["text"][i] for i in keep.tolist()]
    return HeldOutData(labels=labels, features=features, tokens=tokenize(encoder, texts, max_length), token_labels=labels[keep])


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
    """The fine-tuning recipe on the entire training split (or a fixed sample of ``eval.full_finetune_examples`` rows
    of it, for slow machines); the result says how many rows it trained on, of how many."""
    keep = fixed_subsample(len(train_labels), job.eval.full_finetune_examples)
    tokens = tokenize(encoder, [task.train["text"][i] for i in keep.tolist()], job.task.max_length)
    full = TrainingSet(tokens["attention_mask"], F.one_hot(train_labels[keep], task.num_classes).float(), input_ids=tokens["input_ids"])
    result = finetune_protocol(
        encoder, full, test, recipe, n_inits=job.eval.full_finetune_inits, seed=job.eval.seed, desc="fine-tuning: full"
    )
    return {**result, "train_examples": len(keep), "train_rows": len(train_labels)}


def reference(kind: str, encoder: Encoder, task: TaskConfig, settings: dict, compute: Callable[[], dict]) -> dict:
    """Full-data references do not depend on the distillation seed or config; compute each once and cache it."""
    key = {"kind": kind, "model": encoder.name, "pooling": encoder.pooling, "task": task, "settings": settings,
           "version": condense.__version__}
    # Seeds run in parallel (benchmarks/distill_tasks.py --jobs 2); the lock makes the second one wait for the
    # first's result instead of computing the same reference again.
    return cached(cache_dir() / "references" / f"{digest(key)}.json", compute, read_json, atomic_write_json, lock=True)
