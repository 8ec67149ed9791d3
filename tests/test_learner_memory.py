"""The memory distilled against the learner's own blocks after each task (learner_distilled_replay)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from condense.continual.strategies import ContinualClassifier, run_strategy
from condense.continual.data import LabelLayout
from condense.continual.mean_matching import herding_rows_per_class
from test_continual import _examples, _sequence_data, _settings  # tests/ is on sys.path (rootdir conftest)


def test_the_memory_is_distilled_against_the_learners_blocks_without_changing_them(tiny_bert):
    torch.manual_seed(0)
    layout = LabelLayout("class", [2, 3])
    model = ContinualClassifier(tiny_bert, 1, layout).train()
    real = _examples(30, 6, 1, layout, 3)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    settings = LearnerDistillConfig(outer_steps=40, inner_steps=3, real_batch_size=30)
    memory, losses = distil_for_learner(model, real, slice(2, 5), 2, settings)

    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items()) and model.training
    assert memory.hidden_states.shape == (6, 6, 16) and memory.task_ids.tolist() == [1] * 6
    # Two rows of each of the task's classes, its soft labels in the task's block of the joint layout only.
    assert memory.targets[:, 2:].argmax(1).tolist() == [0, 0, 1, 1, 2, 2]
    torch.testing.assert_close(memory.targets.sum(1), torch.ones(6))
    assert memory.targets[:, :2].abs().sum() == 0
    # The rows moved from the real examples they started as, and a head trained on them got better on real data.
    picked = [any(torch.equal(row, r) for r in real.hidden_states) for row in memory.hidden_states]
    assert not any(picked)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_herding_picks_the_rows_whose_running_mean_stays_nearest_each_class_mean():
    features = torch.tensor([[0.0, 0.0], [4.0, 0.0], [1.0, 0.0], [9.0, 9.0], [5.0, 5.0], [3.0, 3.0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    # Class 0's mean is (5/3, 0): row 2 first, then the row that brings the pair's mean nearest it (row 1).
    # Class 1's mean is (17/3, 17/3): row 4 first, then row 3 ((7, 7)) beats row 5 ((4, 4)).
    assert herding_rows_per_class(features, labels, 2, 1).tolist() == [2, 4]
    assert herding_rows_per_class(features, labels, 2, 2).tolist() == [2, 1, 4, 3]


def _learner_and_task(tiny_bert):
    """A learner in eval mode and 30 real rows of the second task (3 classes) of a class-incremental layout."""
    torch.manual_seed(0)
    layout = LabelLayout("class", [2, 3])
    return ContinualClassifier(tiny_bert, 1, layout).eval(), _examples(30, 6, 1, layout, 3)


def test_a_herding_start_distils_from_the_rows_herding_replay_keeps(tiny_bert):
    model, real = _learner_and_task(tiny_bert)
    picks = herding_rows_per_class(_features(model, real), real.targets[:, 2:].argmax(1), 3, 2)
    untouched, _ = distil_for_learner(model, real, slice(2, 5), 2, LearnerDistillConfig(outer_steps=1, lr_inputs=1e-9,
                                                                                        lr_labels=1e-9), "herding")
    torch.testing.assert_close(untouched.hidden_states, real.hidden_states[picks].float())
    assert untouched.targets[:, 2:].argmax(1).tolist() == real.targets[picks, 2:].argmax(1).tolist() == [0, 0, 1, 1, 2, 2]
    moved, losses = distil_for_learner(model, real, slice(2, 5), 2, LearnerDistillConfig(outer_steps=40, inner_steps=3,
                                                                                         real_batch_size=30), "herding")
    assert not torch.allclose(moved.hidden_states, real.hidden_states[picks].float())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_a_run_keeps_one_distilled_memory_per_past_task(tiny_bert, monkeypatch):
    kept, outer_losses = [], []
    original = LearnerDistilledBuffer.post_adapt

    def spy(self, agent, exp):
        original(self, agent, exp)
        kept.append([len(d) for d in self.kept])
        outer_losses.append([len(losses) for losses in self.outer_losses])

    monkeypatch.setattr(LearnerDistilledBuffer, "post_adapt", spy)
    settings = _settings(learner_distill=LearnerDistillConfig(outer_steps=3, inner_steps=2))
    first = run_strategy("learner_distilled_replay", tiny_bert, _sequence_data(), settings, seed=0)
    assert kept == [[2], [2, 2]]  # one per class of each task, both tasks of 2 classes
    assert outer_losses == [[3], [3, 3]]  # each task's distillation, its 3 outer steps
    again = run_strategy("learner_distilled_replay", tiny_bert, _sequence_data(), settings, seed=0)
    assert first["accuracy_matrix"] == again["accuracy_matrix"]  # the seed fixes the memory's starts and heads


def test_features_under_given_block_parameters_are_those_of_blocks_holding_them(tiny_bert):
    torch.manual_seed(0)
    model = ContinualClassifier(tiny_bert, 1, LabelLayout("class", [2, 3])).eval()
    batch = {"hidden_states": torch.randn(4, 6, 16), "attention_mask": torch.ones(4, 6, dtype=torch.long)}
    own = {name: p.detach() for name, p in model.blocks.named_parameters()}
    torch.testing.assert_close(model.features(batch, own), model.features(batch))
    doubled = {name: 2 * p for name, p in own.items()}
    moved = model.features(batch, doubled)
    with torch.no_grad():
        for name, p in model.blocks.named_parameters():
            p.copy_(doubled[name])
    torch.testing.assert_close(moved, model.features(batch))


def _class_mean_distance(model, memory, real, columns):
    features, real_features = _features(model, memory), _features(model, real)
    labels, real_labels = memory.targets[:, columns].argmax(1), real.targets[:, columns].argmax(1)
    return sum(float((features[labels == c].mean(0) - real_features[real_labels == c].mean(0)).pow(2).sum())
               for c in range(3))


def test_mean_matching_moves_herdings_rows_onto_the_class_means_with_hard_labels(tiny_bert):
    model, real = _learner_and_task(tiny_bert)
    picks = herding_rows_per_class(_features(model, real), real.targets[:, 2:].argmax(1), 3, 1)
    herding = real.subset(picks)
    settings = LearnerDistillConfig(objective="mean_matching", outer_steps=150, lr_inputs=0.05)
    memory, losses = distil_for_learner(model, real, slice(2, 5), 1, settings, "herding")
    # Its first loss is herding's own distance to the class means, and the rows end far nearer them than herding's.
    assert losses[0] == pytest.approx(_class_mean_distance(model, herding, real, slice(2, 5)), rel=1e-4)
    assert _class_mean_distance(model, memory, real, slice(2, 5)) < 0.1 * losses[0]
    assert torch.equal(memory.targets, real.targets[picks])  # one-hot, the rows' own classes
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    noisy, noisy_losses = distil_for_learner(model, real, slice(2, 5), 1, dataclasses.replace(
        settings, weight_noise=0.05, real_batch_size=12), "herding")
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())  # the noise is never written back
    assert sum(noisy_losses[-10:]) < sum(noisy_losses[:10])
    assert not torch.allclose(noisy.hidden_states, memory.hidden_states)
