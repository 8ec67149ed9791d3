"""Finding and reading a task's data: explicit files, a folder, the shared datasets folder, or the Hugging Face hub.

Every reader returns the two splits as pandas frames, each with the split's name and a description of where it
came from (``where``), which every later error message starts with; checking the rows is :mod:`condense.data.tasks`'s job.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

logger = logging.getLogger(__name__)

# Longest first, so "train.csv.gz" is not mistaken for a ".gz" of unknown kind.
SUPPORTED_EXTENSIONS = (".csv.gz", ".csv", ".jsonl.gz", ".jsonl", ".json", ".parquet")


class DataError(ValueError):
    """Bad input; the message names the file, column, row or value."""


@dataclass
class SplitFrame:
    """One split as read: its rows, ``where`` they came from (a file, or a hub dataset and split), and the names
    of its text and label columns there."""

    split: str
    where: str
    frame: pd.DataFrame
    text_column: str
    label_column: str


# Both splits, a description of where they came from, and the label names found with them (None if none).
Found = tuple[tuple[SplitFrame, SplitFrame], str, "list[str] | None"]


def default_data_dir() -> Path:
    """``$CONDENSE_DATA_DIR`` if set, else the first ``shared/datasets`` folder in the working directory or one of
    its parents (a checkout beside ``shared/``), else ``./shared/datasets``, which error messages then name.

    Never a path derived from where condense is installed: an installed package has no data beside it."""
    from_env = os.environ.get("CONDENSE_DATA_DIR")
    if from_env:
        return Path(from_env).expanduser()
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "shared" / "datasets").is_dir():
            return folder / "shared" / "datasets"
    return here / "shared" / "datasets"


def read_splits(
    name: str, *, path: str | None, data_dir: str | None, train_file: str | None, test_file: str | None,
    text_column: str, label_column: str, train_split: str, test_split: str, hub: Mapping | None,
) -> Found:
    """Both splits of task ``name`` from the first source given: files, a folder, the shared folder, the hub."""
    columns = (text_column, label_column)
    if train_file is not None or test_file is not None:
        folder = Path(path) if path is not None else None
        files = [
            _explicit_or_folder_file(explicit, folder, split, arg)
            for explicit, split, arg in ((train_file, train_split, "train_file"), (test_file, test_split, "test_file"))
        ]
        names = info_label_names(folder) if folder is not None else None
        frames = tuple(_read_file(file, split, *columns) for file, split in zip(files, (train_split, test_split)))
        return frames, ", ".join(dict.fromkeys(str(f) for f in files)), names  # type: ignore[return-value]

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


def strip_extension(file_name: str) -> str:
    """``train.csv.gz`` -> ``train``: the name without a supported extension (else without its last suffix)."""
    for ext in SUPPORTED_EXTENSIONS:
        if file_name.endswith(ext) and len(file_name) > len(ext):
            return file_name[: -len(ext)]
    return Path(file_name).stem


def read_info(folder: Path) -> dict:
    """The folder's ``info.json`` as an object; ``{}`` when it has none or it is not an object."""
    info = folder / "info.json"
    if not info.is_file():
        return {}
    try:
        content = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{info}: cannot read as JSON: {err}") from err
    return content if isinstance(content, dict) else {}


def info_label_names(folder: Path) -> list[str] | None:
    info = read_info(folder)
    if "labels" not in info:
        return None
    return check_label_names(info["labels"], f"{folder / 'info.json'}: \"labels\"")


def check_label_names(names: Any, where: str) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise DataError(f"{where} must be a non-empty list of class names, got {names!r}")
    names = [str(n) for n in names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{where} has duplicate class names: {duplicates}")
    return names


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


def _read_folder(folder: Path, train_split: str, test_split: str, columns: tuple[str, str]) -> Found:
    if not folder.is_dir():
        raise DataError(
            f"data folder {folder} does not exist; it should hold {train_split}.<ext> and {test_split}.<ext> "
            f"with <ext> one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    files = [_find_split_file(folder, split) for split in (train_split, test_split)]
    names = info_label_names(folder)
    frames = tuple(_read_file(file, split, *columns) for file, split in zip(files, (train_split, test_split)))
    return frames, str(folder), names  # type: ignore[return-value]


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


def _read_file(file: Path, split: str, text_column: str, label_column: str) -> SplitFrame:
    frame = _read_frame(file)
    logger.debug("read %s: %d rows, columns %s", file, len(frame), list(frame.columns))
    return SplitFrame(split, str(file), frame, text_column, label_column)


def _read_frame(file: Path) -> pd.DataFrame:
    ext = _extension(file)
    try:
        if ext.startswith(".csv"):
            # Every cell as the string it is: "NA" or "null" are real texts, and labels are parsed later.
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
) -> Found:
    """The hub's splits; their columns are the hub's own (``hub.text_column``/``label_column``), else ours."""
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
    frames, names = [], None
    for split in (hub.get("train_split") or train_split, hub.get("test_split") or test_split):
        if split not in loaded:
            raise DataError(f"hub dataset {source} has no split {split!r}; splits: {sorted(loaded)}")
        part = loaded[split]
        feature = part.features.get(hub_label)
        if names is None and isinstance(feature, datasets.ClassLabel):
            names = list(feature.names)
        frame = part.select_columns([c for c in (hub_text, hub_label) if c in part.column_names]).to_pandas()
        if frame.columns.size < 2:
            frame = part.to_pandas()  # so that the missing-column error lists every column
        frames.append(SplitFrame(split, f"hub dataset {source} split {split!r}", frame, hub_text, hub_label))
    return (frames[0], frames[1]), source, names
