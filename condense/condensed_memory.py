"""A replay memory condensed for the learner that replays it (CCMCL, Wiewel & Yang 2021; SSD, Gu et al. 2024).

The distilled sets of :mod:`condense.outer` are made for a fresh model from the pretrained start. This memory is
made while the learner trains on the task, against the learner's own weights: it starts as ``memory_per_class``
real examples of each class (their hidden states below the trained blocks, where the continual model's inputs
live) and, after every training iteration, takes ``condensation.steps`` Adam steps on those hidden states that
make the memory's gradient at the learner's current weights point where the real mini-batch's does (one minus the
cosine similarity, summed over parameter tensors, as in gradient-matching condensation, Zhao et al. 2021). So the
memory encodes how this model moved on this task, along its whole trajectory, rather than what a fresh model needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from condense.continual_data import Examples, SequenceData, avalanche_dataset, random_rows_per_class  # first: quiets Avalanche's import
from avalanche.benchmarks.utils.utils import concat_datasets  # noqa: E402
from avalanche.core import SupervisedPlugin  # noqa: E402
from condense.continual_model import model_device  # noqa: E402
from condense.replay import PerExperienceBuffer  # noqa: E402
from condense.schema import CondensationConfig, ContinualConfig  # noqa: E402


def loss_gradients(model: nn.Module, params: dict[str, torch.Tensor], batch: dict, targets: torch.Tensor,
                   create_graph: bool = False) -> tuple[torch.Tensor | None, ...]:
    """The gradient of the cross-entropy on ``batch`` with respect to each of ``params`` (None where unused)."""
    loss = F.cross_entropy(functional_call(model, params, (batch,)), targets)
    return torch.autograd.grad(loss, list(params.values()), create_graph=create_graph, allow_unused=True)


def gradient_mismatch(model: nn.Module, params: dict[str, torch.Tensor], memory: dict, memory_targets: torch.Tensor,
                      real_grads: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
    """Sum over parameter tensors of 1 - cos(gradient on the memory, ``real_grads``), differentiable with respect
    to the memory's inputs; tensors the real batch gives (next to) no gradient are left out."""
    memory_grads = loss_gradients(model, params, memory, memory_targets, create_graph=True)
    pairs = [(m, r) for m, r in zip(memory_grads, real_grads) if m is not None and r is not None]
    # A tensor the loss cannot move (a key bias: softmax ignores a shift shared by every key) has a gradient of
    # rounding noise, whose direction means nothing.
    largest = max((float(r.norm()) for _, r in pairs), default=0.0)
    terms = [1 - F.cosine_similarity(m.flatten(), r.flatten(), dim=0) for m, r in pairs if r.norm() > 1e-6 * largest]
    return torch.stack(terms).sum() if terms else memory_targets.new_zeros(())


class CondensedBuffer(PerExperienceBuffer, SupervisedPlugin):
    """A storage policy that is also the plugin condensing its current experience's share while that experience
    trains; the kept shares of past experiences never change. Register it as a plugin and give it to a
    ``ReplayPlugin`` as its storage policy."""

    def __init__(self, data: SequenceData, per_class: int, max_size: int, settings: CondensationConfig):
        PerExperienceBuffer.__init__(self, max_size)
        SupervisedPlugin.__init__(self)
        self.data, self.per_class, self.settings = data, per_class, settings
        self.kept: list = []
        self.current: Examples | None = None  # this experience's memory, its hidden states being learned
        self.optimizer: torch.optim.Optimizer | None = None
        self.matches: list[float] = []  # the mismatch before each condensation step (the last experience's)

    def before_training_exp(self, strategy, *args, **kwargs):
        task = strategy.experience.current_experience
        real = self.data.train[task]
        offset, classes = self.data.layout.offset(task), self.data.layout.num_classes[task]
        labels = real.targets[:, offset : offset + classes].argmax(1)
        start = real.subset(random_rows_per_class(labels, classes, self.per_class))  # real examples to start from
        device = model_device(strategy.model)
        hidden = start.hidden_states.to(device).float().clone().requires_grad_(True)
        self.current = Examples(hidden, start.attention_mask.to(device), start.targets.to(device), start.task_ids.to(device))
        self.optimizer = torch.optim.Adam([hidden], lr=self.settings.lr)
        self.matches = []

    def after_training_iteration(self, strategy, *args, **kwargs):
        batch, targets = strategy.mbatch[0], strategy.mbatch[1]
        rows = batch["task_ids"] == strategy.experience.current_experience  # not the replayed rows of past tasks
        if not rows.any() or strategy.clock.train_exp_iterations % self.settings.every:
            return
        real = {name: value[rows] for name, value in batch.items()}
        model = strategy.model
        training = model.training
        model.eval()  # no dropout: both gradients of one step are taken at the same function
        params = {name: p.detach().requires_grad_(True) for name, p in model.named_parameters() if p.requires_grad}
        memory = self.current
        real_grads = loss_gradients(model, params, real, targets[rows])
        inputs = {"hidden_states": memory.hidden_states, "attention_mask": memory.attention_mask, "task_ids": memory.task_ids}
        for _ in range(self.settings.steps):
            mismatch = gradient_mismatch(model, params, inputs, memory.targets, real_grads)
            self.matches.append(float(mismatch.detach()))
            self.optimizer.zero_grad()
            mismatch.backward(inputs=[memory.hidden_states])
            self.optimizer.step()
        model.train(training)

    def post_adapt(self, agent, exp):
        memory = self.current
        frozen = Examples(memory.hidden_states.detach().cpu(), memory.attention_mask.cpu(), memory.targets.cpu(),
                          memory.task_ids.cpu())
        self.kept.append(avalanche_dataset(frozen, self.data.layout))
        self.buffer = concat_datasets(self.kept)
        self.current, self.optimizer = None, None


def condensed_memory(model: nn.Module, data: SequenceData, settings: ContinualConfig, size: int) -> CondensedBuffer:
    return CondensedBuffer(data, settings.memory_per_class, size, settings.condensation)
