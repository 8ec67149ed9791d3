"""The folder a distilled set is saved as: which files, which format version, and what makes a folder unreadable.

```text
DIR/
  embeddings.safetensors   embeddings, attention_mask, labels, soft_labels, inner_lrs[, token_ids][, task_ids][, attention_labels]
  meta.json                task, label names, model, ..., format_version, versions
  text.jsonl               one object per example: index[, task], label, label_name, soft_label, text
  metrics.json             evaluation results
```

Reading uses safetensors and json only, never pickle. This module checks the files as files (present, parsable,
a known format version, one text line per example); whether their contents make a valid set is for the
`DistilledSet` constructor to say.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from condense.cache import atomic_write, finish_interrupted_writes, json_text

FORMAT_VERSION = 1  # plain single-task sets
# Merged sets get their own version so an older reader refuses them instead of
# silently dropping task_ids and misreading task-space labels.
MERGED_FORMAT_VERSION = 2
KNOWN_FORMAT_VERSIONS = (FORMAT_VERSION, MERGED_FORMAT_VERSION)

EMBEDDINGS_FILE = "embeddings.safetensors"
META_FILE = "meta.json"
TEXT_FILE = "text.jsonl"
METRICS_FILE = "metrics.json"

REQUIRED_TENSORS = ("embeddings", "attention_mask", "labels", "soft_labels", "inner_lrs")
OPTIONAL_TENSORS = ("token_ids", "task_ids", "attention_labels")


class ArtifactError(ValueError):
    """A distilled-set folder is missing, incomplete or inconsistent."""


def write_folder(directory: Path, tensors: dict[str, torch.Tensor], meta: dict, metrics: dict, text_lines: str) -> None:
    """Write the four files, all before any replaces its predecessor and meta.json last, with one
    `condense.cache.atomic_write`. A kill while they are written leaves the previous folder; one while they are
    renamed leaves a journal that `read_folder` (or the next write) completes first, so a reader sees the old
    version or the new one, never a torn file or a mix. Concurrent writers of one folder must hold a lock."""
    version = MERGED_FORMAT_VERSION if "task_ids" in tensors else FORMAT_VERSION
    meta = {**meta, "format_version": version, "versions": _versions()}
    host = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    atomic_write({
        directory / EMBEDDINGS_FILE: lambda p: save_file(host, str(p), metadata={"format_version": str(version)}),
        directory / TEXT_FILE: lambda p: p.write_text(text_lines, encoding="utf-8"),
        directory / METRICS_FILE: lambda p: p.write_text(json_text(metrics), encoding="utf-8"),
        directory / META_FILE: lambda p: p.write_text(json_text(meta), encoding="utf-8"),
    })


def read_folder(directory: Path) -> dict[str, Any]:
    """The `DistilledSet` fields the folder's files hold; raises ArtifactError naming the file at fault."""
    if not directory.is_dir():
        raise ArtifactError(f"distilled-set folder {directory} does not exist")
    finish_interrupted_writes(directory)  # a save killed between two renames would otherwise read as a mix
    paths = {name: directory / name for name in (EMBEDDINGS_FILE, META_FILE, TEXT_FILE, METRICS_FILE)}
    for path in paths.values():
        if not path.is_file():
            raise ArtifactError(f"missing artefact file {path}")
    meta_path, emb_path, text_path = paths[META_FILE], paths[EMBEDDINGS_FILE], paths[TEXT_FILE]
    meta = _read_json(meta_path)
    version = meta.get("format_version")
    if version not in KNOWN_FORMAT_VERSIONS:
        raise ArtifactError(f"{meta_path}: unknown format_version {version!r} (known: {list(KNOWN_FORMAT_VERSIONS)})")
    metrics = _read_json(paths[METRICS_FILE])
    try:
        tensors = load_file(str(emb_path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ArtifactError(f"{emb_path}: cannot read safetensors file: {e}") from e
    for key in REQUIRED_TENSORS:
        if key not in tensors:
            raise ArtifactError(f"{emb_path}: missing tensor {key!r}")
    merged = "task_ids" in tensors
    if merged != (version == MERGED_FORMAT_VERSION):
        problem = "is for plain sets but the file has" if merged else "marks a merged set but the file has no"
        raise ArtifactError(f"{emb_path}: format_version {version} in {meta_path} {problem} task_ids")
    texts = _read_texts(text_path)
    embeddings = tensors["embeddings"]
    if embeddings.dim() and len(texts) != len(embeddings):  # a 0-D tensor is the constructor's to reject
        raise ArtifactError(f"{text_path}: has {len(texts)} examples, embeddings has N={len(embeddings)}")
    return {
        **{key: tensors.get(key) for key in (*REQUIRED_TENSORS, *OPTIONAL_TENSORS)},
        "meta": meta,
        "texts": None if all(t is None for t in texts) else texts,
        "metrics": metrics,
    }


def _versions() -> dict[str, str | None]:
    import condense

    def version(name: str) -> str | None:
        # Read from package metadata so saving never pays for importing transformers.
        try:
            return importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            return None

    return {
        "condense": condense.__version__,
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "datasets": version("datasets"),
        "python": platform.python_version(),
    }


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: cannot parse JSON: {e}") from e
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_texts(path: Path) -> list[str | None]:
    """The text of each line of text.jsonl, None where it has none; all or none of them must have one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: cannot read: {e}") from e
    texts: list[str | None] = []
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
    if any(t is None for t in texts) and not all(t is None for t in texts):
        raise ArtifactError(f"{path}: some examples have text and some do not")
    return texts
