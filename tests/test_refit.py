"""Re-fitting the heads on the replay memory (continual.refit): what it trains, on what, and when."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from condense.continual.strategies import ContinualClassifier, run_strategy
from condense.continual.data import LabelLayout, avalanche_dataset, collate
from condense.continual.refit import MemoryRefit
from condense.config.schema import ContinualConfig, RefitConfig
from test_continual import _examples, _sequence_data, _settings  # tests/ is on sys.path (rootdir conftest)


def _strategy(model, experience: int) -> SimpleNamespace:
    return SimpleNamespace(model=model, experience=SimpleNamespace(current_experience=experience))


def _memory(layout: LabelLayout):
    """Two rows of each class of both tasks, task 0's with soft labels as a distilled set has."""
    first, second = _examples(4, 5, 0, layout, 2), _examples(4, 5, 1, layout, 2)
    first.targets[:, :2] = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])
    rows = [avalanche_dataset(e, layout) for e in (first, second)]
    return SimpleNamespace(buffer=[row for dataset in rows for row in (dataset[i] for i in range(len(dataset)))])


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_the_refit_is_full_batch_adam_on_the_heads_over_the_memorys_frozen_features(tiny_bert, scenario):
    torch.manual_seed(0)
    layout = LabelLayout(scenario, [2, 2])
    model = ContinualClassifier(tiny_bert, 1, layout).train()
    memory = _memory(layout)
    blocks_before = {k: v.clone() for k, v in model.blocks.state_dict().items()}
    expected = ContinualClassifier(tiny_bert, 1, layout)
    expected.load_state_dict(model.state_dict())

    plugin = MemoryRefit(memory, RefitConfig(steps=5, lr=0.05, start="current"))
    plugin.after_training_exp(_strategy(model, 1))

    # The same five steps by hand: Adam on the heads alone, the blocks in eval mode and unchanged.
    batch, targets, _ = collate(memory.buffer)
    expected.eval()
    with torch.no_grad():
        features = expected.features(batch)
    optimizer = torch.optim.Adam(expected.heads.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(expected.classify(features, batch["task_ids"]), targets)
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


def test_the_first_experience_and_zero_steps_leave_the_heads_alone(tiny_bert):
    torch.manual_seed(0)
    layout = LabelLayout("class", [2, 2])
    model = ContinualClassifier(tiny_bert, 1, layout)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    MemoryRefit(_memory(layout), RefitConfig(steps=5)).after_training_exp(_strategy(model, 0))
    MemoryRefit(_memory(layout), RefitConfig(steps=0)).after_training_exp(_strategy(model, 1))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_fresh_refit_starts_from_re_initialised_heads(tiny_bert):
    layout = LabelLayout("class", [2, 2])
    models = []
    for trained_bias in (0.0, 5.0):  # whatever the heads had learned, a fresh refit forgets it
        torch.manual_seed(0)
        model = ContinualClassifier(tiny_bert, 1, layout)
        with torch.no_grad():
            model.heads[0].bias += trained_bias
        torch.manual_seed(1)
        MemoryRefit(_memory(layout), RefitConfig(steps=3, start="fresh")).after_training_exp(_strategy(model, 1))
        models.append(model)
    torch.testing.assert_close(models[0].heads[0].bias, models[1].heads[0].bias)


def test_hard_targets_refit_on_each_rows_most_likely_class(tiny_bert):
    layout = LabelLayout("class", [2, 2])
    soft = _memory(layout)
    one_hot = SimpleNamespace(buffer=[(inputs, F.one_hot(target.argmax(), len(target)).float(), task)
                                      for inputs, target, task in soft.buffer])
    heads = []
    for memory, targets in ((soft, "hard"), (one_hot, "memory"), (soft, "memory")):
        torch.manual_seed(0)
        model = ContinualClassifier(tiny_bert, 1, layout)
        MemoryRefit(memory, RefitConfig(steps=3, targets=targets)).after_training_exp(_strategy(model, 1))
        heads.append(model.heads[0].weight.detach())
    torch.testing.assert_close(heads[0], heads[1])
    assert not torch.allclose(heads[0], heads[2])  # the soft labels of task 0's rows train otherwise


def test_a_run_with_the_refit_changes_only_what_follows_the_second_experience(tiny_bert):
    def run(steps: int) -> dict:
        return run_strategy("distilled_replay", tiny_bert, _sequence_data(), _settings(refit=RefitConfig(steps=steps)), seed=0)

    off, on = run(0), run(20)
    assert off["accuracy_matrix"][0] == on["accuracy_matrix"][0]  # after the first experience: no refit yet
    assert off["memory_fit"][0] == on["memory_fit"][0]
    assert on["memory_fit"][1]["loss"] < off["memory_fit"][1]["loss"]  # the refit heads fit the memory better


def test_the_refit_config_is_checked_and_off_by_default():
    from condense.config.parsing import ConfigError, compose

    with pytest.raises(ConfigError, match="continual.refit.start='scratch' is not allowed"):
        compose("run", ["continual.refit.start=scratch"])
    with pytest.raises(ConfigError, match="continual.refit.targets='soft' is not allowed"):
        compose("run", ["continual.refit.targets=soft"])
    with pytest.raises(ConfigError, match="continual.refit.lr=0.0 must be"):
        compose("run", ["continual.refit.lr=0"])
    assert ContinualConfig().refit.steps == 0


def test_the_refit_section_gives_each_variants_accuracy_and_its_gain_paired_by_seed():
    from condense.bench.refit_report import refit_section

    def run(seed: int, none: list[float], refit: list[float]) -> dict:
        return {"strategy": "herding_replay", "seed": seed, "scores": {"none": none, "current": refit}}

    results = {
        "sequence": ["a", "b"], "scenario": "class", "command": "python benchmarks/refit_validation.py",
        "config": {"continual": {"memory_per_class": 1, "train_examples_per_task": 2000}},
        "machine": {"platform": "linux", "cpu_count": 2, "torch_threads": 1}, "seconds": 60.0,
        "validation_rows_per_task": 300, "variants": {"current": {}}, "strategies": ["herding_replay"],
        "runs": [run(0, [0.5, 0.9], [0.7, 0.8]), run(1, [0.6, 0.8], [0.7, 0.8])],
    }
    lines = refit_section(results)
    assert lines[0] == "## Re-fitting the heads on the memory: a → b, class-incremental (validation, 2000 training rows per task)"
    # First task: 55 → 70 (+20 and +10 by seed); average: 70 → 75 (+5 and +5).
    assert "| herding_replay | none | 55.0 ± 7.1 | — | 70.0 ± 0.0 | — |" in lines
    assert "| herding_replay | current | 70.0 ± 0.0 | +15.0 ± 7.1 | 75.0 ± 0.0 | +5.0 ± 0.0 |" in lines
    assert '- herding_replay: best refit by average accuracy is "current", +5.0 points on average and +15.0 on a.' in lines


def test_the_validation_probe_scores_every_variant_without_changing_the_run(tiny_bert):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "refit_validation.py"
    spec = importlib.util.spec_from_file_location("refit_validation", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    data = _sequence_data()
    probe = bench.RefitVariants(1, data.test)
    probed = run_strategy("herding_replay", tiny_bert, data, _settings(), seed=0, probes=[probe])
    plain = run_strategy("herding_replay", tiny_bert, _sequence_data(), _settings(), seed=0)
    assert probed["accuracy_matrix"] == plain["accuracy_matrix"]  # the variants ran on copies
    assert list(probe.scores) == ["none", *bench.VARIANTS]
    assert probe.scores["none"] == plain["accuracy_matrix"][-1]  # here the validation rows are the test rows
