"""The distilled-set artefact: synthetic input embeddings, soft labels and inner learning rates.

On disk an artefact is a folder with `embeddings.safetensors` (tensors), `meta.json`
(provenance and format version), `text.jsonl` (one readable line per example) and
`metrics.json`. Loading uses safetensors and json only, never pickle.

A merged set (see `condense.merge`) is the same artefact with a per-example `task_ids`
tensor and a `meta["tasks"]` list describing each original task; it is written as format 2.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import os
import platform
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDINGS_FILE",
    "FORMAT_VERSION",
    "MERGED_FORMAT_VERSION",
    "META_FILE",
    "METRICS_FILE",
    "TEXT_FILE",
    "ArtifactError",
    "DistilledSet",
    "to_jsonable",
]

FORMAT_VERSION = 1  # plain single-task sets
# Merged sets get their own version so an older reader refuses them instead of
# silently dropping task_ids and misreading task-space labels.
MERGED_FORMAT_VERSION = 2
KNOWN_FORMAT_VERSIONS = (FORMAT_VERSION, MERGED_FORMAT_VERSION)
LABEL_SPACES = ("task", "class")

EMBEDDINGS_FILE = "embeddings.safetensors"
META_FILE = "meta.json"
TEXT_FILE = "text.jsonl"
METRICS_FILE = "metrics.json"

_REQUIRED_TENSORS = ("embeddings", "attention_mask", "labels", "soft_labels", "inner_lrs")
_SOFT_LABEL_ATOL = 1e-4


class ArtifactError(ValueError):
    """A distilled-set folder is missing, incomplete or inconsistent."""


def to_jsonable(obj: Any, _path: str = "$") -> Any:
    """Convert OmegaConf, numpy, torch, Path, enum and dataclass values recursively to JSON built-ins.

    Dict keys become strings, tuples and sets become lists, and non-finite floats become
    None so the output is strict JSON. Unknown types raise TypeError naming where they sit.
    """
    if isinstance(obj, enum.Enum):  # before str/int: StrEnum and IntEnum are subclasses
        return to_jsonable(obj.value, _path)
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), _path)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), _path)
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist(), _path)
    if isinstance(obj, Path):
        return str(obj)
    if _is_omegaconf(obj):
        from omegaconf import OmegaConf

        return to_jsonable(OmegaConf.to_container(obj, resolve=True), _path)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj), _path)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, f"{_path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        items = [to_jsonable(v, f"{_path}[]") for v in obj]
        # Sets have no order; sort when possible so the file is reproducible.
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{_path}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"cannot convert {type(obj).__name__} at {_path} to JSON")


def _is_omegaconf(obj: Any) -> bool:
    # Checked by module name so omegaconf is imported only when a config is actually passed.
    return type(obj).__module__.startswith("omegaconf")


def _package_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str | None]:
    import condense

    return {
        "condense": condense.__version__,
        "torch": torch.__version__,
        # Read from package metadata so saving never pays for importing transformers.
        "transformers": _package_version("transformers"),
        "datasets": _package_version("datasets"),
        "python": platform.python_version(),
    }


def _check_tensor(name: str, t: Any, ndim: int | None, dtype: torch.dtype) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {t.dtype}")


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

    def __post_init__(self) -> None:
        _check_tensor("embeddings", self.embeddings, 3, torch.float32)
        n, length, _ = self.embeddings.shape
        _check_tensor("attention_mask", self.attention_mask, 2, torch.int64)
        if tuple(self.attention_mask.shape) != (n, length):
            raise ValueError(
                f"attention_mask shape {tuple(self.attention_mask.shape)} does not match "
                f"embeddings (N, L) = {(n, length)}"
            )
        _check_tensor("labels", self.labels, 1, torch.int64)
        if len(self.labels) != n:
            raise ValueError(f"labels has {len(self.labels)} entries, embeddings has N={n}")
        _check_tensor("soft_labels", self.soft_labels, 2, torch.float32)
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")
        names = self.meta.get("label_names")
        if not isinstance(names, (list, tuple)) or not names:
            raise ValueError('meta["label_names"] must be a non-empty list of class names')
        num_classes = len(names)
        if self.task_ids is not None:
            self._check_merged(n, num_classes)
        else:
            if tuple(self.soft_labels.shape) != (n, num_classes):
                raise ValueError(
                    f"soft_labels shape {tuple(self.soft_labels.shape)} does not match "
                    f"(N, len(label_names)) = {(n, num_classes)}"
                )
            if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= num_classes):
                raise ValueError(f"labels must be in [0, {num_classes}), got {self.labels.tolist()}")
        if n:
            soft = self.soft_labels.detach()
            if not torch.isfinite(soft).all() or (soft < -_SOFT_LABEL_ATOL).any():
                raise ValueError("soft_labels must be finite and non-negative")
            sums = soft.double().sum(dim=1)
            bad = (sums - 1.0).abs() > _SOFT_LABEL_ATOL
            if bad.any():
                row = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"soft_labels rows must sum to 1 within {_SOFT_LABEL_ATOL}; "
                    f"row {row} sums to {float(sums[row]):.6f}"
                )
            if self.task_ids is not None:
                self._check_soft_blocks()
        _check_tensor("inner_lrs", self.inner_lrs, None, torch.float32)
        if self.inner_lrs.dim() not in (1, 2):
            raise ValueError(
                f"inner_lrs must be 1-D (steps,) or 2-D (steps, head/encoder), got shape {tuple(self.inner_lrs.shape)}"
            )
        if self.token_ids is not None:
            _check_tensor("token_ids", self.token_ids, 2, torch.int64)
            if tuple(self.token_ids.shape) != (n, length):
                raise ValueError(
                    f"token_ids shape {tuple(self.token_ids.shape)} does not match "
                    f"embeddings (N, L) = {(n, length)}"
                )
        if self.texts is not None:
            if not isinstance(self.texts, list) or not all(isinstance(t, str) for t in self.texts):
                raise ValueError("texts must be a list of str")
            if len(self.texts) != n:
                raise ValueError(f"texts has {len(self.texts)} entries, embeddings has N={n}")
        if not isinstance(self.metrics, dict):
            raise ValueError(f"metrics must be a dict, got {type(self.metrics).__name__}")

    def _check_merged(self, n: int, num_classes: int) -> None:
        """Shape and label checks for a merged set, in place of the single-task ones."""
        _check_tensor("task_ids", self.task_ids, 1, torch.int64)
        if len(self.task_ids) != n:
            raise ValueError(f"task_ids has {len(self.task_ids)} entries, embeddings has N={n}")
        space = self.meta.get("label_space")
        if space not in LABEL_SPACES:
            raise ValueError(f'merged set: meta["label_space"] must be one of {list(LABEL_SPACES)}, got {space!r}')
        tasks = self.meta.get("tasks")
        if not isinstance(tasks, (list, tuple)) or not tasks:
            raise ValueError('merged set: meta["tasks"] must be a non-empty list with one entry per task')
        offset = 0
        for t, task in enumerate(tasks):
            where = f'meta["tasks"][{t}]'
            if not isinstance(task, Mapping):
                raise ValueError(f"merged set: {where} must be a dict, got {type(task).__name__}")
            where += f" ({task.get('name')!r})"
            task_names = task.get("label_names")
            if not isinstance(task_names, (list, tuple)) or not task_names:
                raise ValueError(f'merged set: {where} needs a non-empty "label_names" list')
            # The offsets are derived data; a mismatch means the blocks were edited inconsistently.
            if task.get("label_offset") != offset:
                raise ValueError(
                    f'merged set: {where} has label_offset {task.get("label_offset")!r}, expected {offset} '
                    f"(the class count of the tasks before it)"
                )
            offset += len(task_names)
        if offset != num_classes:
            raise ValueError(
                f'merged set: the tasks have {offset} classes in all but meta["label_names"] lists {num_classes}'
            )
        if n and (int(self.task_ids.min()) < 0 or int(self.task_ids.max()) >= len(tasks)):
            bad = int(((self.task_ids < 0) | (self.task_ids >= len(tasks))).nonzero()[0, 0])
            raise ValueError(
                f"task_ids must be in [0, {len(tasks)}) (one per task); row {bad} has {int(self.task_ids[bad])}"
            )
        sizes = self._task_sizes()
        width = num_classes if space == "class" else int(sizes.max())
        if tuple(self.soft_labels.shape) != (n, width):
            expected = "len(label_names)" if space == "class" else "largest task class count"
            raise ValueError(
                f"soft_labels shape {tuple(self.soft_labels.shape)} does not match "
                f"(N, {expected}) = {(n, width)} for label_space {space!r}"
            )
        if n:
            low, high = self._label_block()
            bad = (self.labels < low) | (self.labels >= high)
            if bad.any():
                row = int(bad.nonzero()[0, 0])
                t = int(self.task_ids[row])
                raise ValueError(
                    f"row {row}: label {int(self.labels[row])} is not a class of its task {t} "
                    f"({tasks[t].get('name')!r}), expected [{int(low[row])}, {int(high[row])}) in label_space {space!r}"
                )

    def _check_soft_blocks(self) -> None:
        # Mass on another task's classes would leak into that task's head during training.
        low, high = self._label_block()
        columns = torch.arange(self.soft_labels.shape[1], device=self.soft_labels.device)
        low, high = low.to(columns.device), high.to(columns.device)
        inside = (columns >= low.unsqueeze(1)) & (columns < high.unsqueeze(1))
        outside = (self.soft_labels.detach().double().clamp(min=0) * ~inside).sum(dim=1)
        bad = outside > _SOFT_LABEL_ATOL
        if bad.any():
            row = int(bad.nonzero()[0, 0])
            t = int(self.task_ids[row])
            raise ValueError(
                f"row {row}: soft label puts mass {float(outside[row]):.6f} outside the classes of its task {t} "
                f"({self.meta['tasks'][t].get('name')!r}); at most {_SOFT_LABEL_ATOL} is allowed"
            )

    def _task_sizes(self) -> torch.Tensor:
        return torch.tensor([len(task["label_names"]) for task in self.meta["tasks"]], dtype=torch.int64)

    def _task_offsets(self) -> torch.Tensor:
        return torch.tensor([int(task["label_offset"]) for task in self.meta["tasks"]], dtype=torch.int64)

    def _label_block(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row, the [low, high) range of label ids (and soft-label columns) its task owns."""
        ids = self.task_ids.cpu()
        sizes = self._task_sizes()[ids]
        low = self._task_offsets()[ids] if self.meta["label_space"] == "class" else torch.zeros_like(sizes)
        device = self.labels.device
        return low.to(device), (low + sizes).to(device)

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
        if self.task_ids is None or self.meta["label_space"] == "class":
            return self.labels
        return self.labels + self._task_offsets().to(self.labels.device)[self.task_ids.to(self.labels.device)]

    @property
    def local_labels(self) -> torch.Tensor:
        """Labels as ids into the classes of each row's own task."""
        if self.task_ids is None or self.meta["label_space"] == "task":
            return self.labels
        return self.labels - self._task_offsets().to(self.labels.device)[self.task_ids.to(self.labels.device)]

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

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the artefact files into `directory` (created if needed); return the folder path.

        Every file is first written under a temporary name in the same folder and then
        moved into place with os.replace; meta.json goes last, so a crash leaves either
        the previous artefact or a folder that `load` rejects, never a torn file.
        """
        self.__post_init__()  # fields may have been reassigned since construction
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)

        tensors = {
            "embeddings": self.embeddings,
            "attention_mask": self.attention_mask,
            "labels": self.labels,
            "soft_labels": self.soft_labels,
            "inner_lrs": self.inner_lrs,
        }
        if self.token_ids is not None:
            tensors["token_ids"] = self.token_ids
        if self.task_ids is not None:
            tensors["task_ids"] = self.task_ids
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        version = MERGED_FORMAT_VERSION if self.is_merged else FORMAT_VERSION

        meta = to_jsonable(self.meta)
        meta["format_version"] = version
        meta["versions"] = _versions()
        metrics = to_jsonable(self.metrics)

        writers: list[tuple[str, Callable[[Path], None]]] = [
            (
                EMBEDDINGS_FILE,
                lambda p: save_file(
                    tensors, str(p), metadata={"format_version": str(version)}
                ),
            ),
            (TEXT_FILE, lambda p: _write_text(p, self._text_lines())),
            (METRICS_FILE, lambda p: _write_text(p, _dump_json(metrics))),
            (META_FILE, lambda p: _write_text(p, _dump_json(meta))),
        ]
        temps: list[tuple[Path, Path]] = []
        try:
            for name, write in writers:
                fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
                os.close(fd)
                tmp = Path(tmp_name)
                temps.append((tmp, directory / name))
                write(tmp)
                _fsync(tmp)
            for tmp, final in temps:
                os.replace(tmp, final)
        finally:
            for tmp, _ in temps:
                tmp.unlink(missing_ok=True)
        logger.info("saved distilled set (%d examples) to %s", self.num_examples, directory)
        return directory

    def _text_lines(self) -> str:
        names = self.label_names
        soft = self.soft_labels.detach().cpu().tolist()
        joint = self.joint_labels.cpu().tolist()
        tasks = self.task_names
        task_ids = self.task_ids.cpu().tolist() if self.task_ids is not None else None
        lines = []
        for i, label in enumerate(self.labels.cpu().tolist()):
            row: dict[str, Any] = {"index": i}
            if task_ids is not None:
                row["task"] = tasks[task_ids[i]]
            row.update(
                label=label,
                label_name=names[joint[i]],
                soft_label=soft[i],
                text=None if self.texts is None else self.texts[i],
            )
            lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        return "".join(lines)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> DistilledSet:
        """Read and validate an artefact folder written by `save`; raises ArtifactError."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ArtifactError(f"distilled-set folder {directory} does not exist")
        paths = {name: directory / name for name in (EMBEDDINGS_FILE, META_FILE, TEXT_FILE, METRICS_FILE)}
        for path in paths.values():
            if not path.is_file():
                raise ArtifactError(f"missing artefact file {path}")

        meta = _read_json(paths[META_FILE])
        version = meta.get("format_version")
        if version not in KNOWN_FORMAT_VERSIONS:
            raise ArtifactError(
                f"{paths[META_FILE]}: unknown format_version {version!r} "
                f"(known: {list(KNOWN_FORMAT_VERSIONS)})"
            )
        names = meta.get("label_names")
        if not isinstance(names, list) or not names:
            raise ArtifactError(f'{paths[META_FILE]}: "label_names" must be a non-empty list')
        metrics = _read_json(paths[METRICS_FILE])

        emb_path = paths[EMBEDDINGS_FILE]
        try:
            tensors = load_file(str(emb_path))
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise ArtifactError(f"{emb_path}: cannot read safetensors file: {e}") from e
        for key in _REQUIRED_TENSORS:
            if key not in tensors:
                raise ArtifactError(f"{emb_path}: missing tensor {key!r}")
        if tensors["embeddings"].dim() != 3:
            raise ArtifactError(
                f"{emb_path}: embeddings must be (N, L, d), got shape {tuple(tensors['embeddings'].shape)}"
            )
        n = tensors["embeddings"].shape[0]
        merged = "task_ids" in tensors
        if merged != (version == MERGED_FORMAT_VERSION):
            problem = "is for plain sets but the file has" if merged else "marks a merged set but the file has no"
            raise ArtifactError(f"{emb_path}: format_version {version} in {paths[META_FILE]} {problem} task_ids")
        for key in ("attention_mask", "labels", "soft_labels", "token_ids", "task_ids"):
            if key in tensors:
                t = tensors[key]
                if t.dim() == 0 or t.shape[0] != n:
                    raise ArtifactError(
                        f"{emb_path}: {key} has shape {tuple(t.shape)}, expected first dim N={n} "
                        f"(from embeddings {tuple(tensors['embeddings'].shape)})"
                    )
        soft = tensors["soft_labels"]
        # A merged set's soft-label width depends on its label space; the constructor checks it.
        if not merged and (soft.dim() != 2 or soft.shape[1] != len(names)):
            raise ArtifactError(
                f"{emb_path}: soft_labels has shape {tuple(soft.shape)} but {paths[META_FILE]} "
                f"lists {len(names)} label_names"
            )

        texts = _read_texts(paths[TEXT_FILE], n)
        try:
            return cls(
                embeddings=tensors["embeddings"],
                attention_mask=tensors["attention_mask"],
                labels=tensors["labels"],
                soft_labels=tensors["soft_labels"],
                inner_lrs=tensors["inner_lrs"],
                meta=meta,
                token_ids=tensors.get("token_ids"),
                texts=texts,
                metrics=metrics,
                task_ids=tensors.get("task_ids"),
            )
        except ValueError as e:
            raise ArtifactError(f"{emb_path}: invalid distilled set: {e}") from e

    def to_dataset(self) -> datasets.Dataset:
        """A Hugging Face Dataset with one row per example.

        `label` is a ClassLabel, except in a task-space merged set, where labels are ids within
        each row's task and so cannot name one joint class list; merged sets add `task_id`.
        """
        import datasets

        # datasets < 4 has no List feature; Sequence is its equivalent there.
        seq = getattr(datasets, "List", None) or datasets.Sequence
        n = self.num_examples
        columns: dict[str, list] = {
            "text": list(self.texts) if self.texts is not None else [None] * n,
            "label": self.labels.cpu().tolist(),
            "soft_label": self.soft_labels.detach().cpu().tolist(),
            "attention_mask": self.attention_mask.cpu().tolist(),
            "inputs_embeds": self.embeddings.detach().cpu().tolist(),
        }
        task_space = self.is_merged and self.meta["label_space"] == "task"
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


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _fsync(path: Path) -> None:
    # Data must be on disk before the rename makes it visible, or a power cut can
    # leave a correctly named but empty file.
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: cannot parse JSON: {e}") from e
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_texts(path: Path, n: int) -> list[str] | None:
    """Texts from text.jsonl; None when every text is null."""
    texts: list[str | None] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: cannot read: {e}") from e
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path}: line {lineno} is not valid JSON: {e}") from e
        if not isinstance(row, dict) or row.get("index") != len(texts):
            raise ArtifactError(f"{path}: line {lineno} should be the object for index {len(texts)}")
        text = row.get("text")
        if text is not None and not isinstance(text, str):
            raise ArtifactError(f"{path}: line {lineno} has a non-string text")
        texts.append(text)
    if len(texts) != n:
        raise ArtifactError(f"{path}: has {len(texts)} examples, embeddings has N={n}")
    if all(t is None for t in texts):
        return None
    if any(t is None for t in texts):
        raise ArtifactError(f"{path}: some examples have text and some do not")
    return texts  # type: ignore[return-value]
