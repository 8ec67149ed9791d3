"""Merge distilled sets of several tasks into one super-dataset, and split it back.

Multi-task and continual training want the distilled sets of many tasks as one artefact that
trainers, evaluators and `DistilledSet.save` handle like any other. A merged set is therefore a
`DistilledSet` with a task id per example and the original sets' provenance in
`meta["tasks"]`, from which `split_merged` rebuilds each original exactly. Merging always starts
from those originals, so nesting merges changes nothing (merging is associative).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from condense.artifact.distilled_set import FORMS, DistilledSet
from condense.artifact.label_space import LABEL_SPACES

logger = logging.getLogger(__name__)

__all__ = ["MergeError", "merge_distilled", "split_merged"]

# Input embeddings only mean something to the model (and vocabulary) that produced them.
_EMBEDDING_KEYS = ("model", "tokenizer", "hidden_size")


class MergeError(ValueError):
    """Distilled sets that cannot be merged as asked."""


@dataclass
class _Part:
    """One original task, flattened out of the inputs."""

    data: DistilledSet  # a plain set, as it was before any merge
    where: str  # names the input it came from, for error messages
    seq_len: int  # the original L (a text-form split has lost it)
    has_token_ids: bool  # whether the original had token ids (a merge may have dropped them)

    @property
    def name(self) -> str:
        return str(self.data.meta["task"])


def merge_distilled(
    sets: Sequence[DistilledSet], label_space: str = "task", form: str = "embedding"
) -> DistilledSet:
    """Merge distilled sets (plain or merged) into one set with a task id per example.

    `label_space="task"` keeps each task's own label ids (one head per task); `"class"` offsets
    them into one joint label space. `form="embedding"` concatenates the input embeddings, which
    needs one model, tokenizer and hidden size; `form="text"` keeps only the decoded texts, so
    sets from any models merge. Rows and tasks keep input order. Raises MergeError.
    """
    sets = list(sets)
    if not sets:
        raise MergeError("merge_distilled needs at least one distilled set, got none")
    if label_space not in LABEL_SPACES:
        raise MergeError(f"unknown label_space {label_space!r}; use one of {list(LABEL_SPACES)}")
    if form not in FORMS:
        raise MergeError(f"unknown form {form!r}; use one of {list(FORMS)}")
    parts = _flatten(sets)
    if any(p.data.attention_labels is not None for p in parts):
        # Their maps differ in width and spec from set to set; the merged set trains on labels alone.
        logger.warning("attention labels are not merged: the merged set keeps soft labels and learning rates only")
    _check_names(parts)
    if form == "embedding":
        _check_embedding_form(parts)
    else:
        _check_text_form(parts)

    sizes = [part.data.num_classes for part in parts]
    offsets = [sum(sizes[:t]) for t in range(len(parts))]
    width = sum(sizes) if label_space == "class" else max(sizes)
    device = parts[0].data.labels.device  # the merged set lives where the first one does
    labels, soft_labels, task_ids = [], [], []
    for t, part in enumerate(parts):
        data, start = part.data, offsets[t] if label_space == "class" else 0
        labels.append(data.labels.detach().to(device) + start)
        soft = data.soft_labels.detach().to(device)
        # Zeros outside the task's block: no probability on another task's classes.
        soft_labels.append(F.pad(soft, (start, width - start - soft.shape[1])))
        task_ids.append(torch.full((data.num_examples,), t, dtype=torch.int64, device=device))

    n = sum(part.data.num_examples for part in parts)
    if form == "embedding":
        length = max(part.data.embeddings.shape[1] for part in parts)
        embeddings = torch.cat([_pad_length(p.data.embeddings.detach().to(device), length) for p in parts])
        attention_mask = torch.cat([_pad_length(p.data.attention_mask.to(device), length) for p in parts])
        token_ids = None
        if all(p.data.token_ids is not None for p in parts):
            token_ids = torch.cat([_pad_length(p.data.token_ids.to(device), length) for p in parts])
    else:
        embeddings = torch.zeros(n, 0, 0, dtype=torch.float32, device=device)
        attention_mask = torch.zeros(n, 0, dtype=torch.int64, device=device)
        token_ids = None
    texts = None
    if all(p.data.texts is not None for p in parts):
        texts = [text for p in parts for text in p.data.texts]

    lrs = [p.data.inner_lrs.detach().to(device) for p in parts]
    if all(lr.shape == lrs[0].shape for lr in lrs):
        inner_lrs = torch.stack(lrs).mean(dim=0)
    else:  # no meaningful average; each task's own schedule stays in meta["tasks"]
        inner_lrs = torch.zeros(0, dtype=torch.float32, device=device)

    metas = [p.data.meta for p in parts]
    lengths = [m["max_length"] for m in metas if m.get("max_length") is not None]
    meta: dict[str, Any] = {
        "task": "+".join(p.name for p in parts),
        "label_names": [f"{p.name}:{name}" for p in parts for name in p.data.label_names],
        "label_space": label_space,
        "form": form,
        **{key: _shared(metas, key) for key in (*_EMBEDDING_KEYS, "pooling")},
        "max_length": max(lengths) if lengths else None,
        "tasks": [
            {
                "name": p.name,
                "label_names": p.data.label_names,
                "label_offset": offsets[t],
                "num_examples": p.data.num_examples,
                "seq_len": p.seq_len,
                "inner_lrs": p.data.inner_lrs.detach().cpu().tolist(),
                "meta": copy.deepcopy(p.data.meta),
                "metrics": copy.deepcopy(p.data.metrics),
                "has_token_ids": p.has_token_ids,
            }
            for t, p in enumerate(parts)
        ],
    }
    merged = DistilledSet(
        embeddings=embeddings,
        attention_mask=attention_mask,
        labels=torch.cat(labels),
        soft_labels=torch.cat(soft_labels),
        inner_lrs=inner_lrs,
        meta=meta,
        token_ids=token_ids,
        texts=texts,
        metrics={},
        task_ids=torch.cat(task_ids),
    )
    logger.info(
        "merged %d tasks (%s) into %d examples, label_space=%s, form=%s",
        len(parts), meta["task"], n, label_space, form,
    )
    return merged


def split_merged(merged: DistilledSet) -> list[DistilledSet]:
    """The original sets of a merged set, in merge order; `[merged]` for a plain set.

    Embedding-form originals come back exactly (token ids only where the merge kept them);
    text-form originals come back text-only, with (N, 0, 0) embeddings.
    """
    return [data for data, _ in _split(merged)]


def _split(merged: DistilledSet) -> list[tuple[DistilledSet, dict]]:
    if not merged.is_merged:
        return [(merged, {})]
    text_only = merged.meta.get("form") == "text" or not merged.has_embeddings
    local, device = merged.local_labels, merged.labels.device
    out = []
    for t, task in enumerate(merged.meta["tasks"]):
        rows = (merged.task_ids == t).nonzero().squeeze(1)
        n, num_classes = len(rows), len(task["label_names"])
        start = int(task["label_offset"]) if merged.meta["label_space"] == "class" else 0
        token_ids = None
        if text_only:
            embeddings = torch.zeros(n, 0, 0, dtype=torch.float32, device=device)
            attention_mask = torch.zeros(n, 0, dtype=torch.int64, device=device)
        else:
            length = int(task["seq_len"])
            embeddings = merged.embeddings.detach()[rows, :length].clone()
            attention_mask = merged.attention_mask[rows, :length].clone()
            if merged.token_ids is not None and task.get("has_token_ids", True):
                token_ids = merged.token_ids[rows, :length].clone()
        data = DistilledSet(
            embeddings=embeddings,
            attention_mask=attention_mask,
            labels=local[rows].clone(),
            soft_labels=merged.soft_labels.detach()[rows, start : start + num_classes].clone(),
            inner_lrs=torch.tensor(task["inner_lrs"], dtype=torch.float32, device=merged.inner_lrs.device),
            meta=copy.deepcopy(task["meta"]),
            token_ids=token_ids,
            texts=None if merged.texts is None else [merged.texts[i] for i in rows.tolist()],
            metrics=copy.deepcopy(task["metrics"]),
        )
        out.append((data, task))
    return out


def _flatten(sets: list[DistilledSet]) -> list[_Part]:
    parts = []
    for i, data in enumerate(sets):
        if not isinstance(data, DistilledSet):
            raise MergeError(f"set {i} is a {type(data).__name__}, not a DistilledSet")
        if not data.is_merged:
            if not isinstance(data.meta.get("task"), str) or not data.meta["task"]:
                raise MergeError(f'set {i} has no task name in meta["task"]; merged tasks are told apart by name')
            where = f"set {i} (task {data.meta['task']!r})"
            parts.append(_Part(data, where, int(data.embeddings.shape[1]), data.token_ids is not None))
            continue
        # Records of a nested merge keep what its own merge may have dropped.
        for original, task in _split(data):
            where = f"set {i} (task {original.meta['task']!r}, inside a merged set)"
            parts.append(_Part(original, where, int(task["seq_len"]), bool(task["has_token_ids"])))
    return parts


def _check_names(parts: list[_Part]) -> None:
    seen: dict[str, _Part] = {}
    for part in parts:
        if part.name in seen:
            raise MergeError(
                f"duplicate task name {part.name!r}: {seen[part.name].where} and {part.where}; "
                f'tasks are told apart by name, so give them distinct meta["task"] values'
            )
        seen[part.name] = part


def _check_embedding_form(parts: list[_Part]) -> None:
    for part in parts:
        if not part.data.has_embeddings:
            raise MergeError(
                f"{part.where} has no embeddings (it is text-only); merge it with form='text'"
            )
    first = parts[0]
    for key in _EMBEDDING_KEYS:
        expected = _embedding_value(first.data, key)
        for part in parts[1:]:
            value = _embedding_value(part.data, key)
            if value != expected:
                raise MergeError(
                    f"cannot merge input embeddings made with different {key}s: {first.where} has "
                    f"{key}={expected!r} but {part.where} has {key}={value!r}; embeddings only mean something "
                    f"to the model that made them. Use form='text' to merge the decoded texts across models"
                )
    width = int(first.data.embeddings.shape[2])
    for part in parts[1:]:
        if int(part.data.embeddings.shape[2]) != width:
            raise MergeError(
                f"{first.where} has embeddings of width {width} but {part.where} has "
                f"{int(part.data.embeddings.shape[2])}, though their meta agree on the hidden size"
            )


def _embedding_value(data: DistilledSet, key: str) -> Any:
    if key == "hidden_size":
        # The tensor is what gets concatenated, so its width decides when meta is silent.
        return data.meta.get(key, int(data.embeddings.shape[2]))
    return data.meta.get(key)


def _check_text_form(parts: list[_Part]) -> None:
    for part in parts:
        if part.data.texts is None:
            raise MergeError(
                f"{part.where} has no texts; form='text' merges decoded texts, so decode the set first "
                f"or merge with form='embedding'"
            )


def _shared(metas: list[dict], key: str) -> Any:
    """The value every meta has for `key`, else None."""
    values = [m.get(key) for m in metas]
    return values[0] if all(v == values[0] for v in values) else None


def _pad_length(t: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad dim 1 (the sequence) at the end; a zero mask keeps the padding out of attention."""
    pad = length - t.shape[1]
    if t.dim() == 3:
        return F.pad(t, (0, 0, 0, pad))
    return F.pad(t, (0, pad))

