"""The continual-learning harness: a task sequence as an Avalanche benchmark, and the strategies compared on it.

The model is the pretrained encoder's top ``trainable_layers`` blocks plus linear heads; the blocks below stay
frozen, so every example (real or distilled) enters as the hidden states below the trained blocks, computed
once. Mini-batches are dicts (``hidden_states``, ``attention_mask``, ``task_ids``) wrapped in a
``BatchEncoding`` so that Avalanche's ``.to(device)`` works on them unchanged, and targets are probability rows,
so real one-hot labels and the distilled sets' soft labels share one loss (``nn.CrossEntropyLoss`` takes both).

Scenarios:

* ``task``: task-incremental, one head per task, the task id given at test time;
* ``class``: class-incremental, one head over the classes of every task, no task id.

Strategies are Avalanche's ``Naive`` and ``JointTraining`` with plugins; replay is Avalanche's ``ReplayPlugin``
with a storage policy per kind of memory (:class:`RealExamplesBuffer`, :class:`DistilledBuffer`).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Avalanche imports qpsolvers for GEM, which warns on import that it has no solver; nothing here uses it.
warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
# Metrics are read from the evaluator, not logged.
warnings.filterwarnings("ignore", message="No loggers specified", category=UserWarning)
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils import AvalancheDataset, DataAttribute
from avalanche.benchmarks.utils.classification_dataset import ClassificationDataset
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics, bwt_metrics, forgetting_metrics, forward_transfer_metrics
from avalanche.training import JointTraining, Naive
from avalanche.training.determinism.rng_manager import RNGManager
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from avalanche.training.storage_policy import (
    ExemplarsBuffer,
    HerdingSelectionStrategy,
    ParametricBuffer,
    RandomExemplarsSelectionStrategy,
)
from torch import nn
from transformers import BatchEncoding

from condense.models import Encoder, pool, top_blocks

log = logging.getLogger(__name__)

SCENARIOS = ("task", "class")
STRATEGIES = (
    "naive",
    "random_replay",
    "herding_replay",
    "distilled_replay",
    "distilled_text_replay",
    "joint",
    "merged_only",
)
# Logit of a class outside the example's task (task scenario): the softmax gives it no mass, and, unlike -inf,
# a zero target times its log-probability is 0 rather than nan.
_OUTSIDE_TASK = -1e4


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
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")

    @property
    def width(self) -> int:
        return max(self.num_classes) if self.scenario == "task" else sum(self.num_classes)

    def offset(self, task: int) -> int:
        return 0 if self.scenario == "task" else sum(self.num_classes[:task])

    def targets(self, task: int, probabilities: torch.Tensor) -> torch.Tensor:
        """A task's label distributions (N, C_task) placed in this layout (N, width)."""
        rows = torch.zeros(len(probabilities), self.width, dtype=torch.float32)
        rows[:, self.offset(task) : self.offset(task) + self.num_classes[task]] = probabilities.float()
        return rows

    def task_label(self, task: int) -> int:
        """The Avalanche task label: the task index when heads are per task, else 0 for every example."""
        return task if self.scenario == "task" else 0


class _ExampleRows(torch.utils.data.Dataset):
    def __init__(self, examples: Examples):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int):
        e = self.examples
        inputs = {"hidden_states": e.hidden_states[i], "attention_mask": e.attention_mask[i], "task_ids": int(e.task_ids[i])}
        return inputs, e.targets[i]


def collate(rows: Sequence) -> list:
    """Pad a list of ``(inputs, target, task label)`` rows into one dict mini-batch, cut to its longest row."""
    width = max(int(inputs["attention_mask"].sum()) for inputs, *_ in rows)
    hidden = torch.zeros(len(rows), width, rows[0][0]["hidden_states"].shape[-1])
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (inputs, *_) in enumerate(rows):
        length = min(width, len(inputs["attention_mask"]))
        hidden[i, :length] = inputs["hidden_states"][:length]
        mask[i, :length] = inputs["attention_mask"][:length]
    batch = BatchEncoding({
        "hidden_states": hidden,
        "attention_mask": mask,
        "task_ids": torch.tensor([inputs["task_ids"] for inputs, *_ in rows]),
    })
    targets = torch.stack([row[1] for row in rows])
    task_labels = torch.tensor([int(row[2]) for row in rows])
    return [batch, targets, task_labels]


