"""What replay adds to Avalanche's templates: the DER term (continual.memory_loss) and the heads' re-fit on the memory
(continual.refit); what each computes, and what each changes in a run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from condense.config.parsing import ConfigError, compose
from condense.config.schema import MemoryLossConfig, RefitConfig
from condense.continual.data import LabelLayout, avalanche_dataset, collate
from condense.continual.model import ContinualClassifier
from condense.continual.plugins import AsymmetricLoss, MemoryLoss, MemoryRefit
from condense.continual.strategies import run_strategy
from test_continual import _examples, _sequence_data, _settings  # tests/ is on sys.path (rootdir conftest)


def test_the_memory_loss_adds_the_tempered_kl_to_the_logits_each_row_was_stored_with(tiny_bert):
    torch.manual_seed(0)
    layout = LabelLayout("class", [2, 2])
    model = ContinualClassifier(tiny_bert, 1, layout).eval()  # no dropout: forwards here and in the plugin agree
    memory = _examples(4, 5, 0, layout, 2)
    dataset = avalanche_dataset(memory, layout)
    plugin = MemoryLoss(SimpleNamespace(buffer=dataset), MemoryLossConfig(weight=0.5, temperature=2.0, batch_size=3))
    strategy = SimpleNamespace(model=model, loss=torch.tensor(1.0))
    plugin.after_training_exp(strategy)
    rows = [dataset[i] for i in range(4)]
    with torch.no_grad():
        stored = model(collate(rows)[0])
    assert torch.equal(plugin.logits, stored)  # the model's logits as the experience ended, one row per example

    # Training moves the model; the loss then pulls its predictions on the drawn rows back to the stored ones.
    with torch.no_grad():
        model.heads[0].bias += torch.tensor([1.0, -1.0, 0.5, 0.0])
    torch.manual_seed(3)
    picks = torch.randint(4, (3,)).tolist()
    torch.manual_seed(3)
    plugin.before_backward(strategy)
    logits = model(collate([rows[i] for i in picks])[0])
    expected = 1.0 + 0.5 * 4 * F.kl_div((logits / 2).log_softmax(1), (stored[picks] / 2).softmax(1), reduction="batchmean")
    assert strategy.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert strategy.loss.item() > 1.0
    strategy.loss.backward()
    assert model.heads[0].weight.grad.abs().sum() > 0


def test_the_memory_loss_adds_nothing_while_the_memory_is_empty(tiny_bert):
    layout = LabelLayout("class", [2, 2])
    plugin = MemoryLoss(SimpleNamespace(buffer=[]), MemoryLossConfig(weight=1.0))
    strategy = SimpleNamespace(model=ContinualClassifier(tiny_bert, 1, layout), loss=torch.tensor(1.0))
    plugin.before_backward(strategy)
    assert strategy.loss.item() == 1.0


def test_a_run_with_the_memory_loss_differs_from_one_without_only_after_the_first_task(tiny_bert):
    def run(weight: float) -> dict:
        settings = _settings(memory_loss=MemoryLossConfig(weight=weight), refit=RefitConfig(steps=0))
        return run_strategy("distilled_text_replay", tiny_bert, _sequence_data(), settings, seed=0)

    off, again, on = run(0.0), run(0.0), run(1.0)
    assert off["accuracy_matrix"] == again["accuracy_matrix"]
    assert off["initial_accuracy"] == on["initial_accuracy"]
    # The first experience has an empty memory, so the loss changes nothing until the second one starts.
    assert off["curve"][: len(off["curve"]) // 2] == on["curve"][: len(on["curve"]) // 2]
    assert off["memory_fit"][0] == on["memory_fit"][0]
    assert off["memory_fit"][1]["loss"] != on["memory_fit"][1]["loss"]  # the second experience trained otherwise


def _strategy(model, experience: int) -> SimpleNamespace:
    return SimpleNamespace(model=model, experience=SimpleNamespace(current_experience=experience))


def _memory(layout: LabelLayout):
    """Two rows of each class of both tasks, task 0's with soft labels as a distilled set has."""
    first, second = _examples(4, 5, 0, layout, 2), _examples(4, 5, 1, layout, 2)
    first.targets[:, :2] = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])
    rows = [avalanche_dataset(e, layout) for e in (first, second)]
    return SimpleNamespace(buffer=[row for dataset in rows for row in (dataset[i] for i in range(len(dataset)))])


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_the_refit_is_full_batch_adam_on_the_heads_towards_each_rows_class(tiny_bert, scenario):
    torch.manual_seed(0)
    layout = LabelLayout(scenario, [2, 2])
    model = ContinualClassifier(tiny_bert, 1, layout).train()
    memory = _memory(layout)
    blocks_before = {k: v.clone() for k, v in model.blocks.state_dict().items()}
    expected = ContinualClassifier(tiny_bert, 1, layout)
    expected.load_state_dict(model.state_dict())

    plugin = MemoryRefit(memory, RefitConfig(steps=5, lr=0.05))
    plugin.after_training_exp(_strategy(model, 1))

    # The same five steps by hand: Adam on the heads alone against each row's most likely class, blocks frozen.
    batch, targets, _ = collate(memory.buffer)
    expected.eval()
    with torch.no_grad():
        features = expected.features(batch)
    optimizer = torch.optim.Adam(expected.heads.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(expected.classify(features, batch["task_ids"]), targets.argmax(1))
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, value in model.heads.state_dict().items():
        torch.testing.assert_close(value, expected.heads.state_dict()[name])
    assert all(torch.equal(v, blocks_before[k]) for k, v in model.blocks.state_dict().items())
    assert model.training  # left in the mode it was found in
    assert plugin.losses[0]["before"] == pytest.approx(losses[0])
    assert plugin.losses[0]["after"] < plugin.losses[0]["before"]  # it fits the memory better than the model did


def test_the_first_experience_is_left_as_trained(tiny_bert):
    torch.manual_seed(0)
    model = ContinualClassifier(tiny_bert, 1, LabelLayout("class", [2, 2]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    MemoryRefit(_memory(LabelLayout("class", [2, 2])), RefitConfig(steps=5)).after_training_exp(_strategy(model, 0))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_run_with_the_refit_changes_only_what_follows_the_second_experience(tiny_bert):
    def run(steps: int) -> dict:
        settings = _settings(refit=RefitConfig(steps=steps))
        return run_strategy("distilled_text_replay", tiny_bert, _sequence_data(), settings, seed=0)

    off, on = run(0), run(20)
    assert off["accuracy_matrix"][0] == on["accuracy_matrix"][0]  # after the first experience: no refit yet
    assert off["memory_fit"][0] == on["memory_fit"][0]
    assert on["memory_fit"][1]["loss"] < off["memory_fit"][1]["loss"]  # the refit heads fit the memory better


def test_the_replay_settings_are_checked():
    with pytest.raises(ConfigError, match="continual.memory_loss.temperature=0.0 must be"):
        compose("run", ["continual.memory_loss.temperature=0"])
    with pytest.raises(ConfigError, match="continual.refit.lr=0.0 must be"):
        compose("run", ["continual.refit.lr=0"])
    with pytest.raises(ConfigError, match="continual.refit.steps=-1 must be at least 0"):
        compose("run", ["continual.refit.steps=-1"])
    # The options that lost left the schema with their strategies (docs/results/experimental.md).
    for gone in ("continual.memory_loss.targets=labels", "continual.refit.start=fresh", "continual.feature_anchor.weight=1"):
        with pytest.raises(Exception, match=f"Could not override '{gone.split('=')[0]}'"):
            compose("run", [gone])


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
