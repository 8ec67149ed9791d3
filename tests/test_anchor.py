"""The less-forget constraint on the trained blocks' features (continual.feature_anchor): its term, and when."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from condense.anchor import FeatureAnchor
from condense.continual import ContinualClassifier, LabelLayout, avalanche_dataset, collate, run_strategy
from condense.schema import FeatureAnchorConfig
from test_continual import _examples, _sequence_data, _settings  # tests/ is on sys.path (rootdir conftest)


def _batch(layout: LabelLayout):
    rows = avalanche_dataset(_examples(4, 5, 0, layout, 2), layout)
    return collate([rows[i] for i in range(len(rows))])[0]


def _train_step(model, plugin, strategy, batch):
    """The plugin's calls around one mini-batch as a strategy makes them; returns the pooled features."""
    plugin.before_forward(strategy)
    features = model.features(batch)
    model(batch)
    plugin.after_forward(strategy)
    plugin.before_backward(strategy)
    return features


def test_the_term_is_weight_times_cosine_distance_to_the_blocks_as_the_last_experience_left_them(tiny_bert):
    torch.manual_seed(0)
    layout = LabelLayout("class", [2, 2])
    model = ContinualClassifier(tiny_bert, 1, layout).eval()  # no dropout: the hand computation must match
    plugin = FeatureAnchor(FeatureAnchorConfig(weight=3.0))
    batch = _batch(layout)
    strategy = SimpleNamespace(model=model, mbatch=[batch], loss=torch.tensor(1.0))

    _train_step(model, plugin, strategy, batch)
    assert float(strategy.loss) == 1.0  # the first experience: nothing to hold yet

    plugin.after_training_exp(strategy)
    old = model.features(batch).detach()
    with torch.no_grad():
        for parameter in model.blocks.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    new = _train_step(model, plugin, strategy, batch)
    expected = 1.0 + 3.0 * (1 - F.cosine_similarity(new, old, dim=1).mean())
    assert float(strategy.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float(strategy.loss.detach()) > 1.0  # the blocks moved: the anchor pulls them back
    strategy.loss.backward()
    assert all(p.grad is None for p in plugin.anchor.parameters())  # the anchor is frozen
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.blocks.parameters())


def test_only_the_strategys_own_forward_is_caught_and_the_model_stays_copyable(tiny_bert):
    """Other plugins' forwards (a memory loss, a probe's evaluation) must not replace the mini-batch's features,
    and a copy of the model between iterations (a probe's) must neither fail on a held graph nor call back here."""
    import copy

    layout = LabelLayout("class", [2, 2])
    model = ContinualClassifier(tiny_bert, 1, layout).eval()
    plugin = FeatureAnchor(FeatureAnchorConfig(weight=1.0))
    batch = _batch(layout)
    strategy = SimpleNamespace(model=model, mbatch=[batch], loss=torch.tensor(0.0))
    plugin.after_training_exp(strategy)

    plugin.before_forward(strategy)
    model(batch)
    plugin.after_forward(strategy)
    caught = plugin.batch_features
    model(_batch(LabelLayout("class", [2, 2])))  # another plugin's forward, after the strategy's
    assert plugin.batch_features is caught
    plugin.before_backward(strategy)
    strategy.loss.backward()
    assert plugin.batch_features is None  # nothing held across iterations

    clone = copy.deepcopy(model)
    clone(batch)
    assert plugin.batch_features is None and not model.pool._forward_hooks and not clone.pool._forward_hooks


def test_a_run_with_the_anchor_differs_only_after_the_first_experience(tiny_bert):
    def run(weight: float) -> dict:
        settings = _settings(feature_anchor=FeatureAnchorConfig(weight=weight))
        return run_strategy("random_replay", tiny_bert, _sequence_data(), settings, seed=0)

    off, on = run(0.0), run(50.0)
    assert off["accuracy_matrix"][0] == on["accuracy_matrix"][0]  # the first experience trains as without it
    assert off["memory_fit"][0] == on["memory_fit"][0]
    assert off["memory_fit"][1]["loss"] != on["memory_fit"][1]["loss"]  # the second trains under the anchor


def test_the_anchor_config_is_checked_and_off_by_default():
    from condense.config import ConfigError, compose

    with pytest.raises(ConfigError, match="continual.feature_anchor.weight=-1.0 must be"):
        compose("run", ["continual.feature_anchor.weight=-1"])
    assert compose("run", []).continual.feature_anchor.weight == 0
