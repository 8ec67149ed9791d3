"""A hyper-parameter search trial's data: a validation split carved from the training rows, and the score on it.

With ``search.enabled`` (``hydra/sweeper=distill_search`` sets it), :func:`condense.jobs.distill_task.distill_task` replaces
the task's test split by a stratified, seeded sample of its training rows before anything is encoded, distils on
the other training rows, and scores the distilled set on the sample alone: no trial ever reads the test split, so
a search cannot tune on it. The split is the same in every trial (``search.seed``), so trials compare on the same
rows.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from condense.distill import checkpoint
from condense.artifact.distilled_set import DistilledSet
from condense.artifact.format import META_FILE
from condense.cache import atomic_write_json, read_json, to_jsonable
from condense.data.sampling import stratified_indices
from condense.data.tasks import DataError, Task
from condense.eval.protocols import HeldOutData, learned_protocol
from condense.models.encoders import Encoder
from condense.config.schema import DistillJob, SearchConfig

log = logging.getLogger(__name__)

MARKER = "search.json"  # in a trial's folder: the split its set was distilled without


def validation_split(task: Task, search: SearchConfig) -> tuple[Task, torch.Tensor]:
    """``task`` with ``train`` the rows to distil on and ``test`` the validation rows (both from the training split),
    and the kept rows' indices into the original training split."""
    if not search.validation_fraction < 1:
        raise DataError(f"search.validation_fraction={search.validation_fraction!r} must be below 1")
    labels = np.asarray(task.train["label"], dtype=np.int64)
    size = round(search.validation_fraction * len(labels))
    if search.max_validation_examples is not None:
        size = min(size, search.max_validation_examples)
    size = max(size, task.num_classes)  # at least one row of every class is scored
    if size >= len(labels):
        raise DataError(f"task {task.name!r}: a validation split of {size} rows leaves none of its {len(labels)} "
                        "training rows to distil on; lower search.validation_fraction")
    held = stratified_indices(labels, size, search.seed)
    keep = np.setdiff1d(np.arange(len(labels)), held)
    log.info("search: distilling %s on %d training rows, scoring on %d held-out training rows (the test split is "
             "not used)", task.name, len(keep), len(held))
    split = dataclasses.replace(task, train=task.train.select(keep), test=task.train.select(held),
                                source=f"{task.source} (training rows without the search's validation split)")
    return split, torch.from_numpy(keep)


def split_identity(job: DistillJob) -> dict | None:
    """What decides which training rows a set was distilled on: the split's settings, None without a search."""
    if not job.search.enabled:
        return None
    return {k: v for k, v in to_jsonable(job.search).items() if k != "n_inits"}


def claim_folder(out: Path, job: DistillJob) -> None:
    """Refuse an ``out`` whose artefact or checkpoint was distilled on other training rows, then mark it.

    A trial's set never saw the validation rows and a normal run's set saw them all: reusing one for the other would
    score a set on rows it was trained on, or test a set made from less data. A trial writes :data:`MARKER`; a
    folder whose marker disagrees with this job fails, naming the way out."""
    marker = out / MARKER
    made = [p.name for p in (out / META_FILE, out / checkpoint.FILE) if p.exists()]
    previous = read_json(marker)["split"] if marker.exists() else None
    current = split_identity(job)
    if made and previous != current:
        was = f"a search trial's split {previous}" if previous else "every training row"
        now = f"the search split {current}" if current else "every training row"
        raise DataError(f"{out} holds {' and '.join(made)} distilled on {was}; this job distils on {now}: choose "
                        "another out=... (a sweep gives every job its own folder)")
    if current is None:
        marker.unlink(missing_ok=True)
    else:
        atomic_write_json(marker, {"split": current})


def validation_metrics(encoder: Encoder, task: Task, distilled: DistilledSet, validation: HeldOutData,
                       job: DistillJob) -> dict:
    """The ``metrics.json`` of a trial: the learned protocol's accuracy on the validation rows, from
    ``search.n_inits`` fresh heads (the eval seed's, never the distillation's), and the split's sizes."""
    train = distilled.training_set("embedding", encoder.tokenizer, job.task.max_length)
    score = learned_protocol(encoder, train, validation, distilled.inner, n_inits=job.search.n_inits,
                             seed=job.eval.seed, desc="validation: distilled")
    split = {"train_rows": len(task.train), "validation_rows": len(task.test), **split_identity(job)}
    return {"validation": {"distilled": score}, "split": split}


def objective(job: DistillJob, distilled: DistilledSet) -> float | None:
    """What a job returns to its sweeper: a trial's validation accuracy; nothing for any other job, so that an
    Optuna sweep that forgot ``search.enabled`` fails instead of ranking by the test split."""
    if not job.search.enabled:
        return None
    return float(distilled.metrics["validation"]["distilled"]["mean"])
