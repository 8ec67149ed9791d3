"""The super-dataset: every task's distilled set merged, then re-distilled jointly, with the merge as the start,
one joint label space, and the outer loss measured on every task's real training rows at once.

Each task's set was distilled alone, for a model that only ever saw that task's classes: merged into one label
space, nothing in them teaches a model to tell one task's classes from another's, and their soft labels put no mass
outside their own task. Distilling the merged set further (its embeddings as the start, fresh soft labels over every
class, fresh learned learning rates) against real batches drawn from all tasks learns the super-dataset a model
trained on it *alone* needs, which is what the ``super_dataset`` strategy trains on
(:mod:`condense.continual.strategies`).

The set is made once per sequence, model, distill config and training sample, kept beside the per-task sets in the
cache, and checkpointed as every distillation is: a stopped job resumes it.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
import torch.nn.functional as F

from condense.distill import checkpoint
from condense.artifact.distilled_set import DistilledSet
from condense.cache import cache_dir, digest, locked, to_jsonable
from condense.config.parsing import sequence_name
from condense.data.sampling import training_rows
from condense.data.tasks import Task
from condense.models.features import text_features, tokenize
from condense.artifact.merge import merge_distilled
from condense.models.encoders import Encoder
from condense.distill.loop import RealData, distill
from condense.config.schema import RunJob, TaskConfig

log = logging.getLogger(__name__)


def joint_real_data(
    encoder: Encoder, tasks: list[Task], task_cfgs: list[TaskConfig], rows_per_task: int, trains_encoder: bool
) -> RealData:
    """Every task's training sample as one labelled set in the joint label space (task t's labels offset by the
    class counts before it): tokens padded to one length when the inner loop trains the encoder, else features."""
    labels, features, ids, masks, offset = [], [], [], [], 0
    for task, task_cfg in zip(tasks, task_cfgs):
        keep = training_rows(task.train["label"], rows_per_task)
        texts = [task.train["text"][i] for i in keep.tolist()]
        labels.append(torch.as_tensor(np.asarray(task.train["label"])[keep], dtype=torch.int64) + offset)
        offset += task.num_classes
        if trains_encoder:
            tokens = tokenize(encoder, texts, task_cfg.max_length)
            ids.append(tokens["input_ids"])
            masks.append(tokens["attention_mask"])
        else:
            features.append(text_features(encoder, texts, task_cfg.max_length, f"{task.name} train texts"))
    device = encoder.device
    if not trains_encoder:
        return RealData(labels=torch.cat(labels).to(device), features=torch.cat(features).to(device))
    width = max(mask.shape[1] for mask in masks)
    pad = encoder.tokenizer.pad_token_id or 0
    tokens = {"input_ids": torch.cat([F.pad(t, (0, width - t.shape[1]), value=pad) for t in ids]).to(device),
              "attention_mask": torch.cat([F.pad(m, (0, width - m.shape[1])) for m in masks]).to(device)}
    return RealData(labels=torch.cat(labels).to(device), tokens=tokens)


def joint_start(sets: list[DistilledSet]) -> DistilledSet:
    """The class-space merge of ``sets`` as a plain set over every task's classes. A merged set may put no mass on
    another task's classes (it would leak into that task's head), and that mass is what re-distillation must be
    free to learn; each row's task stays readable from its label (:meth:`LabelLayout.task_of`)."""
    merged = merge_distilled(sets, label_space="class")
    meta = {key: value for key, value in merged.meta.items() if key not in ("tasks", "label_space")}
    meta["merged_from"] = [{"name": task["name"], "label_names": task["label_names"], "label_offset": task["label_offset"]}
                           for task in merged.meta["tasks"]]
    return dataclasses.replace(merged, task_ids=None, meta=meta)


def jointly_distilled(
    job: RunJob, encoder: Encoder, tasks: list[Task], task_cfgs: list[TaskConfig], sets: list[DistilledSet]
) -> DistilledSet:
    """The class-space merge of ``sets`` (each task's embedding-form set) re-distilled on every task's training
    sample with ``job.distill``'s inner loop for ``continual.super_dataset.outer_steps``; read from the cache when it
    was made before."""
    # The merged set is the embedding form, and it learns what no task's set knew: more steps than one task's.
    config = dataclasses.replace(job.distill, projection="none", outer_steps=job.continual.super_dataset.outer_steps)
    rows = job.continual.train_examples_per_task
    identity = {"tasks": to_jsonable(task_cfgs), "model": to_jsonable(job.model), "distill": to_jsonable(config),
                "rows_per_task": rows, "precision": job.precision, **({"tf32": True} if job.tf32 else {})}
    # Where it ran belongs to a checkpoint's identity, not the cached set's: a set made on a GPU serves a CPU run.
    resumable = {**identity, "device": encoder.device.type, "torch": torch.__version__}
    identity["distill"].pop("checkpoint_every", None)
    name = sequence_name([task.name for task in tasks])
    out = cache_dir() / "distilled" / f"joint-{name}-{config.params}-ipc{config.ipc}-{digest(identity, length=12)}"
    with locked(out):
        if (out / "meta.json").exists():
            saved = DistilledSet.load(out)
            if saved.meta.get("joint") == to_jsonable(identity) and saved.progress.outer_step == config.outer_steps:
                log.info("reusing the jointly re-distilled merged set in %s", out)
                return saved
        start = joint_start(sets)
        if start.token_ids is None:
            raise ValueError(f"the merged set of {name} has no token ids (one task's set lost them), so its special "
                             "tokens cannot be told apart for re-distillation; re-distil each task's set")
        real = joint_real_data(encoder, tasks, task_cfgs, rows, config.trains_encoder)
        checkpoint_path = out / checkpoint.FILE
        resume = checkpoint.load(checkpoint_path, resumable)
        log.info("re-distilling the merged set of %s jointly (%d examples, %d real rows)%s", name,
                 start.num_examples, len(real.labels), "" if resume is None else f", from outer step {resume.step}")
        result = distill(encoder, real, start, config, resume=resume, checkpoint_seconds=job.checkpoint_seconds,
                         on_checkpoint=lambda state: checkpoint.save(checkpoint_path, state, resumable))
        result = dataclasses.replace(result, meta={**result.meta, "joint": to_jsonable(identity)})
        result.save(out)
        checkpoint_path.unlink(missing_ok=True)  # the artefact supersedes it
        log.info("saved the jointly re-distilled merged set to %s", out)
        return result
