"""Load a text-classification task as two Hugging Face datasets with columns ``text`` and ``label``.

Data comes from, in order: explicit files, a user folder, the shared datasets folder, or the
Hugging Face hub (read by :mod:`condense.data.files`). Whatever the source, the result is validated
here the same way, and every error names the file, column, row or value at fault.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from condense.data.sampling import stratified_indices
from condense.data.files import (
    SUPPORTED_EXTENSIONS,
    DataError,
    SplitFrame,
    check_label_names,
    default_data_dir,
    read_info,
    read_splits,
    strip_extension,
)

__all__ = [
    "SUPPORTED_EXTENSIONS", "DataError", "Task", "check_examples_per_class", "clean_text", "default_data_dir",
    "default_task_name", "load_task", "task_from_config",
]

logger = logging.getLogger(__name__)

_FEATURES = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
_HTML_LINE_BREAK = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)
# Said once per message so that "row 3" is never read as a 0-based index or a file line number.
_ROW_NOTE = "1-based data row, header not counted"


@dataclass
class Task:
    """A classification task: label names and a train and a test split."""

    name: str
    label_names: list[str]
    train: datasets.Dataset
    test: datasets.Dataset
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


@dataclass
class _RawSplit:
    """One split as read, before labels become ids; ``where`` names it in error messages."""

    split: str
    where: str
    text_column: str
    label_column: str
    texts: list[str]
    labels: list[Any]


def default_task_name(path: str | None = None, train_file: str | None = None) -> str:
    """The name of a task given by its data and no name: an explicit train file's name without its extension
    (``data/reviews.jsonl`` -> ``reviews``), else the folder's ``info.json`` ``"name"``, else the folder's name.

    Reads nothing but ``info.json``, so a config can name its tasks (and their output folders) before loading data.
    """
    if train_file is not None:
        return strip_extension(Path(train_file).name)
    if path is None:
        raise DataError(
            "a task needs a name unless it is named after its data: give name= (a task in the shared datasets "
            "folder or on the hub), path= (a folder) or train_file="
        )
    # abspath, not resolve: "." is named after the working directory, and a symlinked folder after the link.
    folder = Path(os.path.abspath(os.path.expanduser(path)))
    name = read_info(folder).get("name") if folder.is_dir() else None
    if name is None:
        return folder.name
    # The name becomes part of output and cache folder names.
    if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name:
        raise DataError(f"{folder / 'info.json'}: \"name\" must be a non-empty string without slashes, got {name!r}")
    return name.strip()


def clean_text(text: str) -> str:
    """Replace HTML line breaks by a space, collapse whitespace and strip."""
    return " ".join(_HTML_LINE_BREAK.sub(" ", text).split())


def load_task(
    name: str | None = None,
    *,
    path: str | None = None,
    data_dir: str | None = None,
    train_file: str | None = None,
    test_file: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    label_names: list[str] | None = None,
    train_split: str = "train",
    test_split: str = "test",
    hub: Mapping | None = None,
    clean_html: bool = False,
    max_train_examples: int | None = None,
    max_test_examples: int | None = None,
    seed: int = 0,
    **ignored: Any,
) -> Task:
    """Load task ``name``; see the module docstring for where the data is looked for. Without a name, the task is
    named after its data (:func:`default_task_name`): its info.json "name", folder or train file."""
    if name is None:
        name = default_task_name(path=path, train_file=train_file)
    if ignored:
        logger.debug("load_task(%s): ignoring keys not about loading: %s", name, sorted(ignored))
    for key, limit in (("max_train_examples", max_train_examples), ("max_test_examples", max_test_examples)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DataError(f"task {name!r}: {key} must be a positive integer or None, got {limit!r}")
    given_names = check_label_names(label_names, f"task {name!r}: label_names") if label_names is not None else None

    frames, source, found_names = read_splits(
        name, path=path, data_dir=data_dir, train_file=train_file, test_file=test_file,
        text_column=text_column, label_column=label_column,
        train_split=train_split, test_split=test_split, hub=hub,
    )
    raw = [_raw_split(frame) for frame in frames]
    train_raw, test_raw = raw
    names = given_names or found_names or _infer_label_names(train_raw, test_raw)
    train_ids = _encode_labels(train_raw, names)
    test_ids = _encode_labels(test_raw, names)
    _check_every_class_has_training_example(train_ids, names, train_raw.where)

    if clean_html:
        for raw_split in raw:
            raw_split.texts = [clean_text(text) for text in raw_split.texts]
            # A review that was only "<br />" is empty now; it would reach the model as an empty string.
            _check_texts_not_empty(raw_split, after="after clean_html")

    train_keep = _subsample(train_ids, max_train_examples, seed)
    test_keep = _subsample(test_ids, max_test_examples, seed)
    _check_every_class_has_training_example(
        train_ids[train_keep], names, f"{train_raw.where} after subsampling to max_train_examples={max_train_examples}"
    )
    train = _build(train_raw, train_ids, train_keep)
    test = _build(test_raw, test_ids, test_keep)
    logger.info(
        "task %s from %s: train %d rows (of %d), test %d rows (of %d), %d classes",
        name, source, len(train), len(train_raw.texts), len(test), len(test_raw.texts), len(names),
    )
    return Task(name=name, label_names=list(names), train=train, test=test, source=source)


def task_from_config(cfg: Mapping) -> Task:
    """``load_task(**cfg)`` for a Hydra/OmegaConf or plain mapping; tokeniser keys are ignored, and a missing or
    null ``name`` names the task after its data (:func:`default_task_name`)."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(cfg, DictConfig):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as err:
            raise DataError(f"task config is missing a required value: {err}") from err
    return load_task(**dict(cfg))


