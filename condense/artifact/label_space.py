"""The label arithmetic of a merged set: which label ids (and soft-label columns) each of its tasks owns.

A merged set lists its tasks in ``meta["tasks"]``, each with its ``label_names`` and the ``label_offset`` of its
first class among all the tasks' classes. In ``label_space="class"`` a row's label is an id into those joint
classes; in ``"task"`` it is an id into its own task's classes. Everything here works on tensors and that meta,
so `condense.artifact.distilled_set` can check merged sets and `condense.artifact.merge` build them without either importing the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

LABEL_SPACES = ("task", "class")


def task_offsets(meta: Mapping, task_ids: torch.Tensor) -> torch.Tensor:
    """Per row, the index of its task's first class among the joint classes (on ``task_ids``' device)."""
    offsets = torch.tensor([int(task["label_offset"]) for task in meta["tasks"]], device=task_ids.device)
    return offsets[task_ids]


def label_blocks(meta: Mapping, task_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the [low, high) range of label ids (and soft-label columns) its task owns in the set's label space."""
    sizes = torch.tensor([len(task["label_names"]) for task in meta["tasks"]], device=task_ids.device)[task_ids]
    low = task_offsets(meta, task_ids) if meta["label_space"] == "class" else torch.zeros_like(sizes)
    return low, low + sizes


def joint_labels(labels: torch.Tensor, task_ids: torch.Tensor, meta: Mapping) -> torch.Tensor:
    """Labels as ids into the joint classes (``meta["label_names"]``), whatever the label space."""
    if meta["label_space"] == "class":
        return labels
    return labels + task_offsets(meta, task_ids.to(labels.device))


def local_labels(labels: torch.Tensor, task_ids: torch.Tensor, meta: Mapping) -> torch.Tensor:
    """Labels as ids into the classes of each row's own task."""
    if meta["label_space"] == "task":
        return labels
    return labels - task_offsets(meta, task_ids.to(labels.device))


def shared_settings(meta: Mapping, keys: Sequence[str]) -> dict:
    """The ``meta["inner"]`` settings among ``keys`` that every task of a merged set was distilled with."""
    tasks = meta["tasks"]
    settings = [{k: v for k, v in (task["meta"].get("inner") or {}).items() if k in keys} for task in tasks]
    for task, other in zip(tasks[1:], settings[1:]):
        if other != settings[0]:
            raise ValueError(
                f"merged set: its tasks were distilled for different inner protocols, {tasks[0]['name']!r} "
                f"for {settings[0]} and {task['name']!r} for {other}; use each task's own from split_merged"
            )
    return settings[0]


def check_merged(labels: torch.Tensor, soft_labels: torch.Tensor, task_ids: torch.Tensor, meta: Mapping,
                 atol: float) -> None:
    """The label checks of a merged set (``task_ids`` already a 1-D int64 tensor of N entries); raises ValueError."""
    n = len(task_ids)
    space = meta.get("label_space")
    if space not in LABEL_SPACES:
        raise ValueError(f'merged set: meta["label_space"] must be one of {list(LABEL_SPACES)}, got {space!r}')
    tasks = meta.get("tasks")
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError('merged set: meta["tasks"] must be a non-empty list with one entry per task')
    offset = 0
    for t, task in enumerate(tasks):
        where = f'meta["tasks"][{t}]'
        if not isinstance(task, Mapping):
            raise ValueError(f"merged set: {where} must be a dict, got {type(task).__name__}")
        where += f" ({task.get('name')!r})"
        names = task.get("label_names")
        if not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f'merged set: {where} needs a non-empty "label_names" list')
        # The offsets are derived data; a mismatch means the blocks were edited inconsistently.
        if task.get("label_offset") != offset:
            raise ValueError(
                f'merged set: {where} has label_offset {task.get("label_offset")!r}, expected {offset} '
                f"(the class count of the tasks before it)"
            )
        offset += len(names)
    listed = len(meta["label_names"])
    if offset != listed:
        raise ValueError(f'merged set: the tasks have {offset} classes in all but meta["label_names"] lists {listed}')
    if n and (int(task_ids.min()) < 0 or int(task_ids.max()) >= len(tasks)):
        bad = int(((task_ids < 0) | (task_ids >= len(tasks))).nonzero()[0, 0])
        raise ValueError(f"task_ids must be in [0, {len(tasks)}) (one per task); row {bad} has {int(task_ids[bad])}")
    width = offset if space == "class" else max(len(task["label_names"]) for task in tasks)
    if tuple(soft_labels.shape) != (n, width):
        expected = "len(label_names)" if space == "class" else "largest task class count"
        raise ValueError(
            f"soft_labels shape {tuple(soft_labels.shape)} does not match "
            f"(N, {expected}) = {(n, width)} for label_space {space!r}"
        )
    if not n:
        return
    low, high = label_blocks(meta, task_ids.to(labels.device))
    bad = (labels < low) | (labels >= high)
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        t = int(task_ids[row])
        raise ValueError(
            f"row {row}: label {int(labels[row])} is not a class of its task {t} "
            f"({tasks[t].get('name')!r}), expected [{int(low[row])}, {int(high[row])}) in label_space {space!r}"
        )
    # Mass on another task's classes would leak into that task's head during training.
    soft = soft_labels.detach()
    columns = torch.arange(soft.shape[1], device=soft.device)
    low, high = low.to(soft.device).unsqueeze(1), high.to(soft.device).unsqueeze(1)
    outside = (soft.double().clamp(min=0) * ~((columns >= low) & (columns < high))).sum(dim=1)
    bad = outside > atol
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        t = int(task_ids[row])
        raise ValueError(
            f"row {row}: soft label puts mass {float(outside[row]):.6f} outside the classes of its task {t} "
            f"({tasks[t].get('name')!r}); at most {atol} is allowed"
        )
