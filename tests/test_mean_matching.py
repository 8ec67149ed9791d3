"""The mean-matched memory (mean_matched_replay): herding's rows, moved onto the class means of the learner's features."""

from __future__ import annotations

import pytest
import torch

from condense.config.schema import MeanMatchingConfig
from condense.continual.data import LabelLayout
from condense.continual.mean_matching import herding_rows_per_class, mean_matched_memory, pooled_features
from condense.continual.memories import MeanMatchedBuffer
from condense.continual.model import ContinualClassifier
from condense.continual.strategies import run_strategy
from test_continual import _examples, _sequence_data, _settings  # tests/ is on sys.path (rootdir conftest)


def test_herding_picks_the_rows_whose_running_mean_stays_nearest_each_class_mean():
    features = torch.tensor([[0.0, 0.0], [4.0, 0.0], [1.0, 0.0], [9.0, 9.0], [5.0, 5.0], [3.0, 3.0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    # Class 0's mean is (5/3, 0): row 2 first, then the row that brings the pair's mean nearest it (row 1).
    # Class 1's mean is (17/3, 17/3): row 4 first, then row 3 ((7, 7)) beats row 5 ((4, 4)).
    assert herding_rows_per_class(features, labels, 2, 1).tolist() == [2, 4]
    assert herding_rows_per_class(features, labels, 2, 2).tolist() == [2, 1, 4, 3]


def _learner_and_task(tiny_bert):
    """A learner in train mode and 30 real rows of the second task (3 classes) of a class-incremental layout."""
    torch.manual_seed(0)
    layout = LabelLayout("class", [2, 3])
    return ContinualClassifier(tiny_bert, 1, layout).train(), _examples(30, 6, 1, layout, 3)


def _class_mean_distance(model, memory, real, columns):
    features, real_features = pooled_features(model, memory), pooled_features(model, real)
    labels, real_labels = memory.targets[:, columns].argmax(1), real.targets[:, columns].argmax(1)
    return sum(float((features[labels == c].mean(0) - real_features[real_labels == c].mean(0)).pow(2).sum())
               for c in range(3))


def test_mean_matching_moves_herdings_rows_onto_the_class_means_with_hard_labels(tiny_bert):
    model, real = _learner_and_task(tiny_bert)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    picks = herding_rows_per_class(pooled_features(model, real), real.targets[:, 2:].argmax(1), 3, 1)
    herding = real.subset(picks)
    before = _class_mean_distance(model, herding, real, slice(2, 5))
    model.train()
    memory, losses = mean_matched_memory(model, real, slice(2, 5), 1, MeanMatchingConfig(steps=150, lr=0.05))
    assert model.training and all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    model.eval()
    # Its first loss is herding's own distance to the class means, and the rows end far nearer them than herding's.
    assert losses[0] == pytest.approx(before, rel=1e-4)
    assert _class_mean_distance(model, memory, real, slice(2, 5)) < 0.1 * before
    assert torch.equal(memory.targets, real.targets[picks])  # one-hot, the rows' own classes, in the task's block
    assert memory.task_ids.tolist() == [1, 1, 1] and torch.equal(memory.attention_mask, herding.attention_mask)
    assert not torch.allclose(memory.hidden_states, herding.hidden_states.float())


def test_no_steps_keep_herdings_rows(tiny_bert):
    model, real = _learner_and_task(tiny_bert)
    model.eval()
    picks = herding_rows_per_class(pooled_features(model, real), real.targets[:, 2:].argmax(1), 3, 2)
    untouched, _ = mean_matched_memory(model, real, slice(2, 5), 2, MeanMatchingConfig(steps=1, lr=1e-12))
    torch.testing.assert_close(untouched.hidden_states, real.hidden_states[picks].float())
    assert untouched.targets[:, 2:].argmax(1).tolist() == [0, 0, 1, 1, 2, 2]


def test_a_run_keeps_one_matched_memory_per_past_task_and_repeats_with_its_seed(tiny_bert, monkeypatch):
    kept, steps = [], []
    original = MeanMatchedBuffer.post_adapt

    def spy(self, agent, exp):
        original(self, agent, exp)
        kept.append([len(d) for d in self.kept])
        steps.append([len(losses) for losses in self.matching_losses])

    monkeypatch.setattr(MeanMatchedBuffer, "post_adapt", spy)
    settings = _settings(mean_matched_replay=MeanMatchingConfig(steps=3))
    first = run_strategy("mean_matched_replay", tiny_bert, _sequence_data(), settings, seed=0)
    assert kept == [[2], [2, 2]]  # one per class of each task, both tasks of 2 classes
    assert steps == [[3], [3, 3]]
    again = run_strategy("mean_matched_replay", tiny_bert, _sequence_data(), settings, seed=0)
    assert first["accuracy_matrix"] == again["accuracy_matrix"]
