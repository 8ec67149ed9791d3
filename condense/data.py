"""Load a text-classification task as two Hugging Face datasets with columns ``text`` and ``label``.

Data comes from, in order: explicit files, a user folder, the shared datasets folder, or the
Hugging Face hub. Whatever the source, the result is validated the same way, and every error
names the file, column, row or value at fault.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

# Longest first, so "train.csv.gz" is not mistaken for a ".gz" of unknown kind.
SUPPORTED_EXTENSIONS = (".csv.gz", ".csv", ".jsonl.gz", ".jsonl", ".json", ".parquet")

_FEATURES = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
_HTML_LINE_BREAK = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)
# Said once per message so that "row 3" is never read as a 0-based index or a file line number.
_ROW_NOTE = "1-based data row, header not counted"


class DataError(ValueError):
    """Bad input; the message names the file, column, row or value."""


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


def default_data_dir() -> Path:
    """``$CONDENSE_DATA_DIR`` if set, else ``shared/datasets`` next to the repository."""
    from_env = os.environ.get("CONDENSE_DATA_DIR")
    if from_env:
        return Path(from_env).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "datasets"


def clean_text(text: str) -> str:
    """Replace HTML line breaks by a space, collapse whitespace and strip."""
    return " ".join(_HTML_LINE_BREAK.sub(" ", text).split())


def load_task(
    name: str,
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
    """Load task ``name``; see the module docstring for where the data is looked for."""
    if ignored:
        logger.debug("load_task(%s): ignoring keys not about loading: %s", name, sorted(ignored))
    for key, limit in (("max_train_examples", max_train_examples), ("max_test_examples", max_test_examples)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DataError(f"task {name!r}: {key} must be a positive integer or None, got {limit!r}")
    given_names = _check_label_names(label_names, f"task {name!r}: label_names") if label_names is not None else None

    raw, source, found_names = _read_splits(
        name, path=path, data_dir=data_dir, train_file=train_file, test_file=test_file,
        text_column=text_column, label_column=label_column,
        train_split=train_split, test_split=test_split, hub=hub,
    )
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
    """``load_task(**cfg)`` for a Hydra/OmegaConf or plain mapping; tokeniser keys are ignored."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(cfg, DictConfig):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as err:
            raise DataError(f"task config is missing a required value: {err}") from err
    cfg = dict(cfg)
    if "name" not in cfg:
        raise DataError(f"task config has no 'name'; keys: {sorted(cfg)}")
    return load_task(**cfg)


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


# ---------------------------------------------------------------- finding and reading the data


def _read_splits(
    name: str, *, path: str | None, data_dir: str | None, train_file: str | None, test_file: str | None,
    text_column: str, label_column: str, train_split: str, test_split: str, hub: Mapping | None,
) -> tuple[tuple[_RawSplit, _RawSplit], str, list[str] | None]:
    """Both splits, a description of where they came from, and label names found with them."""
    columns = (text_column, label_column)
    if train_file is not None or test_file is not None:
        folder = Path(path) if path is not None else None
        files = [
            _explicit_or_folder_file(explicit, folder, split, arg)
            for explicit, split, arg in ((train_file, train_split, "train_file"), (test_file, test_split, "test_file"))
        ]
        names = _read_info_labels(folder) if folder is not None else None
        raw = tuple(_read_file(file, split, *columns) for file, split in zip(files, (train_split, test_split)))
        return raw, ", ".join(dict.fromkeys(str(f) for f in files)), names  # type: ignore[return-value]

    if path is not None:
        return _read_folder(Path(path), train_split, test_split, columns)

    shared = (Path(data_dir) if data_dir is not None else default_data_dir()) / name
    if shared.is_dir():
        return _read_folder(shared, train_split, test_split, columns)
    if hub is None:
        raise DataError(
            f"task {name!r}: no local copy at {shared} (folder does not exist) and no hub fallback configured; "
            "give path=, train_file=/test_file=, or data_dir="
        )
    logger.info("task %s: no local copy at %s, loading from the Hugging Face hub", name, shared)
    return _read_hub(hub, text_column, label_column, train_split, test_split, shared)


def _explicit_or_folder_file(explicit: str | None, folder: Path | None, split: str, arg: str) -> Path:
    if explicit is not None:
        file = Path(explicit)
        if not file.is_file():
            raise DataError(f"{arg} {file} does not exist (split {split!r})")
        _extension(file)
        return file
    if folder is None:
        raise DataError(f"{arg} is not given and there is no path= folder to find split {split!r} in")
    return _find_split_file(folder, split)


