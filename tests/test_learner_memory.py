"""The memory distilled against the learner's own blocks after each task (learner_distilled_replay)."""

from __future__ import annotations

import torch

from condense.continual import ContinualClassifier, LabelLayout, run_strategy
from condense.learner_memory import LearnerDistilledBuffer, distil_for_learner
from condense.schema import LearnerDistillConfig
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
