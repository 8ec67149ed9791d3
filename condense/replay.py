"""What the strategies add to Avalanche's templates: replay memories (Avalanche storage policies, one per kind of
memory), the plugins that measure a run (the forgetting curve, how well the model already fits its memory) and
those that change what replay optimises (a dark-experience-replay term, ER-ACE's asymmetric cross-entropy).

Each kind of memory has a builder of its storage policy (``condense.continual.MEMORIES`` names them), which
Avalanche's ``ReplayPlugin`` fills after each experience and samples from during the next.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.core import SupervisedPlugin
from avalanche.training.storage_policy import (
    ExemplarsBuffer,
    HerdingSelectionStrategy,
    ParametricBuffer,
    RandomExemplarsSelectionStrategy,
)
from torch import nn

from condense.continual_data import Examples, LabelLayout, SequenceData, avalanche_dataset, collate  # first: quiets Avalanche
from condense.continual_model import OUTSIDE_TASK, accuracy, loss_and_accuracy, model_device
from condense.schema import ContinualConfig, MemoryLossConfig


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


# (model, data, continual settings, total memory size) -> storage policy
MemoryBuilder = Callable[[nn.Module, SequenceData, ContinualConfig, int], ExemplarsBuffer]


def random_memory(model: nn.Module, data: SequenceData, settings: ContinualConfig, size: int) -> ExemplarsBuffer:
    return RealExamplesBuffer(settings.memory_per_class, data.layout.num_classes, size, RandomExemplarsSelectionStrategy())


def herding_memory(model: nn.Module, data: SequenceData, settings: ContinualConfig, size: int) -> ExemplarsBuffer:
    # Herding on the model's own pooled features, as they are when the experience ends.
    return RealExamplesBuffer(settings.memory_per_class, data.layout.num_classes, size, HerdingSelectionStrategy(model, "pool"))


def distilled_memory(form: str) -> MemoryBuilder:
    """The builder of a memory of each past task's distilled set in ``form`` (``embedding`` or ``text``)."""

    def build(model: nn.Module, data: SequenceData, settings: ContinualConfig, size: int) -> ExemplarsBuffer:
        return DistilledBuffer([avalanche_dataset(e, data.layout) for e in data.distilled[form]], size)

    return build



def _label_targets(targets: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The memory's target rows, softened or sharpened by ``temperature`` (one-hot rows stay one-hot)."""
    tempered = targets.clamp_min(1e-12).log() / temperature
    return torch.where(targets > 0, tempered, torch.full_like(tempered, -torch.inf)).softmax(1)


def _logit_targets(targets: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The model's own predictions when the example entered the memory, at ``temperature``."""
    return (logits / temperature).softmax(1)


MEMORY_TARGETS: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "labels": _label_targets,
    "logits": _logit_targets,
}


class MemoryLoss(SupervisedPlugin):
    """Adds ``weight * T^2 * KL(targets_T || softmax(logits / T))`` on a mini-batch drawn from the replay memory to
    every training loss (``continual.memory_loss``). Memory rows mixed into the mini-batch already give a
    cross-entropy; a near-zero one once the model fits them, so this term keeps pulling towards what the memory
    encodes (its soft labels, or the logits the model gave it) before drift misclassifies it.

    Registered after the ``ReplayPlugin`` that fills ``memory``, so each experience's new rows get their logits
    after the memory holds them, from the model as the experience ended."""

    def __init__(self, memory: ExemplarsBuffer, settings: MemoryLossConfig):
        super().__init__()
        self.memory = memory
        self.settings = settings
        self.targets = MEMORY_TARGETS[settings.targets]
        self.logits = torch.empty(0)  # (rows so far, width): the model's logits on each row as it was stored

    @torch.no_grad()
    def after_training_exp(self, strategy, *args, **kwargs):
        buffer = self.memory.buffer
        new = [buffer[i] for i in range(len(self.logits), len(buffer))]
        if not new:
            return
        training = strategy.model.training
        strategy.model.eval()
        batch, _, _ = collate(new)
        logits = strategy.model(batch.to(model_device(strategy.model))).float().cpu()
        strategy.model.train(training)
        self.logits = logits if not len(self.logits) else torch.cat([self.logits, logits])

    def before_backward(self, strategy, *args, **kwargs):
        buffer = self.memory.buffer
        if not len(buffer) or self.settings.weight == 0:
            return
        # torch's global generator: RNGManager seeds it per run, so the draws repeat with the seed.
        picks = torch.randint(len(buffer), (self.settings.batch_size,)).tolist()
        batch, targets, _ = collate([buffer[i] for i in picks])
        device = model_device(strategy.model)
        logits = strategy.model(batch.to(device))
        temperature = self.settings.temperature
        wanted = self.targets(targets.to(device).float(), self.logits[picks].to(device), temperature)
        divergence = F.kl_div((logits / temperature).log_softmax(1), wanted, reduction="batchmean")
        strategy.loss = strategy.loss + self.settings.weight * temperature**2 * divergence


class AsymmetricLoss(SupervisedPlugin):
    """ER-ACE's asymmetric cross-entropy (Caccia et al. 2022, ``continual.asymmetric_loss``): rows of the task being
    learned are scored over that task's classes only, replayed rows over every class. In the class scenario, plain
    cross-entropy on new rows pushes every old class's logit down, which a memory of a few rows cannot outweigh;
    with per-task heads the two losses are the same. Replaces the template's loss, so it is registered before any
    plugin that adds to it (:class:`MemoryLoss`)."""

    def __init__(self, layout: LabelLayout):
        super().__init__()
        self.layout = layout

    def before_backward(self, strategy, *args, **kwargs):
        task = strategy.experience.current_experience
        logits = strategy.mb_output
        incoming = (strategy.mbatch[0]["task_ids"] == task).unsqueeze(1)
        columns = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        columns[self.layout.offset(task) : self.layout.offset(task) + self.layout.num_classes[task]] = True
        masked = logits.masked_fill(incoming & ~columns, OUTSIDE_TASK)
        strategy.loss = F.cross_entropy(masked, strategy.mb_y)
