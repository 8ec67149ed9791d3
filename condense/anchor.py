"""Holding the trained blocks' features in place while later tasks train (``continual.feature_anchor``): LUCIR's
less-forget constraint (Hou et al. 2019), ``weight * (1 - cos(f(x), f_old(x)))`` on every row of each mini-batch,
where ``f_old`` is the model as the previous experience left it.

A replay memory is only as good as the features it is replayed through: the anchor bounds their drift for old and
new inputs alike, so that what a memory encodes for the blocks as a task left them still holds when it is replayed
or the heads are re-fitted on it (:mod:`condense.refit`). It pays in plasticity: the next task learns on features
held near the old ones.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from condense.continual_model import ContinualClassifier  # first: quiets Avalanche's import
from avalanche.core import SupervisedPlugin  # noqa: E402
from condense.schema import FeatureAnchorConfig  # noqa: E402


class FeatureAnchor(SupervisedPlugin):
    """Adds the less-forget term to every training loss after the first experience. The model's pooled features of
    the mini-batch are caught by a hook on its pooling that lives only through the strategy's own forward (so that
    other plugins' forwards, evaluation and copies of the model never reach it); the anchor's are the frozen copy's,
    in eval mode, without gradient."""

    def __init__(self, settings: FeatureAnchorConfig):
        super().__init__()
        self.settings = settings
        self.anchor: ContinualClassifier | None = None  # the model as the previous experience left it
        self.batch_features: torch.Tensor | None = None  # the strategy's own forward's pooled features
        self._hook = None

    def _catch(self, module, inputs, output):
        self.batch_features = output

    def before_forward(self, strategy, *args, **kwargs):
        if self.anchor is not None:  # the first experience: nothing to hold yet
            self._hook = strategy.model.pool.register_forward_hook(self._catch)

    def after_forward(self, strategy, *args, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def before_backward(self, strategy, *args, **kwargs):
        if self.batch_features is None:
            return
        with torch.no_grad():
            anchored = self.anchor.features(strategy.mbatch[0])
        distance = 1 - F.cosine_similarity(self.batch_features, anchored, dim=1).mean()
        strategy.loss = strategy.loss + self.settings.weight * distance
        self.batch_features = None  # its graph is freed by the backward pass: hold nothing across iterations

    def after_training_exp(self, strategy, *args, **kwargs):
        self.anchor = copy.deepcopy(strategy.model).eval()  # no hook to drag along: it is gone after each forward
        for parameter in self.anchor.parameters():
            parameter.requires_grad_(False)
