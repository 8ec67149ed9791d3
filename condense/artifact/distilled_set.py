"""The distilled set: N synthetic input embeddings with soft labels and the inner protocol they were made for.

`DistilledSet` holds the data, checks its invariants, and saves and loads itself as a folder (whose files are
`condense.artifact.format`'s). A merged set (made by `condense.artifact.merge`, its label arithmetic in
`condense.artifact.label_space`) is the same artefact with a per-example `task_ids` tensor and a `meta["tasks"]` list
describing each original task. `TrainingSet` is a set in the form a model trains on, `InnerProtocol` how it trains.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from condense.models.attention import AttentionSpec, aligned
from condense.artifact.format import (  # re-exported: the format's names are part of the artefact's API
    EMBEDDINGS_FILE,
    FORMAT_VERSION,
    MERGED_FORMAT_VERSION,
    META_FILE,
    METRICS_FILE,
    OPTIONAL_TENSORS,
    REQUIRED_TENSORS,
    TEXT_FILE,
    ArtifactError,
    read_folder,
    write_folder,
)
from condense.cache import to_jsonable
from condense.artifact.label_space import check_merged, joint_labels, local_labels, shared_settings

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDINGS_FILE", "FORMAT_VERSION", "FORMS", "MERGED_FORMAT_VERSION", "META_FILE", "METRICS_FILE", "TEXT_FILE",
    "ArtifactError", "DistilledSet", "InnerProtocol", "Progress", "TrainingSet",
]

FORMS = ("embedding", "text")  # what a model trains on: the input embeddings, or the decoded text re-tokenised
SOFT_LABEL_ATOL = 1e-4
INNER_SETTINGS = ("params", "n_layers", "optimizer")  # the meta["inner"] keys InnerProtocol reads


@dataclass(frozen=True, eq=False)  # eq=False: comparing the lrs tensors elementwise has no single truth value
class InnerProtocol:
    """How a model trains on the set: the inner loop distillation optimised it for."""

    params: str = "head"  # head | last_n_layers | all
    n_layers: int = 1  # for last_n_layers
    optimizer: str = "sgd"  # sgd | momentum | adam
    lrs: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (T,) or (T, 2): head[, encoder] per step
    attention: AttentionSpec | None = None  # the attention-label term of the inner loss, when the set has labels

    @property
    def steps(self) -> int:
        return len(self.lrs)


@dataclass(frozen=True)
class Progress:
    """How far distillation got: the outer step reached, and its wall time once finished (None in a checkpoint)."""

    outer_step: int | None = None
    seconds: float | None = None


@dataclass
class TrainingSet:
    """Examples to train on: embedding form (``inputs_embeds``) or text form (``input_ids``), with soft labels."""

    attention_mask: torch.Tensor
    soft_labels: torch.Tensor
    inputs_embeds: torch.Tensor | None = None
    input_ids: torch.Tensor | None = None
    attention_labels: torch.Tensor | None = None  # (N, layers, heads, rows, L) targets, when the set has them
    attention_weights: torch.Tensor | None = None  # (N,) 1 where a row's labels apply to its tokens, else 0

    def inputs(self, index: torch.Tensor | slice = slice(None)) -> dict[str, torch.Tensor]:
        if self.inputs_embeds is not None:
            return {"inputs_embeds": self.inputs_embeds[index]}
        return {"input_ids": self.input_ids[index]}

    def __len__(self) -> int:
        return len(self.soft_labels)

    def to(self, device: torch.device) -> TrainingSet:
        """The same examples on ``device`` (a no-op where they already are)."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TrainingSet(move(self.attention_mask), move(self.soft_labels), move(self.inputs_embeds), move(self.input_ids),
                           move(self.attention_labels), move(self.attention_weights))


