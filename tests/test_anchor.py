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


def test_the_term_is_weight_times_cosine_distance_to_the_blocks_as_the_last_experience_left_them(tiny_bert):
    torch.manual_seed(0)
    layout = LabelLayout("class", [2, 2])
    model = ContinualClassifier(tiny_bert, 1, layout).eval()  # no dropout: the hand computation must match
    plugin = FeatureAnchor(model, FeatureAnchorConfig(weight=3.0))
    batch = _batch(layout)
    strategy = SimpleNamespace(model=model, mbatch=[batch], loss=torch.tensor(1.0))

    model(batch)
    plugin.after_forward(strategy)
    plugin.before_backward(strategy)
    assert float(strategy.loss) == 1.0  # the first experience: nothing to hold yet

    plugin.after_training_exp(strategy)
    old = model.features(batch).detach()
    with torch.no_grad():
        for parameter in model.blocks.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model(batch)
    new = plugin.features
    plugin.after_forward(strategy)
    plugin.before_backward(strategy)
    expected = 1.0 + 3.0 * (1 - F.cosine_similarity(new, old, dim=1).mean())
    assert float(strategy.loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(strategy.loss.detach()) > 1.0  # the blocks moved: the anchor pulls them back
    strategy.loss.backward()
    assert all(p.grad is None for p in plugin.anchor.parameters())  # the anchor is frozen
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.blocks.parameters())


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
