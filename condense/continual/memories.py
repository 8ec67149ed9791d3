"""Replay memories: one Avalanche storage policy per kind of memory, which Avalanche's ``ReplayPlugin`` fills after
each experience and samples from during the next.

Every memory keeps ``memory_per_class`` examples of each class of each past task and never shrinks. ``MEMORIES`` maps
a kind of memory to the builder of its storage policy:

* ``random``, ``herding``: real rows, picked at random or by herding on the learner's pooled features;
* ``distilled_text``: each past task's distilled set, as its decoded text;
* ``mean_matched``: herding's rows moved until each class's mean feature is the real rows' (:mod:`.mean_matching`).
"""

from __future__ import annotations

from collections.abc import Callable

from condense.continual.data import SequenceData, avalanche_dataset  # first: quiets Avalanche's import
from avalanche.benchmarks.utils import AvalancheDataset  # noqa: E402
from avalanche.benchmarks.utils.utils import concat_datasets  # noqa: E402
from avalanche.training.storage_policy import (  # noqa: E402
    ExemplarsBuffer,
    HerdingSelectionStrategy,
    ParametricBuffer,
    RandomExemplarsSelectionStrategy,
)
from torch import nn  # noqa: E402

from condense.continual.mean_matching import mean_matched_memory  # noqa: E402
from condense.config.schema import ContinualConfig, MeanMatchingConfig  # noqa: E402


class PerExperienceBuffer(ExemplarsBuffer):
    """A memory that adds a fixed number of examples per finished experience and never shrinks."""

    def update(self, strategy, **kwargs):
        # ReplayPlugin still calls update(); Avalanche's own update() only forwards here, with a deprecation warning.
        self.post_adapt(strategy, strategy.experience)

    def resize(self, strategy, new_size):
        self.max_size = new_size


class RealExamplesBuffer(PerExperienceBuffer):
    """``per_class`` real examples of every class of every past experience, picked by an Avalanche selection
    strategy (random, or herding on the model's pooled features)."""

    def __init__(self, per_class: int, num_classes: list[int], max_size: int, selection_strategy):
        super().__init__(max_size)
        self.per_class = per_class
        self.num_classes = num_classes  # per experience
        self.selection_strategy = selection_strategy
        self.memories: list[ParametricBuffer] = []

    def post_adapt(self, agent, exp):
        size = self.per_class * self.num_classes[exp.current_experience]  # ParametricBuffer splits it over the classes
        memory = ParametricBuffer(size, groupby="class", selection_strategy=self.selection_strategy)
        memory.post_adapt(agent, exp)
        self.memories.append(memory)
        self.buffer = concat_datasets([m.buffer for m in self.memories])


class DistilledBuffer(PerExperienceBuffer):
    """After each experience, keeps that task's distilled set: the memory is the distilled sets of past tasks."""

    def __init__(self, distilled: list[AvalancheDataset], max_size: int):
        super().__init__(max_size)
        self.distilled = distilled
        self.kept: list[AvalancheDataset] = []

    def post_adapt(self, agent, exp):
        self.kept.append(self.distilled[exp.current_experience])
        self.buffer = concat_datasets(self.kept)


class MeanMatchedBuffer(PerExperienceBuffer):
    """After each experience, keeps that task's mean-matched memory, made for the learner as the experience left it
    (:func:`.mean_matching.mean_matched_memory`); the kept memories of past tasks never change."""

    def __init__(self, data: SequenceData, per_class: int, max_size: int, settings: MeanMatchingConfig):
        super().__init__(max_size)
        self.data, self.per_class, self.settings = data, per_class, settings
        self.kept: list[AvalancheDataset] = []
        self.matching_losses: list[list[float]] = []  # per experience, the loss at every matching step

    def post_adapt(self, agent, exp):
        task = exp.current_experience
        layout = self.data.layout
        columns = slice(layout.offset(task), layout.offset(task) + layout.num_classes[task])
        memory, losses = mean_matched_memory(agent.model, self.data.train[task], columns, self.per_class, self.settings)
        self.matching_losses.append(losses)
        self.kept.append(avalanche_dataset(memory, layout))
        self.buffer = concat_datasets(self.kept)


# (model, data, continual settings, total memory size) -> storage policy
MemoryBuilder = Callable[[nn.Module, SequenceData, ContinualConfig, int], ExemplarsBuffer]


def random_memory(model: nn.Module, data: SequenceData, settings: ContinualConfig, size: int) -> ExemplarsBuffer:
    return RealExamplesBuffer(settings.memory_per_class, data.layout.num_classes, size, RandomExemplarsSelectionStrategy())


def herding_memory(model: nn.Module, data: SequenceData, settings: ContinualConfig, size: int) -> ExemplarsBuffer:
    # Herding on the model's own pooled features, as they are when the experience ends.
    return RealExamplesBuffer(settings.memory_per_class, data.layout.num_classes, size, HerdingSelectionStrategy(model, "pool"))


def distilled_text_memory(model: nn.Module, data: SequenceData, settings: ContinualConfig, size: int) -> ExemplarsBuffer:
    if data.distilled_text is None:
        raise ValueError("distilled_text_replay needs each task's distilled text, which this sequence's data lacks")
    return DistilledBuffer([avalanche_dataset(e, data.layout) for e in data.distilled_text], size)


def mean_matched(model: nn.Module, data: SequenceData, settings: ContinualConfig, size: int) -> ExemplarsBuffer:
    return MeanMatchedBuffer(data, settings.memory_per_class, size, settings.mean_matched_replay)


MEMORIES: dict[str, MemoryBuilder] = {
    "random": random_memory,
    "herding": herding_memory,
    "distilled_text": distilled_text_memory,
    "mean_matched": mean_matched,
}
