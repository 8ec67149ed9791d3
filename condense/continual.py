"""The continual-learning harness: the strategies compared on a task sequence, each an Avalanche template with
plugins, trained from a fresh model and measured on every task after each training call.

Strategies are built from the ``STRATEGIES`` registry (config name -> builder of a :class:`StrategyPlan`): Avalanche's
``Naive`` experience by experience, alone or with a ``ReplayPlugin`` over one of the ``MEMORIES`` (storage policies);
``JointTraining`` on every task at once; or ``Naive`` on the merge of every task's distilled set only, with the
harness's optimiser (``merged_only``) or by the sets' own learned inner loop (``merged_learned``), or on that merge
re-distilled jointly against every task's data (``merged_joint``, :mod:`condense.joint_distill`). The optimiser
comes from ``OPTIMIZERS``. Examples, label layouts and the benchmark are in :mod:`condense.continual_data`, the
model in :mod:`condense.continual_model`, storage policies and plugins in :mod:`condense.replay` (the memories
condensed or distilled against the learner in :mod:`condense.condensed_memory` and :mod:`condense.learner_memory`,
the heads' re-fit on the memory in :mod:`condense.refit`), the less-forget constraint on the features in
:mod:`condense.anchor`; their public names are importable from here too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from avalanche.evaluation.metrics import accuracy_metrics, bwt_metrics, forgetting_metrics, forward_transfer_metrics
from avalanche.training import JointTraining, Naive
from avalanche.training.determinism.rng_manager import RNGManager
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from avalanche.training.storage_policy import ExemplarsBuffer
from torch import nn

from condense.continual_data import (  # first: quiets Avalanche's import
    SCENARIOS,
    ExampleRows,
    Examples,
    LabelLayout,
    SequenceData,
    avalanche_dataset,
    benchmark,
    collate,
)
from condense.continual_model import ContinualClassifier, Pooling, accuracy, loss_and_accuracy
from condense.models import Encoder
from condense.registry import lookup
from condense.schema import ContinualConfig
from condense.anchor import FeatureAnchor
from condense.condensed_memory import condensed_memory
from condense.learner_memory import learner_distilled_memory
from condense.refit import MemoryRefit
from condense.replay import (
    AccuracyCurve,
    AsymmetricLoss,
    DistilledBuffer,
    MemoryBuilder,
    MemoryFit,
    MemoryLoss,
    RealExamplesBuffer,
    distilled_memory,
    herding_memory,
    random_memory,
)

__all__ = [
    "MEMORIES", "OPTIMIZERS", "SCENARIOS", "STRATEGIES", "AccuracyCurve", "ContinualClassifier", "DistilledBuffer", "ExampleRows",
    "Examples", "LabelLayout", "MemoryFit", "MemoryLoss", "Pooling", "RealExamplesBuffer", "SequenceData", "StrategyPlan",
    "USES_DISTILLED_SETS", "accuracy", "avalanche_dataset", "benchmark", "collate",
    "loss_and_accuracy", "run_strategy",
]


def _adam(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=lr)


def _sgd(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9)


OPTIMIZERS: dict[str, Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]] = {"adam": _adam, "sgd": _sgd}


@dataclass
class StrategyPlan:
    """What a strategy chooses: its Avalanche template, passes over the data per training call, its replay memory,
    and what each training call trains on (the accuracy matrix gets a row after each)."""

    template: type
    epochs: int
    memory: ExemplarsBuffer | None
    train_on: list
    plugins: list = field(default_factory=list)
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None  # None: continual.optimizer


# Kinds of replay memory (the ``_sequential`` strategies' storage policies) -> builders.
MEMORIES: dict[str, MemoryBuilder] = {
    "random": random_memory,
    "herding": herding_memory,
    "distilled": distilled_memory("embedding"),
    "distilled_text": distilled_memory("text"),
    "condensed": condensed_memory,
    "learner_distilled": learner_distilled_memory("random"),
    "herding_distilled": learner_distilled_memory("herding"),
}

StrategyBuilder = Callable[[nn.Module, SequenceData, object, ContinualConfig, int], StrategyPlan]


def _sequential(memory: str | None = None) -> StrategyBuilder:
    """Fine-tuning experience by experience, replaying a memory of kind ``memory`` (a key of MEMORIES) if given."""

    def build(model, data: SequenceData, bench, settings: ContinualConfig, memory_size: int) -> StrategyPlan:
        replay = None if memory is None else lookup(MEMORIES, "replay memory", memory)(model, data, settings, memory_size)
        return StrategyPlan(Naive, settings.epochs, replay, list(bench.train_stream))

    return build


def _joint(model, data: SequenceData, bench, settings: ContinualConfig, memory_size: int) -> StrategyPlan:
    """Every task's training data at once: the reference without forgetting."""
    return StrategyPlan(JointTraining, settings.epochs, None, [bench.train_stream])


