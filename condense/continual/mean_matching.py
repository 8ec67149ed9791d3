"""The mean-matched replay memory (``mean_matched_replay``): herding's rows, moved until each class's mean feature
under the learner is the mean of the task's real rows.

When a task ends, herding (iCaRL's, on the learner's pooled features) picks ``memory_per_class`` real rows of each
class: the rows whose running mean stays closest to the class's mean feature, the prototype a joint head must keep
apart from the classes to come. Herding can only approximate that mean with real rows; distribution matching (Zhao
& Bilen 2023) on the learner's own features reaches it: Adam moves the rows' hidden states (the input below the
trained blocks) to minimise the sum over classes of the squared distance between the rows' mean feature and the real
rows' mean, with the learner's weights fixed. The rows keep their classes as hard labels. The memory has no text form:
it is hidden states, computed for the learner as the task left it.

``docs/results/continual.md`` sets it beside herding's own rows on every sequence, paired by seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from condense.continual.data import Examples  # first: quiets Avalanche's import
from avalanche.training.storage_policy import HerdingSelectionStrategy  # noqa: E402
from condense.continual.model import ContinualClassifier, model_device  # noqa: E402
from condense.config.schema import MeanMatchingConfig  # noqa: E402


@torch.no_grad()
def pooled_features(model: ContinualClassifier, examples: Examples, batch_size: int = 128) -> torch.Tensor:
    """The learner's pooled features of every row of ``examples``, on the model's device."""
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


def mean_matched_memory(model: ContinualClassifier, real: Examples, columns: slice, per_class: int,
                        settings: MeanMatchingConfig) -> tuple[Examples, list[float]]:
    """``per_class`` rows of each class of ``real`` (its targets' ``columns`` are the task's classes), picked by
    herding and moved until each class's mean feature under ``model`` is the real rows' mean; returns the memory
    (one-hot targets in ``real``'s layout) and the matching loss at every step."""
    training = model.training
    model.eval()  # no dropout: every step sees one function of the hidden states
    device = model_device(model)
    labels = real.targets[:, columns].argmax(1)
    classes = real.targets[:, columns].shape[1]
    real_features = pooled_features(model, real)
    picks = herding_rows_per_class(real_features, labels, classes, per_class)
    start = real.subset(picks)
    hidden = start.hidden_states.to(device).float().clone().requires_grad_(True)
    mask = start.attention_mask.to(device)
    members = F.one_hot(labels[picks].to(device), classes).float().T  # (classes, rows): each class's share of the rows
    members = members / members.sum(1, keepdim=True)
    real_members = F.one_hot(labels.to(device), classes).float().T
    real_means = real_members @ real_features / real_members.sum(1, keepdim=True)
    optimizer = torch.optim.Adam([hidden], lr=settings.lr)
    losses = []
    for _ in range(settings.steps):
        features = model.features({"hidden_states": hidden, "attention_mask": mask})
        loss = (members @ features - real_means).pow(2).sum()
        optimizer.zero_grad()
        # Only the rows: the learner's own weights are not this loop's to change.
        hidden.grad, = torch.autograd.grad(loss, [hidden])
        optimizer.step()
        losses.append(float(loss.detach()))
    model.train(training)
    targets = real.targets.new_zeros(len(picks), real.targets.shape[1])
    targets[:, columns] = F.one_hot(labels[picks], classes).to(targets.dtype)
    return Examples(hidden.detach().cpu(), start.attention_mask.clone(), targets, start.task_ids.clone()), losses
