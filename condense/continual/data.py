"""A task sequence as Avalanche sees it: examples as hidden states, their label layout, datasets and a benchmark.

Every example (real or distilled) enters as the hidden states below the continual model's trained blocks, computed
once. Mini-batches are dicts (``hidden_states``, ``attention_mask``, ``task_ids``) wrapped in a ``BatchEncoding``
so that Avalanche's ``.to(device)`` works on them unchanged, and targets are probability rows, so real one-hot
labels and the distilled sets' soft labels share one loss (``nn.CrossEntropyLoss`` takes both).

Scenarios:

* ``task``: task-incremental, one head per task, the task id given at test time;
* ``class``: class-incremental, one head over the classes of every task, no task id.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Avalanche imports qpsolvers for GEM, which warns on import that it has no solver; nothing here uses it. Every
# condense module that imports Avalanche imports this one first.
warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
# Metrics are read from the evaluator, not logged.
warnings.filterwarnings("ignore", message="No loggers specified", category=UserWarning)
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils import DataAttribute
from avalanche.benchmarks.utils.classification_dataset import ClassificationDataset
from transformers import BatchEncoding

from condense.registry import unknown_choice

SCENARIOS = ("task", "class")


@dataclass
class Examples:
    """Examples of one task as the continual model sees them: hidden states below its trained blocks."""

    hidden_states: torch.Tensor  # (N, L, d)
    attention_mask: torch.Tensor  # (N, L)
    targets: torch.Tensor  # (N, W) probability rows in the scenario's label layout
    task_ids: torch.Tensor  # (N,) index of each example's task in the sequence

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, index: torch.Tensor) -> Examples:
        return Examples(self.hidden_states[index], self.attention_mask[index], self.targets[index], self.task_ids[index])


@dataclass
class LabelLayout:
    """Where each task's classes sit in the model's output: its own head (task) or a block of one head (class)."""

    scenario: str
    num_classes: list[int]  # per task

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise unknown_choice("continual.scenarios", self.scenario, SCENARIOS)

    @property
    def per_task_heads(self) -> bool:
        return self.scenario == "task"

    @property
    def width(self) -> int:
        return max(self.num_classes) if self.per_task_heads else sum(self.num_classes)

    def offset(self, task: int) -> int:
        return 0 if self.per_task_heads else sum(self.num_classes[:task])

    def targets(self, task: int, probabilities: torch.Tensor) -> torch.Tensor:
        """A task's label distributions (N, C_task) placed in this layout (N, width)."""
        rows = probabilities.new_zeros(len(probabilities), self.width, dtype=torch.float32)
        rows[:, self.offset(task) : self.offset(task) + self.num_classes[task]] = probabilities.float()
        return rows

    def task_of(self, labels: torch.Tensor) -> torch.Tensor:
        """Which task each label of one joint label space belongs to: task t owns the num_classes[t] ids after those
        before it."""
        ends = torch.tensor(self.num_classes, device=labels.device).cumsum(0)
        return torch.bucketize(labels, ends, right=True)

    def task_label(self, task: int) -> int:
        """The Avalanche task label: the task index when heads are per task, else 0 for every example."""
        return task if self.per_task_heads else 0


@dataclass
class SequenceData:
    """Everything a strategy run needs, built once per scenario and shared by strategies and seeds."""

    layout: LabelLayout
    task_names: list[str]
    train: list[Examples]
    test: list[Examples]
    curve: list[Examples]
    distilled_text: list[Examples] | None = None  # each task's distilled set as its decoded text, re-tokenised
    super_dataset: Examples | None = None  # every task's set merged and re-distilled jointly (condense.jobs.super_dataset)
    super_dataset_lrs: torch.Tensor | None = None  # its learned inner learning rates, (T,) or (T, 2): head and encoder
    merged_sets: Examples | None = None  # every task's embedding-form set merged, in the scenario's label space
    merged_sets_lrs: torch.Tensor | None = None  # the inner learning rates merge_distilled averaged over the sets


class ExampleRows(torch.utils.data.Dataset):
    """``(inputs, target row)`` pairs of :class:`Examples`, one example each."""

    def __init__(self, examples: Examples):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int):
        e = self.examples
        inputs = {"hidden_states": e.hidden_states[i], "attention_mask": e.attention_mask[i], "task_ids": int(e.task_ids[i])}
        return inputs, e.targets[i]


def collate(rows: Sequence) -> list:
    """Pad a list of ``(inputs, target, task label)`` rows into one dict mini-batch, cut to its longest row.

    The batch stays on the rows' device; Avalanche moves it to the strategy's with ``.to(device)``.
    """
    states, mask_row = rows[0][0]["hidden_states"], rows[0][0]["attention_mask"]
    width = max(int(inputs["attention_mask"].sum()) for inputs, *_ in rows)
    hidden = states.new_zeros(len(rows), width, states.shape[-1])
    mask = mask_row.new_zeros(len(rows), width, dtype=torch.long)
    for i, (inputs, *_) in enumerate(rows):
        length = min(width, len(inputs["attention_mask"]))
        hidden[i, :length] = inputs["hidden_states"][:length]
        mask[i, :length] = inputs["attention_mask"][:length]
    batch = BatchEncoding({
        "hidden_states": hidden,
        "attention_mask": mask,
        "task_ids": torch.tensor([inputs["task_ids"] for inputs, *_ in rows], device=mask.device),
    })
    targets = torch.stack([row[1] for row in rows])
    task_labels = torch.tensor([int(row[2]) for row in rows], device=targets.device)
    return [batch, targets, task_labels]


def avalanche_dataset(examples: Examples, layout: LabelLayout) -> ClassificationDataset:
    """An Avalanche classification dataset yielding ``(inputs, target row, task label)``."""
    hard = examples.targets.argmax(1).tolist()
    task_labels = [layout.task_label(task) for task in examples.task_ids.tolist()]
    return ClassificationDataset(
        [ExampleRows(examples)],
        data_attributes=[
            DataAttribute(hard, "targets"),
            DataAttribute(task_labels, "targets_task_labels", use_in_getitem=True),
        ],
        collate_fn=collate,
    )


def benchmark(train: list[Examples], test: list[Examples], layout: LabelLayout):
    """An Avalanche benchmark with one experience per task in ``train`` and ``test`` streams."""
    return with_task_labels(benchmark_from_datasets(
        train=[avalanche_dataset(e, layout) for e in train],
        test=[avalanche_dataset(e, layout) for e in test],
    ))