def _merged_only(model, data: SequenceData, bench, settings: ContinualConfig, memory_size: int) -> StrategyPlan:
    """A fresh model trained only on the merge of every task's distilled set; it is tiny, so many passes."""
    merged = benchmark([data.merged], data.test, data.layout)
    return StrategyPlan(Naive, settings.merged_only_epochs, None, [merged.train_stream[0]])


class LearnedSteps(SupervisedPlugin):
    """The loop a distilled set was distilled for, on the merged set: each training iteration is one full-batch step
    of plain SGD at that step's learned learning rate (the head's and the encoder's, averaged over the sets by
    ``merge_distilled``), on the sum over tasks of each task's mean cross-entropy, the loss each set was distilled
    with (``per_task_loss=False``: one mean over every row, for a set distilled jointly). Avalanche keeps one
    parameter group, so the learning rates scale the gradients of an SGD at lr 1."""

    def __init__(self, lrs: torch.Tensor, per_task_loss: bool = True):
        super().__init__()
        self.per_task_loss = per_task_loss
        # One column: sets distilled with the encoder frozen (distill=head), whose loop never stepped the encoder.
        self.lrs = lrs if lrs.ndim == 2 else torch.stack([lrs, torch.zeros_like(lrs)], dim=1)

    def before_training_exp(self, strategy, *args, **kwargs):
        strategy.model.eval()  # no dropout, as in the unrolled loop the sets were distilled through
        # Avalanche's loader for task-labelled data draws a share of each batch from every task and oversamples the
        # smaller ones, which would repeat rows; the learned loop sees every row once per step.
        dataset = strategy.adapted_dataset
        strategy.dataloader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset), collate_fn=collate)

    def before_backward(self, strategy, *args, **kwargs):
        if not self.per_task_loss:
            strategy.loss = F.cross_entropy(strategy.mb_output, strategy.mb_y)
            return
        tasks = strategy.mbatch[0]["task_ids"]
        strategy.loss = sum(F.cross_entropy(strategy.mb_output[tasks == task], strategy.mb_y[tasks == task])
                            for task in tasks.unique())

    def before_update(self, strategy, *args, **kwargs):
        head_lr, encoder_lr = self.lrs[strategy.clock.train_exp_iterations, [0, -1]].tolist()
        for name, parameter in strategy.model.named_parameters():
            if parameter.grad is not None:
                parameter.grad.mul_(head_lr if name.startswith("heads.") else encoder_lr)


def _merged_learned(model, data: SequenceData, bench, settings: ContinualConfig, memory_size: int) -> StrategyPlan:
    """A fresh model trained on the merged set by its learned protocol (:class:`LearnedSteps`)."""
    lrs = data.merged_lrs
    if lrs is None or lrs.numel() == 0:
        raise ValueError("merged_learned needs the merged set's learned learning rates; the merged sets' inner loops "
                         "differ in length, so merge_distilled kept none: use merged_only")
    return _learned_loop(data.merged, lrs, data, LearnedSteps(lrs))


def _merged_joint(model, data: SequenceData, bench, settings: ContinualConfig, memory_size: int) -> StrategyPlan:
    """A fresh model trained on the merged set re-distilled jointly (:mod:`condense.joint_distill`), by the loop it
    was distilled for: its learned learning rates on one mean cross-entropy over all its rows."""
    if data.merged_joint is None:
        raise ValueError("merged_joint needs the jointly re-distilled merged set, which this sequence's data lacks")
    lrs = data.merged_joint_lrs
    return _learned_loop(data.merged_joint, lrs, data, LearnedSteps(lrs, per_task_loss=False))


def _learned_loop(examples: Examples, lrs: torch.Tensor, data: SequenceData, steps: LearnedSteps) -> StrategyPlan:
    """One training call on ``examples`` alone, an epoch per learned step, by ``steps`` (plain SGD at lr 1 that the
    plugin scales to each step's learned rates)."""
    only = benchmark([examples], data.test, data.layout)
    return StrategyPlan(Naive, len(lrs), None, [only.train_stream[0]], plugins=[steps],
                        optimizer=lambda parameters: torch.optim.SGD(parameters, lr=1.0))


STRATEGIES: dict[str, StrategyBuilder] = {
    "naive": _sequential(),
    "random_replay": _sequential("random"),
    "herding_replay": _sequential("herding"),
    "distilled_replay": _sequential("distilled"),
    "distilled_text_replay": _sequential("distilled_text"),
    "condensed_replay": _sequential("condensed"),
    "learner_distilled_replay": _sequential("learner_distilled"),
    "herding_distilled_replay": _sequential("herding_distilled"),
    "joint": _joint,
    "merged_only": _merged_only,
    "merged_learned": _merged_learned,
    "merged_joint": _merged_joint,
}
# The strategies that read SequenceData.distilled or .merged: a run of none of them needs no distillation.
USES_DISTILLED_SETS = frozenset({"distilled_replay", "distilled_text_replay", "merged_only", "merged_learned", "merged_joint"})