def avalanche_dataset(examples: Examples, layout: LabelLayout) -> ClassificationDataset:
    """An Avalanche classification dataset yielding ``(inputs, target row, task label)``."""
    hard = examples.targets.argmax(1).tolist()
    task_labels = [layout.task_label(task) for task in examples.task_ids.tolist()]
    return ClassificationDataset(
        [_ExampleRows(examples)],
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


class Pooling(nn.Module):
    """Token states to one vector per example; a module of its own so feature-based buffers can hook it."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool(hidden_states, attention_mask, self.mode)


class ContinualClassifier(nn.Module):
    """The encoder's top blocks, pooling and the layout's heads, called on a dict mini-batch."""

    def __init__(self, encoder: Encoder, trainable_layers: int, layout: LabelLayout):
        super().__init__()
        self.blocks = top_blocks(encoder, trainable_layers)
        self.pool = Pooling(encoder.pooling)
        sizes = layout.num_classes if layout.scenario == "task" else [layout.width]
        self.heads = nn.ModuleList(nn.Linear(encoder.hidden_size, size) for size in sizes)
        self.width = layout.width
        self.per_task = layout.scenario == "task"

    def forward(self, batch) -> torch.Tensor:
        mask = batch["attention_mask"]
        hidden = self.blocks(inputs_embeds=batch["hidden_states"], attention_mask=mask).last_hidden_state
        features = self.pool(hidden, mask)
        if not self.per_task:
            return self.heads[0](features)
        logits = features.new_full((len(features), self.width), _OUTSIDE_TASK)
        for task, head in enumerate(self.heads):
            rows = batch["task_ids"] == task
            if rows.any():
                logits[rows, : head.out_features] = head(features[rows])
        return logits


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, rows: Sequence, batch_size: int = 128) -> tuple[float, float]:
    """Mean cross-entropy against the target rows, and accuracy, of ``model`` on ``(inputs, target, task)`` rows."""
    training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch, targets, _ = collate(rows[start : start + batch_size])
        logits = model(batch)
        loss += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(1) == targets.argmax(1)).sum())
    model.train(training)
    return loss / len(rows), correct / len(rows)


def accuracy(model: nn.Module, examples: Examples) -> float:
    dataset = _ExampleRows(examples)
    return loss_and_accuracy(model, [(*dataset[i], 0) for i in range(len(dataset))])[1]


class AccuracyCurve(SupervisedPlugin):
    """Accuracy on a small held-out sample of every task, at the start and end of each experience and every
    ``every`` training iterations in between: the forgetting curves."""

    def __init__(self, curve: list[Examples], every: int):
        super().__init__()
        self.curve = curve
        self.every = max(1, every)
        self.points: list[dict] = []
        self.experience_starts: list[int] = []

    def _record(self, strategy) -> None:
        iteration = strategy.clock.train_iterations
        if self.points and self.points[-1]["iteration"] == iteration:
            return
        self.points.append({
            "iteration": iteration,
            "experience": strategy.clock.train_exp_counter,
            "accuracy": [accuracy(strategy.model, examples) for examples in self.curve],
        })

    def before_training_exp(self, strategy, *args, **kwargs):
        self.experience_starts.append(strategy.clock.train_iterations)
        self._record(strategy)

    def after_training_iteration(self, strategy, *args, **kwargs):
        if strategy.clock.train_iterations % self.every == 0:
            self._record(strategy)

    def after_training_exp(self, strategy, *args, **kwargs):
        self._record(strategy)


class MemoryFit(SupervisedPlugin):
    """How well the model already fits the replay memory when a new task starts: an example the model fits with
    near-zero loss gives replay almost no gradient, however informative it was to learn from."""

    def __init__(self, memory: ExemplarsBuffer):
        super().__init__()
        self.memory = memory
        self.fits: list[dict] = []

    def after_training_exp(self, strategy, *args, **kwargs):
        # Registered after the ReplayPlugin, so the memory already holds the experience just finished.
        rows = [self.memory.buffer[i] for i in range(len(self.memory.buffer))]
        loss, fit = loss_and_accuracy(strategy.model, rows)
        self.fits.append({"examples": len(rows), "loss": loss, "accuracy": fit})


class _PerExperienceBuffer(ExemplarsBuffer):
    """A memory that adds a fixed number of examples per finished experience and never shrinks."""

    def update(self, strategy, **kwargs):
        # ReplayPlugin still calls update(); Avalanche's own update() only forwards here, with a deprecation warning.
        self.post_adapt(strategy, strategy.experience)

    def resize(self, strategy, new_size):
        self.max_size = new_size


class RealExamplesBuffer(_PerExperienceBuffer):
    """``per_task`` real examples of every past experience, spread evenly over its classes and picked by an
    Avalanche selection strategy (random, or herding on the model's pooled features)."""

    def __init__(self, per_task: int, max_size: int, selection_strategy):
        super().__init__(max_size)
        self.per_task = per_task
        self.selection_strategy = selection_strategy
        self.memories: list[ParametricBuffer] = []

    def post_adapt(self, agent, exp):
        memory = ParametricBuffer(self.per_task, groupby="class", selection_strategy=self.selection_strategy)
        memory.post_adapt(agent, exp)
        self.memories.append(memory)
        self.buffer = concat_datasets([m.buffer for m in self.memories])


class DistilledBuffer(_PerExperienceBuffer):
    """After each experience, keeps that task's distilled set: the memory is the distilled sets of past tasks."""

    def __init__(self, distilled: list[AvalancheDataset], max_size: int):
        super().__init__(max_size)
        self.distilled = distilled
        self.kept: list[AvalancheDataset] = []

    def post_adapt(self, agent, exp):
        self.kept.append(self.distilled[exp.current_experience])
        self.buffer = concat_datasets(self.kept)


@dataclass
class StrategySettings:
    """How every strategy trains; mirrors ``configs/continual/*.yaml``."""

    memory_per_task: int = 4
    trainable_layers: int = 1
    batch_size: int = 32
    replay_batch_size: int = 8
    epochs: int = 1
    optimizer: str = "adam"
    lr: float = 3e-4
    merged_only_epochs: int = 60
    curve_points_per_experience: int = 8


@dataclass
class SequenceData:
    """Everything a strategy run needs, built once per scenario and shared by strategies and seeds."""

    layout: LabelLayout
    task_names: list[str]
    train: list[Examples]
    test: list[Examples]
    curve: list[Examples]
    distilled: dict[str, list[Examples]]  # "embedding" / "text": each task's distilled set
    merged: Examples  # merge_distilled of every task's embedding-form set


def _evaluation_plugin() -> EvaluationPlugin:
    return EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        forgetting_metrics(experience=True, stream=True),
        bwt_metrics(experience=True, stream=True),
        forward_transfer_metrics(experience=True, stream=True),
        loggers=[],
    )


def _optimizer(model: nn.Module, settings: StrategySettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=settings.lr)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9)
    raise ValueError(f"continual.optimizer must be adam or sgd, got {settings.optimizer!r}")