@dataclass
class DistilledSet:
    """N synthetic examples: (L, d) input embeddings fed via `inputs_embeds`, with soft labels and inner LRs.

    A text-only set (decoded texts, no embeddings) has embeddings of shape (N, 0, 0). A merged
    set has `task_ids`, and its labels and soft labels live in `meta["label_space"]`.
    """

    embeddings: torch.Tensor  # (N, L, d) float32
    attention_mask: torch.Tensor  # (N, L) int64
    labels: torch.Tensor  # (N,) int64, the class each example was made for
    soft_labels: torch.Tensor  # (N, C) float32, probability rows (one-hot when not learned)
    inner_lrs: torch.Tensor  # (T,) float32 per-inner-step learning rates, or (T, 2): head and encoder
    meta: dict  # task, label_names, model, tokenizer, max_length, inner protocol, config ...
    token_ids: torch.Tensor | None = None  # (N, L) int64, nearest-token decoding
    texts: list[str] | None = None  # decoded text per example
    metrics: dict = field(default_factory=dict)
    task_ids: torch.Tensor | None = None  # (N,) int64 index into meta["tasks"]; merged sets only
    attention_labels: torch.Tensor | None = None  # (N, layers, heads, rows, L) attention targets, spec in meta["inner"]

    def __post_init__(self) -> None:
        _check_tensor("embeddings", self.embeddings, 3, torch.float32)
        n, length, _ = self.embeddings.shape
        _check_tensor("attention_mask", self.attention_mask, 2, torch.int64, rows=(n, length))
        if self.token_ids is not None:
            _check_tensor("token_ids", self.token_ids, 2, torch.int64, rows=(n, length))
        _check_tensor("labels", self.labels, 1, torch.int64)
        _check_count("labels", self.labels, n)
        if self.attention_labels is not None:
            _check_tensor("attention_labels", self.attention_labels, 5, torch.float32)
            if self.attention_labels.shape[0] != n or self.attention_labels.shape[-1] != length:
                raise ValueError(f"attention_labels shape {tuple(self.attention_labels.shape)} does not match "
                                 f"(N, layers, heads, rows, L) with N={n}, L={length}")
        _check_tensor("soft_labels", self.soft_labels, 2, torch.float32)
        _check_probability_rows(self.soft_labels)
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")
        names = self.meta.get("label_names")
        if not isinstance(names, (list, tuple)) or not names:
            raise ValueError('meta["label_names"] must be a non-empty list of class names')
        if self.task_ids is not None:
            _check_tensor("task_ids", self.task_ids, 1, torch.int64)
            _check_count("task_ids", self.task_ids, n)
            check_merged(self.labels, self.soft_labels, self.task_ids, self.meta, SOFT_LABEL_ATOL)
        else:
            if tuple(self.soft_labels.shape) != (n, len(names)):
                raise ValueError(f"soft_labels shape {tuple(self.soft_labels.shape)} does not match "
                                 f"(N, len(label_names)) = {(n, len(names))}")
            if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(names)):
                raise ValueError(f"labels must be in [0, {len(names)}), got {self.labels.tolist()}")
        _check_tensor("inner_lrs", self.inner_lrs, None, torch.float32)
        if self.inner_lrs.dim() not in (1, 2):
            raise ValueError(f"inner_lrs must be 1-D (steps,) or 2-D (steps, head/encoder), "
                             f"got shape {tuple(self.inner_lrs.shape)}")
        if self.texts is not None:
            if not isinstance(self.texts, list) or not all(isinstance(t, str) for t in self.texts):
                raise ValueError("texts must be a list of str")
            _check_count("texts", self.texts, n)
        if not isinstance(self.metrics, dict):
            raise ValueError(f"metrics must be a dict, got {type(self.metrics).__name__}")

    @property
    def num_examples(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def is_merged(self) -> bool:
        """Whether this set holds several tasks (made by `condense.merge_distilled`)."""
        return self.task_ids is not None

    @property
    def has_embeddings(self) -> bool:
        """False for text-only sets, whose embeddings are (N, 0, 0) and whose content is `texts`."""
        return int(self.embeddings.shape[1]) > 0

    @property
    def task_names(self) -> list[str]:
        """The task of each task id; one name for a plain set."""
        if self.task_ids is None:
            return [str(self.meta["task"])]
        return [str(task["name"]) for task in self.meta["tasks"]]

    @property
    def joint_labels(self) -> torch.Tensor:
        """Labels as ids into `label_names`, whatever the label space."""
        return self.labels if self.task_ids is None else joint_labels(self.labels, self.task_ids, self.meta)

    @property
    def local_labels(self) -> torch.Tensor:
        """Labels as ids into the classes of each row's own task."""
        return self.labels if self.task_ids is None else local_labels(self.labels, self.task_ids, self.meta)

    @property
    def label_names(self) -> list[str]:
        return [str(name) for name in self.meta["label_names"]]

    @property
    def num_classes(self) -> int:
        return len(self.meta["label_names"])

    @property
    def class_counts(self) -> list[int]:
        """Number of examples made for each class, in `label_names` order (joint classes for a merged set)."""
        return torch.bincount(self.joint_labels.cpu(), minlength=self.num_classes).tolist()

    @property
    def examples_per_class(self) -> int:
        """Examples per class; raises ValueError when classes have different counts."""
        counts = set(self.class_counts)
        if len(counts) != 1:
            raise ValueError(f"unbalanced distilled set, examples per class: {self.class_counts}")
        return counts.pop()

    @property
    def inner(self) -> InnerProtocol:
        """The inner protocol, from `inner_lrs` and `meta["inner"]` (for a merged set, the one its tasks share)."""
        settings = self.meta.get("inner")
        if settings is None and self.is_merged:
            settings = shared_settings(self.meta, INNER_SETTINGS)
        settings = settings or {}
        attention = AttentionSpec.from_meta(settings.get("attention")) if self.attention_labels is not None else None
        return InnerProtocol(**{k: settings[k] for k in INNER_SETTINGS if k in settings}, lrs=self.inner_lrs, attention=attention)

    @property
    def progress(self) -> Progress:
        """`meta["progress"]`; both fields None for a set no distillation made (a merged set)."""
        progress = self.meta.get("progress") or {}
        return Progress(outer_step=progress.get("outer_step"), seconds=progress.get("seconds"))

    def training_set(self, form: str = "embedding", tokenizer: Any = None, max_length: int = 0) -> TrainingSet:
        """The set in trainable form: its input embeddings, or (``form="text"``) its decoded texts re-tokenised by
        ``tokenizer`` as any user of the text would, truncated to ``max(max_length, L)`` tokens, padded to the
        longest; the tokens sit on the soft labels' device."""
        if form == "embedding":
            if not self.has_embeddings:
                raise ValueError("this set is text-only (embeddings of shape (N, 0, 0)); use form='text'")
            return TrainingSet(self.attention_mask, self.soft_labels, inputs_embeds=self.embeddings,
                               attention_labels=self.attention_labels)
        if form != "text":
            raise ValueError(f"form must be one of {list(FORMS)}, got {form!r}")
        length = max(max_length, int(self.embeddings.shape[1]))
        if self.texts is None or tokenizer is None or length < 1:
            raise ValueError("form='text' needs decoded texts, a tokenizer and (for a text-only set) max_length")
        tokens = tokenizer(list(self.texts), truncation=True, max_length=length, padding="longest", return_tensors="pt")
        device = self.soft_labels.device
        mask, ids = tokens["attention_mask"].to(device), tokens["input_ids"].to(device)
        labels = weights = None
        if self.attention_labels is not None and self.token_ids is not None:
            labels, weights = aligned(self.attention_labels, self.token_ids, self.attention_mask, ids, mask)
        return TrainingSet(mask, self.soft_labels, input_ids=ids, attention_labels=labels, attention_weights=weights)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the artefact files into `directory` (created if needed), atomically; return the folder path."""
        self.__post_init__()  # fields may have been reassigned since construction
        directory = Path(directory)
        tensors = {name: getattr(self, name) for name in (*REQUIRED_TENSORS, *OPTIONAL_TENSORS)}
        tensors = {name: tensor for name, tensor in tensors.items() if tensor is not None}
        write_folder(directory, tensors, to_jsonable(self.meta), to_jsonable(self.metrics), self._text_lines())
        logger.info("saved distilled set (%d examples) to %s", self.num_examples, directory)
        return directory

    def _text_lines(self) -> str:
        names, tasks = self.label_names, self.task_names
        soft = self.soft_labels.detach().cpu().tolist()
        joint = self.joint_labels.cpu().tolist()
        task_ids = self.task_ids.cpu().tolist() if self.task_ids is not None else None
        lines = []
        for i, label in enumerate(self.labels.cpu().tolist()):
            row: dict[str, Any] = {"index": i} if task_ids is None else {"index": i, "task": tasks[task_ids[i]]}
            row.update(label=label, label_name=names[joint[i]], soft_label=soft[i],
                       text=None if self.texts is None else self.texts[i])
            lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        return "".join(lines)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> DistilledSet:
        """Read an artefact folder written by `save`. Raises ArtifactError naming the file: missing, unparsable,
        of an unknown format version, or holding a set the constructor rejects."""
        directory = Path(directory)
        fields = read_folder(directory)
        try:
            return cls(**fields)
        except ValueError as e:
            raise ArtifactError(
                f"{directory / EMBEDDINGS_FILE}: invalid distilled set (read with {META_FILE} and {TEXT_FILE}): {e}"
            ) from e

    def to_dataset(self) -> datasets.Dataset:
        """A Hugging Face Dataset with one row per example.

        `label` is a ClassLabel, except in a task-space merged set, where labels are ids within
        each row's task and so cannot name one joint class list; merged sets add `task_id`.
        """
        import datasets

        # datasets < 4 has no List feature; Sequence is its equivalent there.
        seq = getattr(datasets, "List", None) or datasets.Sequence
        task_space = self.is_merged and self.meta["label_space"] == "task"
        columns = {
            "text": list(self.texts) if self.texts is not None else [None] * self.num_examples,
            "label": self.labels.cpu().tolist(),
            "soft_label": self.soft_labels.detach().cpu().tolist(),
            "attention_mask": self.attention_mask.cpu().tolist(),
            "inputs_embeds": self.embeddings.detach().cpu().tolist(),
        }
        features = {
            "text": datasets.Value("string"),
            "label": datasets.Value("int64") if task_space else datasets.ClassLabel(names=self.label_names),
            "soft_label": seq(datasets.Value("float32")),
            "attention_mask": seq(datasets.Value("int64")),
            "inputs_embeds": seq(seq(datasets.Value("float32"))),
        }
        if self.token_ids is not None:
            columns["token_ids"] = self.token_ids.cpu().tolist()
            features["token_ids"] = seq(datasets.Value("int64"))
        if self.task_ids is not None:
            columns["task_id"] = self.task_ids.cpu().tolist()
            features["task_id"] = datasets.Value("int64")
        return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def _check_tensor(name: str, t: Any, ndim: int | None, dtype: torch.dtype, rows: tuple | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {t.dtype}")
    if rows is not None and tuple(t.shape) != rows:
        raise ValueError(f"{name} shape {tuple(t.shape)} does not match embeddings (N, L) = {rows}")


def _check_count(name: str, values: Any, n: int) -> None:
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries, embeddings has N={n}")


def _check_probability_rows(soft: torch.Tensor) -> None:
    if not len(soft):
        return
    soft = soft.detach()
    if not torch.isfinite(soft).all() or (soft < -SOFT_LABEL_ATOL).any():
        raise ValueError("soft_labels must be finite and non-negative")
    sums = soft.double().sum(dim=1)
    bad = (sums - 1.0).abs() > SOFT_LABEL_ATOL
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"soft_labels rows must sum to 1 within {SOFT_LABEL_ATOL}; row {row} sums to {float(sums[row]):.6f}"
        )
