"""The replay memories' extra loss (continual.memory_loss): its targets, its value, and its effect in a run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from condense.continual.strategies import ContinualClassifier, run_strategy
from condense.continual.data import LabelLayout, avalanche_dataset, collate
from condense.continual.plugins import MemoryLoss
from condense.config.schema import ContinualConfig, MemoryLossConfig
from test_continual import _examples, _sequence_data, _settings  # tests/ is on sys.path (rootdir conftest)


def test_label_targets_keep_one_hot_rows_and_temper_soft_ones():
    rows = torch.tensor([[0.0, 1.0, 0.0], [0.64, 0.36, 0.0]])
    tempered = MEMORY_TARGETS["labels"](rows, torch.zeros(2, 3), 2.0)
    # T = 2: p^(1/2) renormalised, so 0.64 : 0.36 becomes 0.8 : 0.6; a zero stays zero.
    assert torch.allclose(tempered, torch.tensor([[0.0, 1.0, 0.0], [0.8 / 1.4, 0.6 / 1.4, 0.0]]))
    logits = torch.tensor([[2.0, 0.0, -2.0]])
    assert torch.allclose(MEMORY_TARGETS["logits"](rows[:1], logits, 2.0), torch.tensor([[1.0, 0.0, -1.0]]).softmax(1))


@pytest.mark.parametrize("targets", ["labels", "logits"])
def test_the_memory_loss_adds_the_tempered_kl_on_a_memory_batch(tiny_bert, targets):
    torch.manual_seed(0)
    layout = LabelLayout("class", [2, 2])
    model = ContinualClassifier(tiny_bert, 1, layout).eval()  # no dropout: forwards here and in the plugin agree
    memory = _examples(4, 5, 0, layout, 2)
    memory.targets[:, :2] = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])  # distilled soft labels
    dataset = avalanche_dataset(memory, layout)
    buffer = SimpleNamespace(buffer=dataset)
    plugin = MemoryLoss(buffer, MemoryLossConfig(weight=0.5, targets=targets, temperature=2.0, batch_size=3))
    strategy = SimpleNamespace(model=model, loss=torch.tensor(1.0))
    plugin.after_training_exp(strategy)
    rows = [dataset[i] for i in range(4)]
    batch, _, _ = collate(rows)
    with torch.no_grad():
        stored = model(batch)
    assert torch.equal(plugin.logits, stored)  # the model's logits as the experience ended, one row per example

    # Training moves the model; the loss then pulls its predictions on the drawn rows back to the targets.
    with torch.no_grad():
        model.heads[0].bias += torch.tensor([1.0, -1.0, 0.5, 0.0])
    torch.manual_seed(3)
    picks = torch.randint(4, (3,)).tolist()
    torch.manual_seed(3)
    plugin.before_backward(strategy)
    logits = model(collate([rows[i] for i in picks])[0])
    wanted = (memory.targets[picks].clamp_min(1e-12).log() / 2).masked_fill(memory.targets[picks] == 0, -torch.inf).softmax(1) \
        if targets == "labels" else (stored[picks] / 2).softmax(1)
    expected = 1.0 + 0.5 * 4 * F.kl_div((logits / 2).log_softmax(1), wanted, reduction="batchmean")
    assert strategy.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert strategy.loss.item() > 1.0
    strategy.loss.backward()
    assert model.heads[0].weight.grad is not None and model.heads[0].weight.grad.abs().sum() > 0


def test_a_run_with_the_memory_loss_differs_from_one_without_only_in_training(tiny_bert):
    def run(weight: float) -> dict:
        settings = _settings(memory_loss=MemoryLossConfig(weight=weight, targets="labels"))
        return run_strategy("distilled_replay", tiny_bert, _sequence_data(), settings, seed=0)

    off, again, on = run(0.0), run(0.0), run(1.0)
    assert off["accuracy_matrix"] == again["accuracy_matrix"]
    assert off["initial_accuracy"] == on["initial_accuracy"]
    # The first experience has an empty memory, so the loss changes nothing until the second one starts.
    assert off["curve"][: len(off["curve"]) // 2] == on["curve"][: len(on["curve"]) // 2]
    assert off["memory_fit"][0] == on["memory_fit"][0]
    assert off["memory_fit"][1]["loss"] != on["memory_fit"][1]["loss"]  # the second experience trained otherwise


def test_the_memory_loss_config_is_checked():
    from condense.config.parsing import ConfigError, compose

    with pytest.raises(ConfigError, match="continual.memory_loss.targets='soft' is not allowed"):
        compose("run", ["continual.memory_loss.targets=soft"])
    with pytest.raises(ConfigError, match="continual.memory_loss.temperature=0.0 must be"):
        compose("run", ["continual.memory_loss.temperature=0"])
    assert ContinualConfig().memory_loss.weight == 0.0  # off unless asked for


def test_the_asymmetric_loss_scores_incoming_rows_over_their_task_and_replayed_rows_over_all():

    logits = torch.tensor([[2.0, 1.0, 0.5, -0.5], [0.0, 3.0, 1.0, 2.0], [1.0, -1.0, 2.0, 0.0]])
    targets = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])

    def loss(layout, logits, task_ids):
        strategy = SimpleNamespace(experience=SimpleNamespace(current_experience=1), mb_output=logits, mb_y=targets,
                                   mbatch=[{"task_ids": torch.tensor(task_ids)}], loss=None)
        AsymmetricLoss(layout).before_backward(strategy)
        return strategy.loss

    # Class scenario, task 1 = columns 2-3: rows 0 and 1 are incoming (scored over columns 2-3), row 2 is replayed.
    incoming = F.cross_entropy(logits[:2, 2:], targets[:2, 2:], reduction="sum")
    replayed = F.cross_entropy(logits[2:], targets[2:], reduction="sum")
    assert loss(LabelLayout("class", [2, 2]), logits, [1, 1, 0]).item() == pytest.approx(((incoming + replayed) / 3).item())
    assert loss(LabelLayout("class", [2, 2]), logits, [1, 1, 0]).item() < F.cross_entropy(logits, targets).item()
    # Per-task heads: every row is scored over its own task's head already, so the loss is plain cross-entropy.
    head_targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    strategy = SimpleNamespace(experience=SimpleNamespace(current_experience=1), mb_output=logits[:, :2],
                               mb_y=head_targets, mbatch=[{"task_ids": torch.tensor([1, 1, 0])}], loss=None)
    AsymmetricLoss(LabelLayout("task", [2, 2])).before_backward(strategy)
    assert strategy.loss.item() == pytest.approx(F.cross_entropy(logits[:, :2], head_targets).item())


def test_a_run_with_the_asymmetric_loss_trains_otherwise_only_in_the_class_scenario(tiny_bert):
    def run(scenario: str, asymmetric: bool) -> dict:
        settings = _settings(asymmetric_loss=asymmetric)
        return run_strategy("random_replay", tiny_bert, _sequence_data(scenario), settings, seed=0)

    assert run("task", True)["accuracy_matrix"] == run("task", False)["accuracy_matrix"]
    plain, asymmetric = run("class", False), run("class", True)
    assert plain["memory_fit"][1]["loss"] != asymmetric["memory_fit"][1]["loss"]