def _read_folder(
    folder: Path, train_split: str, test_split: str, columns: tuple[str, str]
) -> tuple[tuple[_RawSplit, _RawSplit], str, list[str] | None]:
    if not folder.is_dir():
        raise DataError(
            f"data folder {folder} does not exist; it should hold {train_split}.<ext> and {test_split}.<ext> "
            f"with <ext> one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    files = [_find_split_file(folder, split) for split in (train_split, test_split)]
    names = _read_info_labels(folder)
    raw = tuple(_read_file(file, split, *columns) for file, split in zip(files, (train_split, test_split)))
    return raw, str(folder), names  # type: ignore[return-value]


def _find_split_file(folder: Path, split: str) -> Path:
    candidates = [folder / f"{split}{ext}" for ext in SUPPORTED_EXTENSIONS]
    found = [c for c in candidates if c.is_file()]
    if not found:
        raise DataError(
            f"no file for split {split!r} in {folder}; looked for {', '.join(c.name for c in candidates)}"
        )
    if len(found) > 1:
        raise DataError(f"split {split!r} in {folder} is ambiguous: {', '.join(f.name for f in found)}; keep one")
    return found[0]


def _extension(file: Path) -> str:
    for ext in SUPPORTED_EXTENSIONS:
        if file.name.endswith(ext):
            return ext
    raise DataError(f"{file}: unsupported file type; supported: {', '.join(SUPPORTED_EXTENSIONS)}")


def _read_info_labels(folder: Path) -> list[str] | None:
    info = folder / "info.json"
    if not info.is_file():
        return None
    try:
        content = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{info}: cannot read as JSON: {err}") from err
    if not isinstance(content, dict) or "labels" not in content:
        return None
    return _check_label_names(content["labels"], f"{info}: \"labels\"")


def _check_label_names(names: Any, where: str) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise DataError(f"{where} must be a non-empty list of class names, got {names!r}")
    names = [str(n) for n in names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{where} has duplicate class names: {duplicates}")
    return names


def _read_file(file: Path, split: str, text_column: str, label_column: str) -> _RawSplit:
    frame = _read_frame(file)
    logger.debug("read %s: %d rows, columns %s", file, len(frame), list(frame.columns))
    return _raw_split_from_frame(frame, split, str(file), text_column, label_column)


def _read_frame(file: Path) -> pd.DataFrame:
    ext = _extension(file)
    try:
        if ext.startswith(".csv"):
            # Every cell as the string it is: "NA" or "null" are real texts, and labels are parsed below.
            return pd.read_csv(file, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
        if ext == ".parquet":
            return pd.read_parquet(file)
        if ext.startswith(".jsonl"):
            return pd.DataFrame.from_records(_read_json_lines(file))
        return _frame_from_json(json.loads(file.read_text(encoding="utf-8")), file)
    except DataError:
        raise
    except json.JSONDecodeError as err:
        raise DataError(f"{file}: not valid JSON: {err}") from err
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, ImportError) as err:
        raise DataError(f"{file}: cannot read: {err}") from err


def _read_json_lines(file: Path) -> list[dict]:
    opener = gzip.open if file.name.endswith(".gz") else open
    records = []
    with opener(file, "rt", encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{file}: line {line_number} is not valid JSON: {err}") from err
            if not isinstance(record, dict):
                raise DataError(f"{file}: line {line_number} is a JSON {type(record).__name__}, not an object")
            records.append(record)
    return records


def _frame_from_json(content: Any, file: Path) -> pd.DataFrame:
    if isinstance(content, list):
        bad = next((i for i, r in enumerate(content, start=1) if not isinstance(r, dict)), None)
        if bad is not None:
            raise DataError(f"{file}: record {bad} of the top-level list is not a JSON object")
        return pd.DataFrame.from_records(content)
    if isinstance(content, dict) and all(isinstance(v, list) for v in content.values()):
        lengths = {k: len(v) for k, v in content.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"{file}: columns have different lengths: {lengths}")
        return pd.DataFrame(content)
    raise DataError(f"{file}: expected a list of records or an object of equal-length column lists")


def _read_hub(
    hub: Mapping, text_column: str, label_column: str, train_split: str, test_split: str, looked_at: Path
) -> tuple[tuple[_RawSplit, _RawSplit], str, list[str] | None]:
    hub = dict(hub)
    if not hub.get("path"):
        raise DataError(f"hub fallback needs a 'path' (hub dataset id); got {hub}")
    hub_id, config = hub["path"], hub.get("name")
    source = hub_id if config is None else f"{hub_id} (config {config})"
    try:
        loaded = datasets.load_dataset(hub_id, config)
    except Exception as err:  # offline, unknown id, auth: all mean "no data" to the caller
        raise DataError(
            f"no local copy at {looked_at}, and loading hub dataset {source} failed: {type(err).__name__}: {err}"
        ) from err
    hub_text = hub.get("text_column") or text_column
    hub_label = hub.get("label_column") or label_column
    raw, names = [], None
    for split in (hub.get("train_split") or train_split, hub.get("test_split") or test_split):
        if split not in loaded:
            raise DataError(f"hub dataset {source} has no split {split!r}; splits: {sorted(loaded)}")
        part = loaded[split]
        feature = part.features.get(hub_label)
        if names is None and isinstance(feature, datasets.ClassLabel):
            names = list(feature.names)
        where = f"hub dataset {source} split {split!r}"
        frame = part.select_columns([c for c in (hub_text, hub_label) if c in part.column_names]).to_pandas()
        if frame.columns.size < 2:
            frame = part.to_pandas()  # so that the missing-column error lists every column
        raw.append(_raw_split_from_frame(frame, split, where, hub_text, hub_label))
    return (raw[0], raw[1]), source, names


# ---------------------------------------------------------------- validation


def _raw_split_from_frame(frame: pd.DataFrame, split: str, where: str, text_column: str, label_column: str) -> _RawSplit:
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


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a random subset of ``size`` rows keeping class proportions (largest remainder)."""
    labels = np.asarray(labels, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = size * counts / counts.sum()
    take = np.floor(quotas).astype(np.int64)
    by_remainder = np.argsort(-(quotas - take), kind="stable")
    take[by_remainder[: size - take.sum()]] += 1
    # A rare class could round to zero; when there is room, give it one example from the largest class.
    if size >= len(classes):
        for empty in np.flatnonzero(take == 0):
            take[np.argmax(take)] -= 1
            take[empty] = 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c, n in zip(classes, take)]
    return np.sort(np.concatenate(chosen))