def check_examples_per_class(task: Task, k: int) -> None:
    """Raise DataError when a class has fewer than ``k`` training examples."""
    counts = np.bincount(np.asarray(task.train["label"], dtype=np.int64), minlength=task.num_classes)
    short = [
        f"class {i} ({task.label_names[i]!r}) has {int(counts[i])}"
        for i in range(task.num_classes) if counts[i] < k
    ]
    if short:
        raise DataError(
            f"task {task.name!r} ({task.source}): {k} training examples per class are needed, but "
            + "; ".join(short)
        )


# ---------------------------------------------------------------- validation


def _raw_split(found: SplitFrame) -> _RawSplit:
    frame, split, where = found.frame, found.split, found.where
    text_column, label_column = found.text_column, found.label_column
    for role, column in (("text_column", text_column), ("label_column", label_column)):
        if column not in frame.columns:
            existing = ", ".join(repr(str(c)) for c in frame.columns) or "none"
            raise DataError(f"{where}: no column {column!r} ({role}); columns: {existing}")
    if len(frame) == 0:
        raise DataError(f"{where}: split {split!r} has no data rows")
    raw = _RawSplit(
        split=split,
        where=where,
        text_column=text_column,
        label_column=label_column,
        texts=[_as_text(v) for v in frame[text_column].tolist()],
        labels=frame[label_column].tolist(),
    )
    _check_texts_not_empty(raw)
    return raw


def _as_text(value: Any) -> str:
    if _is_missing(value):
        return ""
    return value if isinstance(value, str) else str(value)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _check_texts_not_empty(raw: _RawSplit, after: str = "") -> None:
    empty_rows = [row for row, text in enumerate(raw.texts, start=1) if not text.strip()]
    if empty_rows:
        shown = ", ".join(str(r) for r in empty_rows[:5])
        more = f" and {len(empty_rows) - 5} more" if len(empty_rows) > 5 else ""
        when = f" {after}" if after else ""
        raise DataError(
            f"{raw.where}: column {raw.text_column!r} is empty or whitespace-only{when} at row {shown}{more} "
            "(1-based data rows, header not counted)"
        )


def _as_number(value: Any) -> float | None:
    """The label as a number, or None when it is a string that is not one."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _infer_label_names(*raws: _RawSplit) -> list[str]:
    """Sorted strings when no label is a number, else ``"0".."max"`` for integer class ids."""
    numbers = [(raw, row, _as_number(v)) for raw in raws for row, v in enumerate(raw.labels, start=1)
               if not _is_missing(v)]
    if numbers and all(n is None and isinstance(raw.labels[row - 1], str) for raw, row, n in numbers):
        return sorted({raw.labels[row - 1].strip() for raw, row, _ in numbers})
    # Integer class ids: invalid values are reported by _encode_labels, with their row.
    valid = [(raw, row, n) for raw, row, n in numbers if n is not None and n.is_integer() and n >= 0]
    if not valid:
        return ["0"]
    raw, row, largest = max(valid, key=lambda item: item[2])
    train_rows = len(raws[0].labels)
    if largest + 1 > train_rows:
        # Each class needs a training example, so more classes than training rows is already wrong,
        # and building that many names for a stray huge id would be slow.
        raise DataError(
            f"{raw.where}: label {int(largest)} at row {row} ({_ROW_NOTE}) implies {int(largest) + 1} classes, "
            f"more than the {train_rows} training rows; integer labels must be class ids 0..K-1"
        )
    return [str(i) for i in range(int(largest) + 1)]


def _encode_labels(raw: _RawSplit, names: list[str]) -> np.ndarray:
    name_to_id = {name: i for i, name in enumerate(names)}
    ids = np.empty(len(raw.labels), dtype=np.int64)
    for index, value in enumerate(raw.labels):
        at = f"{raw.where}: column {raw.label_column!r}, row {index + 1} ({_ROW_NOTE})"
        if _is_missing(value):
            raise DataError(f"{at}: label is missing")
        if isinstance(value, str) and value.strip() in name_to_id:
            ids[index] = name_to_id[value.strip()]
            continue
        number = _as_number(value)
        if number is None:
            raise DataError(f"{at}: label {value!r} is neither a class id nor one of the label names {names}")
        if not number.is_integer():
            raise DataError(f"{at}: label {value!r} is not an integer class id")
        if not 0 <= number < len(names):
            raise DataError(
                f"{at}: label {value!r} is out of range; class ids are 0..{len(names) - 1} for labels {names}"
            )
        ids[index] = int(number)
    return ids


def _check_every_class_has_training_example(train_ids: np.ndarray, names: list[str], where: str) -> None:
    counts = np.bincount(train_ids, minlength=len(names))
    empty = [f"class {i} ({names[i]!r})" for i in range(len(names)) if counts[i] == 0]
    if empty:
        raise DataError(f"{where}: no training example for {', '.join(empty)}")


# ---------------------------------------------------------------- subsampling and building


def _subsample(ids: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= len(ids):
        return np.arange(len(ids))
    return stratified_indices(ids, limit, seed)


def _build(raw: _RawSplit, ids: np.ndarray, keep: np.ndarray) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": [raw.texts[i] for i in keep], "label": ids[keep]}, features=_FEATURES)
