"""A replay memory distilled against the learner's own state after each task (``learner_distilled_replay``).

The per-task distilled sets of :mod:`condense.outer` are made for a fresh model at the pretrained weights. This
memory is distilled when its task ends, by the same bilevel method, with the learner as it then is as the inner
loop's start (as condensed-memory methods do: CCMCL, Wiewel & Yang 2021; SSD, Gu et al. 2024): its rows are
hidden states below the trained blocks, starting from ``memory_per_class`` real examples of each class (random
ones for ``learner_distilled_replay``; for ``herding_distilled_replay`` the ones herding picks on the learner's
features, the memory ``herding_replay`` keeps, so that distillation starts from the best real memory), and every
outer step draws a fresh linear head over the task's classes, trains it for ``inner_steps`` unrolled
SGD steps at learned learning rates on the memory's features under the learner's blocks (against learned soft
labels), and back-propagates the cross-entropy of that head on the task's real training features (the same
blocks) to the hidden states, the soft labels and the learning rates. The memory thus encodes what a classifier on
this learner's features needs from the task, which is what a re-fit of the heads (``continual.refit``) does with it.

``learner_distill.objective=mean_matching`` distils instead what herding approximates with real rows: the rows move
until each class's mean feature under the learner is the real rows' mean (distribution matching, Zhao & Bilen
2023), and they keep their classes as hard labels. With ``learner_distill.weight_noise`` each step matches the means
under randomly perturbed blocks, for a memory whose means hold while the blocks drift on the next tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from condense.continual_data import Examples, SequenceData, avalanche_dataset, random_rows_per_class  # first: quiets Avalanche's import
from avalanche.benchmarks.utils.utils import concat_datasets  # noqa: E402
from condense.continual_model import ContinualClassifier, model_device  # noqa: E402
from avalanche.training.storage_policy import HerdingSelectionStrategy  # noqa: E402
from condense.inner import soft_cross_entropy, unrolled_train  # noqa: E402
from condense.replay import PerExperienceBuffer  # noqa: E402
from condense.schema import ContinualConfig, LearnerDistillConfig  # noqa: E402


@torch.no_grad()
def _features(model: ContinualClassifier, examples: Examples, batch_size: int = 128) -> torch.Tensor:
    device = model_device(model)
    return torch.cat([model.features({"hidden_states": examples.hidden_states[i : i + batch_size].to(device),
                                      "attention_mask": examples.attention_mask[i : i + batch_size].to(device)})
                      for i in range(0, len(examples), batch_size)])


def herding_rows_per_class(features: torch.Tensor, labels: torch.Tensor, classes: int, per_class: int) -> torch.Tensor:
    """Indices of the ``per_class`` rows of each class that ``herding_replay`` keeps (Avalanche's iCaRL herding on
    the learner's pooled ``features``), class by class."""
    # Called unbound: it reads nothing of the strategy, whose constructor would hook a feature extractor onto a model.
    order = HerdingSelectionStrategy.make_sorted_indices_from_features
    return torch.cat([members[order(None, features[members.to(features.device)])[:per_class]] for label in range(classes)
                      if len(members := torch.nonzero(labels == label).flatten())])


# How the real examples a memory starts from are picked: (features under the learner, labels, classes, per class)
# -> row indices, class by class.
STARTS = {
    "random": lambda features, labels, classes, per_class: random_rows_per_class(labels, classes, per_class),
    "herding": herding_rows_per_class,
}


@dataclass
class Memory:
    hidden: torch.Tensor  # the rows' hidden states below the trained blocks, the tensor being learned
    mask: torch.Tensor
    labels: torch.Tensor  # the class each row started as


def distil_for_learner(model: ContinualClassifier, real: Examples, columns: slice, per_class: int,
                       settings: LearnerDistillConfig, start_from: str = "random") -> tuple[Examples, list[float]]:
    """``per_class`` rows of each class of ``real`` (its targets' ``columns`` are the task's classes), picked by
    ``STARTS[start_from]`` and distilled against ``model``'s blocks as they are by ``settings.objective``; returns
    the memory (targets in ``real``'s layout) and the outer losses."""
    training = model.training
    model.eval()  # no dropout: every outer step sees one function of the hidden states
    device = model_device(model)
    labels = real.targets[:, columns].argmax(1)
    classes = real.targets[:, columns].shape[1]
    real_features = _features(model, real)
    picks = STARTS[start_from](real_features, labels, classes, per_class)
    start = real.subset(picks)
    memory = Memory(start.hidden_states.to(device).float().clone().requires_grad_(True), start.attention_mask.to(device),
                    labels[picks].to(device))
    if settings.objective == "mean_matching":
        probabilities, losses = _match_class_means(model, memory, real, real_features, labels.to(device), classes, settings)
    else:
        probabilities, losses = _bilevel(model, memory, real_features, labels.to(device), classes, settings)
    model.train(training)
    soft = real.targets.new_zeros(len(picks), real.targets.shape[1])
    soft[:, columns] = probabilities.cpu()
    return Examples(memory.hidden.detach().cpu(), start.attention_mask.clone(), soft, start.task_ids.clone()), losses


def _bilevel(model: ContinualClassifier, memory: Memory, real_features: torch.Tensor, real_labels: torch.Tensor,
             classes: int, settings: LearnerDistillConfig) -> tuple[torch.Tensor, list[float]]:
    """Learns the rows, soft labels and inner rates so that a fresh head trained on the rows classifies the real
    features; returns the soft labels and the outer losses."""
    device = memory.hidden.device
    # Soft labels start as the picks' classes, confident but not one-hot, so that they can learn either way.
    label_logits = (F.one_hot(memory.labels, classes).float() * math.log(10 * classes)).requires_grad_(True)
    log_lrs = torch.full((settings.inner_steps,), math.log(settings.inner_lr), device=device, requires_grad=True)
    optimizer = torch.optim.Adam([{"params": [memory.hidden], "lr": settings.lr_inputs},
                                  {"params": [label_logits, log_lrs], "lr": settings.lr_labels}])
    losses = []
    for _ in range(settings.outer_steps):
        # A fresh head each step, drawn from torch's seeded generator.
        head = nn.Linear(real_features.shape[1], classes).to(device)
        params = {"weight": head.weight.detach().requires_grad_(True), "bias": head.bias.detach().requires_grad_(True)}
        features = model.features({"hidden_states": memory.hidden, "attention_mask": memory.mask})
        targets = label_logits.softmax(1)
        trained = unrolled_train(params, lambda p: soft_cross_entropy(F.linear(features, p["weight"], p["bias"]), targets),
                                 log_lrs.exp())
        batch = torch.randint(len(real_features), (min(settings.real_batch_size, len(real_features)),), device=device)
        loss = F.cross_entropy(F.linear(real_features[batch], trained["weight"], trained["bias"]), real_labels[batch])
        optimizer.zero_grad()
        # Only the memory's tensors: the learner's own weights are not this loop's to change.
        tensors = [memory.hidden, label_logits, log_lrs]
        memory.hidden.grad, label_logits.grad, log_lrs.grad = torch.autograd.grad(loss, tensors)
        optimizer.step()
        losses.append(float(loss.detach()))
    return label_logits.detach().softmax(1), losses


def _match_class_means(model: ContinualClassifier, memory: Memory, real: Examples, real_features: torch.Tensor,
                       real_labels: torch.Tensor, classes: int,
                       settings: LearnerDistillConfig) -> tuple[torch.Tensor, list[float]]:
    """Distribution matching (Zhao & Bilen 2023) on the learner's features, the mean herding approximates with real
    rows: learns the rows so that each class's mean feature is the real rows' mean, as the sum over classes of the
    squared distance. With ``weight_noise`` every step perturbs the blocks' parameters, and the real means are
    those of a batch under the same perturbation. Returns one-hot labels (the rows keep their classes) and the
    losses."""
    device = memory.hidden.device
    members = F.one_hot(memory.labels, classes).float().T  # (classes, rows)
    members = members / members.sum(1, keepdim=True)
    real_members = F.one_hot(real_labels, classes).float().T
    optimizer = torch.optim.Adam([memory.hidden], lr=settings.lr_inputs)
    params = {name: p.detach() for name, p in model.blocks.named_parameters()}
    perturbed, present = None, torch.ones(classes, dtype=torch.bool, device=device)
    real_means = real_members @ real_features / real_members.sum(1, keepdim=True)
    losses = []
    for _ in range(settings.outer_steps):
        if settings.weight_noise:
            perturbed = {name: p + settings.weight_noise * p.pow(2).mean().sqrt() * torch.randn_like(p)
                         for name, p in params.items()}
            batch = torch.randint(len(real), (min(settings.real_batch_size, len(real)),))
            with torch.no_grad():
                batch_features = model.features({"hidden_states": real.hidden_states[batch].to(device).float(),
                                                 "attention_mask": real.attention_mask[batch].to(device)}, perturbed)
            batch_members = real_members[:, batch.to(device)]
            present = batch_members.sum(1) > 0  # a class the batch missed has no mean to match this step
            real_means = batch_members[present] @ batch_features / batch_members[present].sum(1, keepdim=True)
        features = model.features({"hidden_states": memory.hidden, "attention_mask": memory.mask}, perturbed)
        loss = (members[present] @ features - real_means).pow(2).sum()
        optimizer.zero_grad()
        memory.hidden.grad, = torch.autograd.grad(loss, [memory.hidden])
        optimizer.step()
        losses.append(float(loss.detach()))
    return F.one_hot(memory.labels, classes).float(), losses


class LearnerDistilledBuffer(PerExperienceBuffer):
    """After each experience, keeps that task's memory distilled against the learner as the experience left it
    (:func:`distil_for_learner`); the kept memories of past tasks never change."""

    def __init__(self, data: SequenceData, per_class: int, max_size: int, settings: LearnerDistillConfig,
                 start_from: str = "random"):
        super().__init__(max_size)
        self.data, self.per_class, self.settings, self.start_from = data, per_class, settings, start_from
        self.kept: list = []
        self.outer_losses: list[list[float]] = []

    def post_adapt(self, agent, exp):
        task = exp.current_experience
        layout = self.data.layout
        columns = slice(layout.offset(task), layout.offset(task) + layout.num_classes[task])
        memory, losses = distil_for_learner(agent.model, self.data.train[task], columns, self.per_class, self.settings,
                                            self.start_from)
        self.outer_losses.append(losses)
        self.kept.append(avalanche_dataset(memory, layout))
        self.buffer = concat_datasets(self.kept)


def learner_distilled_memory(start_from: str):
    """The builder of a memory distilled for the learner from real examples picked by ``STARTS[start_from]``."""

    def build(model: nn.Module, data: SequenceData, settings: ContinualConfig, size: int) -> LearnerDistilledBuffer:
        return LearnerDistilledBuffer(data, settings.memory_per_class, size, settings.learner_distill, start_from)

    return build