def _evaluation_plugin() -> EvaluationPlugin:
    return EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        forgetting_metrics(experience=True, stream=True),
        bwt_metrics(experience=True, stream=True),
        forward_transfer_metrics(experience=True, stream=True),
        loggers=[],
    )


def run_strategy(
    name: str, encoder: Encoder, data: SequenceData, settings: ContinualConfig, seed: int, probes: Sequence = ()
) -> dict:
    """Train one strategy over the sequence from a fresh model on the encoder's device; the accuracy matrix,
    Avalanche's forgetting, BWT and forward transfer, and the forgetting curve. ``probes``: plugins registered after
    every other, that look at the run without changing it (benchmarks' measurements)."""
    build = lookup(STRATEGIES, "continual.strategies", name)
    optimizer = lookup(OPTIMIZERS, "continual.optimizer", settings.optimizer)
    started = time.perf_counter()
    # torch, numpy and Python's random: the heads' init, the data order, and the random buffer's picks (Avalanche's
    # RandomExemplarsSelectionStrategy shuffles with Python's random).
    RNGManager.set_random_seeds(seed)
    layout = data.layout
    model = ContinualClassifier(encoder, settings.trainable_layers, layout)
    bench = benchmark(data.train, data.test, layout)
    evaluator = _evaluation_plugin()
    memory_size = max(1, settings.memory_per_class * sum(data.layout.num_classes[:-1]))  # every past task's share
    plan = build(model, data, bench, settings, memory_size)
    # Counted on what the plan trains on: a merged set of a few rows trained for many epochs gets as many curve
    # points as a pass over a task's data, not one per handful of its iterations.
    iterations = max(math.ceil(_rows(item) / settings.batch_size) for item in plan.train_on) * plan.epochs
    curve = AccuracyCurve(data.curve, iterations // settings.curve_points_per_experience)
    plugins: list = [curve, *plan.plugins]
    if settings.feature_anchor.weight:
        plugins.append(FeatureAnchor(settings.feature_anchor))
    memory_fit = None
    if plan.memory is not None:
        memory_fit = MemoryFit(plan.memory)
        replay = ReplayPlugin(memory_size, batch_size_mem=settings.replay_batch_size, storage_policy=plan.memory)
        # In this order: the re-fit and MemoryFit read the memory ReplayPlugin has just filled, MemoryFit after the
        # re-fit, as the next experience starts with it.
        plugins += [replay, *([MemoryRefit(plan.memory, settings.refit)] if settings.refit.steps else []), memory_fit]
        if settings.asymmetric_loss:
            plugins.append(AsymmetricLoss(layout))  # before MemoryLoss: it replaces the loss MemoryLoss adds to
        if isinstance(plan.memory, SupervisedPlugin):  # a memory that works on the experience as it trains
            plugins.append(plan.memory)
        if settings.memory_loss.weight > 0:
            plugins.append(MemoryLoss(plan.memory, settings.memory_loss))
    plugins += probes
    strategy = plan.template(
        model=model,
        optimizer=plan.optimizer(model.parameters()) if plan.optimizer else optimizer(model.parameters(), settings.lr),
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=settings.batch_size,
        train_epochs=plan.epochs,
        eval_mb_size=128,
        device=encoder.device,
        plugins=plugins,
        evaluator=evaluator,
        # Avalanche's forward transfer insists on periodic evaluation being on; the streams are evaluated
        # explicitly below (train(..., eval_streams=[])), once before training and once after each training call.
        eval_every=0,
    )

    # Avalanche pins its loaders' batches when it trains on CUDA, which only tensors in host memory allow; examples
    # may already sit on the device (they are wherever their hidden states were computed), so batches are not pinned.
    loader = {"pin_memory": False}
    initial = _accuracies(strategy.eval(bench.test_stream, **loader), len(data.test))
    matrix: list[list[float]] = []
    for training_data in plan.train_on:
        strategy.train(training_data, eval_streams=[], **loader)
        matrix.append(_accuracies(strategy.eval(bench.test_stream, **loader), len(data.test)))
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


def _rows(training_data) -> int:
    """Rows one training call sees: an experience's, or a whole stream's (joint training concatenates it)."""
    return len(training_data.dataset) if hasattr(training_data, "dataset") else sum(len(e.dataset) for e in training_data)


def _accuracies(metrics: dict, n_tasks: int) -> list[float]:
    """Per-experience test accuracies from the metrics one ``strategy.eval`` returned, in experience order."""
    found = {}
    for key, value in metrics.items():
        if key.startswith("Top1_Acc_Exp/eval_phase/test_stream/"):
            found[int(key.rsplit("Exp", 1)[1])] = float(value)
    return [found[i] for i in range(n_tasks)]
