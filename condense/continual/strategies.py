"""The strategies compared on a task sequence, each an Avalanche template with plugins, trained from a fresh model
and measured on every task after each training call.

``STRATEGIES`` maps a strategy's config name to the builder of its :class:`StrategyPlan`:

* ``naive``: Avalanche's ``Naive``, experience by experience, no memory;
* ``random_replay``, ``herding_replay``, ``distilled_text_replay``, ``mean_matched_replay``: ``Naive`` with a
  ``ReplayPlugin`` over the memory of that kind (:mod:`.memories`), with the DER term and the heads' re-fit that
  ``continual.memory_loss`` and ``continual.refit`` turn on for every memory;
* ``joint``: ``JointTraining`` on every task at once, the reference without forgetting;
* ``super_dataset``: a fresh model trained only on the super-dataset, every task's distilled set merged and
  re-distilled jointly (:mod:`condense.jobs.super_dataset`), by the loop it was distilled for;
* ``merged_sets``: the same on the sets as ``merge_distilled`` merges them, by the loop each set was distilled for
  (each task's own mean loss).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from condense.continual.data import Examples, SequenceData, benchmark  # first: quiets Avalanche's import
from avalanche.evaluation.metrics import (  # noqa: E402
    accuracy_metrics,
    bwt_metrics,
    forgetting_metrics,
    forward_transfer_metrics,
)
from avalanche.training import JointTraining, Naive  # noqa: E402
from avalanche.training.determinism.rng_manager import RNGManager  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin  # noqa: E402
from avalanche.training.storage_policy import ExemplarsBuffer  # noqa: E402
from torch import nn  # noqa: E402

from condense.config.schema import ContinualConfig  # noqa: E402
from condense.continual.memories import MEMORIES  # noqa: E402
from condense.continual.model import ContinualClassifier  # noqa: E402
from condense.continual.plugins import (  # noqa: E402
    AccuracyCurve,
    AsymmetricLoss,
    LearnedSteps,
    MemoryFit,
    MemoryLoss,
    MemoryRefit,
)
from condense.models.encoders import Encoder  # noqa: E402
from condense.registry import lookup  # noqa: E402


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
    full_batch: bool = False  # an epoch is one step on every row at once, not continual.batch_size rows a step


StrategyBuilder = Callable[[nn.Module, SequenceData, object, ContinualConfig, int], StrategyPlan]


def _sequential(memory: str | None = None) -> StrategyBuilder:
    """Fine-tuning experience by experience, replaying a memory of kind ``memory`` (a key of MEMORIES) if given."""

    def build(model, data: SequenceData, bench, settings: ContinualConfig, memory_size: int) -> StrategyPlan:
        replay = None if memory is None else MEMORIES[memory](model, data, settings, memory_size)
        return StrategyPlan(Naive, settings.epochs, replay, list(bench.train_stream))

    return build


def _joint(model, data: SequenceData, bench, settings: ContinualConfig, memory_size: int) -> StrategyPlan:
    """Every task's training data at once: the reference without forgetting."""
    return StrategyPlan(JointTraining, settings.epochs, None, [bench.train_stream])


def _learned_loop(name: str, examples: Examples | None, lrs: torch.Tensor | None, data: SequenceData,
                  per_task_loss: bool) -> StrategyPlan:
    """One training call on ``examples`` alone, an epoch per learned step: plain SGD at lr 1, which
    :class:`LearnedSteps` scales to each step's learned rates."""
    if examples is None or lrs is None or not lrs.numel():
        raise ValueError(f"{name} needs the merged distilled sets and their learned learning rates, which this "
                         "sequence's data lacks")
    only = benchmark([examples], data.test, data.layout)
    return StrategyPlan(Naive, len(lrs), None, [only.train_stream[0]], plugins=[LearnedSteps(lrs, per_task_loss)],
                        optimizer=lambda parameters: torch.optim.SGD(parameters, lr=1.0), full_batch=True)


def _super_dataset(model, data: SequenceData, bench, settings: ContinualConfig, memory_size: int) -> StrategyPlan:
    """The super-dataset, distilled as one set: one mean loss over its rows."""
    return _learned_loop("super_dataset", data.super_dataset, data.super_dataset_lrs, data, per_task_loss=False)


def _merged_sets(model, data: SequenceData, bench, settings: ContinualConfig, memory_size: int) -> StrategyPlan:
    """The per-task sets merged: each was distilled on its own task's mean loss, so the loss sums them."""
    return _learned_loop("merged_sets", data.merged_sets, data.merged_sets_lrs, data, per_task_loss=True)


STRATEGIES: dict[str, StrategyBuilder] = {
    "naive": _sequential(),
    "random_replay": _sequential("random"),
    "herding_replay": _sequential("herding"),
    "distilled_text_replay": _sequential("distilled_text"),
    "mean_matched_replay": _sequential("mean_matched"),
    "joint": _joint,
    "super_dataset": _super_dataset,
    "merged_sets": _merged_sets,
}


def _evaluation_plugin() -> EvaluationPlugin:
    return EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        forgetting_metrics(experience=True, stream=True),
        bwt_metrics(experience=True, stream=True),
        forward_transfer_metrics(experience=True, stream=True),
        loggers=[],
    )


def _replay_plugins(memory: ExemplarsBuffer, memory_size: int, settings: ContinualConfig, layout) -> list:
    """The ReplayPlugin over ``memory`` and what every memory gets with it, in the order they must run: the re-fit
    and MemoryFit read the memory ReplayPlugin has just filled (MemoryFit after the re-fit, as the next experience
    starts with it), the asymmetric loss replaces the loss the template computed, and MemoryLoss adds to it."""
    plugins = [ReplayPlugin(memory_size, batch_size_mem=settings.replay_batch_size, storage_policy=memory)]
    if settings.refit.steps:
        plugins.append(MemoryRefit(memory, settings.refit))
    plugins.append(MemoryFit(memory))
    if settings.asymmetric_loss:
        plugins.append(AsymmetricLoss(layout))
    if settings.memory_loss.weight > 0:
        plugins.append(MemoryLoss(memory, settings.memory_loss))
    return plugins


def run_strategy(name: str, encoder: Encoder, data: SequenceData, settings: ContinualConfig, seed: int,
                 probes: Iterable = ()) -> dict:
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
    memory_size = max(1, settings.memory_per_class * sum(layout.num_classes[:-1]))  # every past task's share
    plan = build(model, data, bench, settings, memory_size)
    # Counted on what the plan trains on: a super-dataset of a few rows trained for many epochs gets as many curve
    # points as a pass over a task's data, not one per handful of its iterations.
    per_epoch = 1 if plan.full_batch else max(math.ceil(_rows(item) / settings.batch_size) for item in plan.train_on)
    iterations = per_epoch * plan.epochs
    curve = AccuracyCurve(data.curve, iterations // settings.curve_points_per_experience)
    plugins: list = [curve, *plan.plugins]
    if plan.memory is not None:
        plugins += _replay_plugins(plan.memory, memory_size, settings, layout)
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
    memory_fit = next((p for p in plugins if isinstance(p, MemoryFit)), None)
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