def _memory(name: str, model: nn.Module, data: SequenceData, settings: StrategySettings, size: int) -> ExemplarsBuffer | None:
    """The replay strategies' storage policy; None for strategies without a memory."""
    if name == "random_replay":
        return RealExamplesBuffer(settings.memory_per_task, size, RandomExemplarsSelectionStrategy())
    if name == "herding_replay":
        return RealExamplesBuffer(settings.memory_per_task, size, HerdingSelectionStrategy(model, "pool"))
    if name in ("distilled_replay", "distilled_text_replay"):
        form = "embedding" if name == "distilled_replay" else "text"
        return DistilledBuffer([avalanche_dataset(e, data.layout) for e in data.distilled[form]], size)
    return None


def run_strategy(
    name: str, encoder: Encoder, data: SequenceData, settings: StrategySettings, seed: int
) -> dict:
    """Train one strategy over the sequence from a fresh model; the accuracy matrix, Avalanche's forgetting,
    BWT and forward transfer, and the forgetting curve."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {list(STRATEGIES)}")
    started = time.perf_counter()
    # torch, numpy and Python's random: the heads' init, the data order, and the random buffer's picks (Avalanche's
    # RandomExemplarsSelectionStrategy shuffles with Python's random).
    RNGManager.set_random_seeds(seed)
    layout = data.layout
    model = ContinualClassifier(encoder, settings.trainable_layers, layout)
    bench = benchmark(data.train, data.test, layout)
    iterations = math.ceil(max(len(e) for e in data.train) / settings.batch_size) * settings.epochs
    curve = AccuracyCurve(data.curve, iterations // settings.curve_points_per_experience)
    evaluator = _evaluation_plugin()
    common = dict(
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=settings.batch_size,
        eval_mb_size=128,
        device="cpu",
        evaluator=evaluator,
        # Avalanche's forward transfer insists on periodic evaluation being on; the streams are evaluated
        # explicitly below (train(..., eval_streams=[])), once before training and once after each experience.
        eval_every=0,
    )
    memory_size = settings.memory_per_task * max(1, len(data.train) - 1)
    plugins: list = [curve]
    memory = _memory(name, model, data, settings, memory_size)
    memory_fit = None
    if memory is not None:
        memory_fit = MemoryFit(memory)
        plugins += [ReplayPlugin(memory_size, batch_size_mem=settings.replay_batch_size, storage_policy=memory), memory_fit]

    epochs = settings.merged_only_epochs if name == "merged_only" else settings.epochs
    template = JointTraining if name == "joint" else Naive
    strategy = template(model=model, optimizer=_optimizer(model, settings), train_epochs=epochs, plugins=plugins, **common)

    matrix: list[list[float]] = []
    initial = _accuracies(strategy.eval(bench.test_stream), len(data.test))
    if name == "joint":
        strategy.train(bench.train_stream, eval_streams=[])
        matrix.append(_accuracies(strategy.eval(bench.test_stream), len(data.test)))
    elif name == "merged_only":
        merged = benchmark([data.merged], data.test, layout)
        strategy.train(merged.train_stream[0], eval_streams=[])
        matrix.append(_accuracies(strategy.eval(bench.test_stream), len(data.test)))
    else:
        for experience in bench.train_stream:
            strategy.train(experience, eval_streams=[])
            matrix.append(_accuracies(strategy.eval(bench.test_stream), len(data.test)))
    last = evaluator.get_last_metrics()
    return {
        "strategy": name,
        "scenario": layout.scenario,
        "seed": seed,
        "initial_accuracy": initial,
        "accuracy_matrix": matrix,
        "avalanche": {
            "forgetting": last.get("StreamForgetting/eval_phase/test_stream"),
            "bwt": last.get("StreamBWT/eval_phase/test_stream"),
            "forward_transfer": last.get("StreamForwardTransfer/eval_phase/test_stream"),
        },
        "curve": curve.points,
        "experience_starts": curve.experience_starts,
        "memory_fit": None if memory_fit is None else memory_fit.fits,
        "seconds": time.perf_counter() - started,
    }


def _accuracies(metrics: dict, n_tasks: int) -> list[float]:
    """Per-experience test accuracies from the metrics one ``strategy.eval`` returned, in experience order."""
    found = {}
    for key, value in metrics.items():
        if key.startswith("Top1_Acc_Exp/eval_phase/test_stream/"):
            found[int(key.rsplit("Exp", 1)[1])] = float(value)
    return [found[i] for i in range(n_tasks)]
