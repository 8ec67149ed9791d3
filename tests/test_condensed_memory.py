"""The memory condensed against the learner (condensed_replay): its objective, its steps, and a run."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_continual import _sequence_data, _settings  # tests/ is on sys.path (rootdir conftest)

from condense.condensed_memory import CondensedBuffer, gradient_mismatch, loss_gradients
from condense.continual import ContinualClassifier, run_strategy
from condense.schema import CondensationConfig


def _params(model):
    return {name: p.detach().requires_grad_(True) for name, p in model.named_parameters() if p.requires_grad}


def _inputs(examples):
    return {"hidden_states": examples.hidden_states, "attention_mask": examples.attention_mask, "task_ids": examples.task_ids}


def test_the_mismatch_is_zero_for_the_real_batch_itself_and_differentiable_in_the_memory(tiny_bert):
    torch.manual_seed(0)
    data = _sequence_data()
    model = ContinualClassifier(tiny_bert, 1, data.layout).eval()
    real = data.train[0]
    params = _params(model)
    real_grads = loss_gradients(model, params, _inputs(real), real.targets)
    same = gradient_mismatch(model, params, _inputs(real), real.targets, real_grads)
    assert same.item() == pytest.approx(0.0, abs=1e-5)

    memory = real.subset(torch.tensor([0, 1]))
    hidden = memory.hidden_states.clone().requires_grad_(True)
    mismatch = gradient_mismatch(model, params, {**_inputs(memory), "hidden_states": hidden}, memory.targets, real_grads)
    assert 0.0 < mismatch.item() <= 2.0 * len(params)  # each tensor's term is 1 - cos, in [0, 2]
    (grad,) = torch.autograd.grad(mismatch, hidden)
    assert grad.abs().sum() > 0


def test_condensing_steps_lower_the_mismatch_on_a_fixed_batch(tiny_bert):
    torch.manual_seed(0)
    data = _sequence_data()
    model = ContinualClassifier(tiny_bert, 1, data.layout).eval()
    buffer = CondensedBuffer(data, 1, 2, CondensationConfig(steps=30, lr=0.05))
    experience = type("Experience", (), {"current_experience": 0})()
    real = data.train[0]
    strategy = type("Strategy", (), {})()
    strategy.model, strategy.experience = model, experience
    strategy.clock = type("Clock", (), {"train_exp_iterations": 0})()
    strategy.mbatch = [dict(_inputs(real)), real.targets, torch.zeros(len(real), dtype=torch.long)]
    buffer.before_training_exp(strategy)
    start = buffer.current.hidden_states.detach().clone()
    labels = buffer.current.targets.argmax(1).tolist()
    assert sorted(labels) == [0, 1]  # one real example of each of the first task's classes to start from
    buffer.after_training_iteration(strategy)
    assert len(buffer.matches) == 30 and buffer.matches[-1] < buffer.matches[0]
    assert not torch.equal(buffer.current.hidden_states.detach(), start)
    buffer.post_adapt(strategy, experience)
    assert len(buffer.buffer) == 2 and buffer.current is None
    kept_states = buffer.buffer[0][0]["hidden_states"]
    assert kept_states.requires_grad is False and kept_states.device.type == "cpu"


def test_a_condensed_replay_run_keeps_memory_per_class_and_is_reproducible(tiny_bert):
    settings = dataclasses.replace(_settings(), condensation=CondensationConfig(steps=2))
    first = run_strategy("condensed_replay", tiny_bert, _sequence_data(), settings, seed=0)
    again = run_strategy("condensed_replay", tiny_bert, _sequence_data(), settings, seed=0)
    assert [fit["examples"] for fit in first["memory_fit"]] == [2, 4]  # 1 per class of each 2-class task
    assert first["accuracy_matrix"] == again["accuracy_matrix"] and first["memory_fit"] == again["memory_fit"]
    random = run_strategy("random_replay", tiny_bert, _sequence_data(), settings, seed=0)
    assert first["memory_fit"][0]["loss"] != random["memory_fit"][0]["loss"]  # a memory of its own, not real rows
