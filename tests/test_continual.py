"""The continual harness on tiny models: label layouts, dict mini-batches, heads, registries, buffers, devices, and
whole sequences."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from condense.continual import strategies as continual
from condense.jobs import sequence as sequence_module
from condense.config.parsing import compose, task_config
from condense.continual.strategies import OPTIMIZERS, STRATEGIES, run_strategy
from condense.continual.data import SCENARIOS, ExampleRows, Examples, LabelLayout, SequenceData, avalanche_dataset, benchmark, collate
from condense.continual.model import ContinualClassifier, loss_and_accuracy
from condense.models.encoders import Encoder, hidden_states_below, load_encoder, top_blocks
from condense.continual.memories import MEMORIES, MeanMatchedBuffer, RealExamplesBuffer
from condense.config.schema import ContinualConfig, MeanMatchingConfig, RefitConfig
from condense.jobs.sequence import run_sequence
from condense.report.plots import MERGED_LINES


def test_label_layouts_place_each_task_in_its_head_or_its_block():
    probabilities = torch.tensor([[0.25, 0.75]])
    task = LabelLayout("task", [3, 2])
    joint = LabelLayout("class", [3, 2])
    assert task.width == 3 and joint.width == 5
    assert task.targets(1, probabilities).tolist() == [[0.25, 0.75, 0.0]]
    assert joint.targets(1, probabilities).tolist() == [[0.0, 0.0, 0.0, 0.25, 0.75]]
    assert (task.task_label(1), joint.task_label(1)) == (1, 0)
    with pytest.raises(ValueError, match=r"continual.scenarios: unknown 'domain'; choose from \['class', 'task'\]"):
        LabelLayout("domain", [2])


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_top_blocks_on_cached_hidden_states_equal_the_whole_model(tiny_model_dirs, arch):
    encoder = load_encoder(str(tiny_model_dirs[arch]))
    ids = torch.randint(1000, 2000, (3, 7))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])
    full = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
    top = top_blocks(encoder, 1).eval()
    below = hidden_states_below(encoder, 1, mask, input_ids=ids)
    resumed = top(inputs_embeds=below, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(resumed[mask.bool()], full[mask.bool()], rtol=1e-5, atol=1e-5)
    assert all(p.requires_grad for p in top.parameters())
    assert sum(p.numel() for p in top.parameters()) < sum(p.numel() for p in encoder.model.parameters()) / 2
    with pytest.raises(ValueError, match=r"trainable layers must be in \[1, 2\]"):
        top_blocks(encoder, 3)


def _examples(n: int, length: int, task: int, layout: LabelLayout, classes: int) -> Examples:
    mask = torch.zeros(n, length, dtype=torch.long)
    for i in range(n):
        mask[i, : 2 + i % (length - 1)] = 1
    labels = torch.arange(n) % classes
    return Examples(torch.randn(n, length, 16), mask, layout.targets(task, torch.eye(classes)[labels]), torch.full((n,), task))


def test_dict_minibatches_are_padded_to_their_longest_row_and_stay_on_the_rows_device():
    layout = LabelLayout("task", [3, 2])
    examples = _examples(5, 6, 1, layout, 2)
    dataset = avalanche_dataset(examples, layout)
    rows = [dataset[i] for i in range(3)]
    batch, targets, task_labels = collate(rows)
    assert batch["hidden_states"].shape == (3, 4, 16) and batch["attention_mask"].sum(1).tolist() == [2, 3, 4]
    for i in range(3):  # each row's states cut to the batch's width, masked past its own length
        assert batch["hidden_states"][i].equal(examples.hidden_states[i, :4])
        assert batch["attention_mask"][i].equal(examples.attention_mask[i, :4])
    device = examples.hidden_states.device
    assert {t.device for t in (*batch.values(), targets, task_labels)} == {device}
    assert batch.to(device)["task_ids"].tolist() == [1, 1, 1]  # BatchEncoding: Avalanche calls .to(device)
    assert task_labels.tolist() == [1, 1, 1] and targets.tolist() == examples.targets[:3].tolist()
    assert list(dataset.targets) == [0, 1, 0, 1, 0]


def test_task_heads_route_rows_and_give_other_tasks_no_probability(tiny_bert):
    layout = LabelLayout("task", [3, 2])
    model = ContinualClassifier(tiny_bert, 1, layout)
    a, b = _examples(2, 5, 0, layout, 3), _examples(2, 5, 1, layout, 2)
    rows = [(*avalanche_dataset(e, layout)[i],) for e in (a, b) for i in range(2)]
    batch, targets, _ = collate(rows)
    logits = model(batch)
    assert logits.shape == (4, 3)
    assert torch.all(logits[2:, 2] == -1e4) and torch.all(logits[:2] > -1e3)
    assert torch.softmax(logits[2:], 1)[:, 2].tolist() == [0.0, 0.0]  # exactly: exp(-1e4) underflows
    loss = torch.nn.CrossEntropyLoss()(logits, targets)
    # The task-1 rows' loss is the cross-entropy over their own head's two classes alone.
    own = torch.nn.functional.cross_entropy(logits[2:, :2], targets[2:, :2], reduction="sum")
    whole = torch.nn.functional.cross_entropy(logits[2:], targets[2:], reduction="sum")
    torch.testing.assert_close(whole, own)
    loss.backward()
    assert model.heads[0].weight.grad.abs().sum() > 0 and model.heads[1].weight.grad.abs().sum() > 0
    joint = ContinualClassifier(tiny_bert, 1, LabelLayout("class", [3, 2]))
    assert len(joint.heads) == 1 and joint(batch).shape == (4, 5)


class _FirstTokenLogits(torch.nn.Module):
    """A model whose logits are the first token's first three hidden values, for losses known in closed form."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return batch["hidden_states"][:, 0, :3]


def test_loss_and_accuracy_are_the_mean_cross_entropy_and_fraction_correct_over_batches():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
    rows = [({"hidden_states": logits[i].repeat(2, 1), "attention_mask": torch.ones(2, dtype=torch.long), "task_ids": 0},
             targets[i], 0) for i in range(3)]
    # Row 0: -log(e^2 / (e^2 + 2)); row 1: -log(1 / (e + 2)); row 2: log 3 (uniform logits, any target).
    expected = (math.log(1 + 2 * math.exp(-2)) + math.log(math.e + 2) + math.log(3)) / 3
    for batch_size in (2, 128):  # summed over batches, then divided by the number of rows
        loss, fit = loss_and_accuracy(_FirstTokenLogits(), rows, batch_size=batch_size)
        assert loss == pytest.approx(expected, rel=1e-6)
        assert fit == pytest.approx(2 / 3)  # row 1 predicts class 1 against 0; row 2's tie picks class 0, as its target


def _settings(**changes) -> ContinualConfig:
    values = dict(memory_per_class=1, trainable_layers=1, batch_size=4, replay_batch_size=2, epochs=1, optimizer="adam",
                  lr=1e-3, curve_points_per_experience=2, refit=RefitConfig(steps=3),
                  mean_matched_replay=MeanMatchingConfig(steps=3))
    return ContinualConfig(**{**values, **changes})


def _sequence_data(scenario: str = "class") -> SequenceData:
    torch.manual_seed(0)
    layout = LabelLayout(scenario, [2, 2])
    per_task = [(_examples(8, 5, t, layout, 2), _examples(4, 5, t, layout, 2)) for t in range(2)]
    texts = [_examples(2, 5, t, layout, 2) for t in range(2)]
    merged_sets = Examples(*(torch.cat([getattr(e, f) for e in texts]) for f in ("hidden_states", "attention_mask", "targets", "task_ids")))
    merged_sets_lrs = torch.tensor([[0.5, 0.1], [0.4, 0.2]])  # two learned steps: (head, encoder)
    # The super-dataset: soft labels with mass on the other task's classes (class layout), three learned steps.
    merged = _examples(6, 5, 0, layout, 2)
    merged.task_ids[3:] = 1
    merged.targets[:] = torch.softmax(torch.randn(6, layout.width), 1)
    merged_lrs = torch.tensor([[0.3, 0.05], [0.2, 0.1], [0.1, 0.0]])  # (head, encoder) per step
    return SequenceData(layout, ["a", "b"], [tr for tr, _ in per_task], [te for _, te in per_task],
                        [te.subset(torch.arange(2)) for _, te in per_task], texts, merged, merged_lrs, merged_sets,
                        merged_sets_lrs)


def test_the_registries_are_the_config_choices_and_build_what_they_name(tiny_bert):
    assert tuple(STRATEGIES) == ("naive", "random_replay", "herding_replay", "distilled_text_replay", "mean_matched_replay",
                                 "joint", "super_dataset", "merged_sets")
    assert tuple(SCENARIOS) == ("task", "class") and tuple(OPTIMIZERS) == ("adam", "sgd")
    data = _sequence_data()
    model = ContinualClassifier(tiny_bert, 1, data.layout)
    bench = benchmark(data.train, data.test, data.layout)
    settings = _settings()
    plans = {name: build(model, data, bench, settings, 2) for name, build in STRATEGIES.items()}
    memories = {name: type(plan.memory).__name__ if plan.memory is not None else None for name, plan in plans.items()}
    assert memories == {"naive": None, "random_replay": "RealExamplesBuffer", "herding_replay": "RealExamplesBuffer",
                        "distilled_text_replay": "DistilledBuffer", "mean_matched_replay": "MeanMatchedBuffer",
                        "joint": None, "super_dataset": None, "merged_sets": None}
    assert [plan.template.__name__ for plan in plans.values()] == ["Naive"] * 5 + ["JointTraining", "Naive", "Naive"]
    assert [len(plan.train_on) for plan in plans.values()] == [2] * 5 + [1, 1, 1]  # a row of the accuracy matrix each
    assert [plan.epochs for plan in plans.values()] == [1] * 6 + [3, 2]  # the merged sets: an epoch per learned step
    assert len(plans["super_dataset"].train_on[0].dataset) == 6 and len(plans["merged_sets"].train_on[0].dataset) == 4
    assert type(plans["herding_replay"].memory.selection_strategy).__name__ == "HerdingSelectionStrategy"
    assert type(plans["random_replay"].memory.selection_strategy).__name__ == "RandomExemplarsSelectionStrategy"
    assert plans["distilled_text_replay"].memory.distilled[1][0][0]["hidden_states"].equal(data.distilled_text[1].hidden_states[0])
    assert plans["mean_matched_replay"].memory.settings == settings.mean_matched_replay
    # Only the strategies that read distilled data need it: the others build without it, those fail naming it.
    bare = dataclasses.replace(data, distilled_text=None, super_dataset=None, super_dataset_lrs=None, merged_sets=None,
                               merged_sets_lrs=None)
    for name, build in STRATEGIES.items():
        if name in ("distilled_text_replay", "super_dataset", "merged_sets"):
            with pytest.raises(ValueError, match=f"{name} needs"):
                build(model, bare, bench, settings, 2)
        else:
            build(model, bare, bench, settings, 2)
    assert set(MEMORIES) == {"random", "herding", "distilled_text", "mean_matched"}
    sgd = OPTIMIZERS["sgd"](model.parameters(), 0.5)
    assert type(sgd).__name__ == "SGD" and sgd.defaults["momentum"] == 0.9 and sgd.defaults["lr"] == 0.5
    assert type(OPTIMIZERS["adam"](model.parameters(), 0.5)).__name__ == "Adam"


@pytest.mark.parametrize(("name", "settings", "message"), [
    ("ewc", _settings(), r"continual.strategies: unknown 'ewc'; choose from \['distilled_text_replay', 'herding_replay', 'joint', .*'naive'"),
    ("naive", _settings(optimizer="rmsprop"), r"continual.optimizer: unknown 'rmsprop'; choose from \['adam', 'sgd'\]"),
])
def test_run_strategy_rejects_unknown_names_before_building_anything(tiny_bert, monkeypatch, name, settings, message):
    monkeypatch.setattr(continual, "ContinualClassifier", None)  # building a model would fail differently
    with pytest.raises(ValueError, match=message):
        run_strategy(name, tiny_bert, _sequence_data(), settings, seed=0)


def test_a_strategy_trains_where_the_encoder_is(tiny_bert, monkeypatch):
    # A CPU device object distinct from the default one: a harness that named its own device would not pass it on.
    here = torch.device(torch.empty(0).device.type, 0)
    monkeypatch.setattr(Encoder, "device", property(lambda self: here))
    seen, pinned = [], set()

    class Spy(continual.Naive):
        def __init__(self, **kwargs):
            seen.append(kwargs["device"])
            super().__init__(**kwargs)

        def make_train_dataloader(self, **kwargs):
            pinned.add(kwargs["pin_memory"])
            super().make_train_dataloader(**kwargs)

        def make_eval_dataloader(self, **kwargs):
            pinned.add(kwargs["pin_memory"])
            super().make_eval_dataloader(**kwargs)

    monkeypatch.setattr(continual, "Naive", Spy)
    result = run_strategy("random_replay", tiny_bert, _sequence_data(), _settings(), seed=0)
    assert seen == [here]
    # Never pinned: on CUDA, Avalanche would pin by default, and examples already on the device cannot be.
    assert pinned == {False}
    assert len(result["accuracy_matrix"]) == 2 and all(a * 4 == int(a * 4) for row in result["accuracy_matrix"] for a in row)
    assert [fit["examples"] for fit in result["memory_fit"]] == [2, 4]


def test_every_training_call_gets_the_configured_curve_points_however_many_iterations_it_runs(tiny_bert):
    # 8 rows a task in batches of 4: a task is 2 iterations, joint training 4; the super-dataset is one full batch per
    # learned step, 3 of them.
    settings = _settings(curve_points_per_experience=2)
    iterations = {name: [point["iteration"] for point in run_strategy(name, tiny_bert, _sequence_data(), settings, 0)["curve"]]
                  for name in ("naive", "joint", "super_dataset")}
    assert iterations == {"naive": [0, 1, 2, 3, 4], "joint": [0, 2, 4], "super_dataset": [0, 1, 2, 3]}


@pytest.fixture
def built_models(monkeypatch) -> list:
    """Every ContinualClassifier the harness builds, kept for the test to read its trained weights."""
    built = []

    class Kept(ContinualClassifier):
        def __init__(self, *args):
            super().__init__(*args)
            built.append(self)

    monkeypatch.setattr(continual, "ContinualClassifier", Kept)
    return built


def _full_batch_sgd(model, batch, targets, lrs, loss_of) -> None:
    """Plain SGD steps on the whole batch, at each step's (head, encoder) learning rates: the learned loop by hand."""
    for head_lr, encoder_lr in lrs:
        grads = torch.autograd.grad(loss_of(model(batch), targets), list(model.parameters()))
        with torch.no_grad():
            for (name, parameter), grad in zip(model.named_parameters(), grads):
                parameter -= (head_lr if name.startswith("heads.") else encoder_lr) * grad


def _assert_same_weights(trained: torch.nn.Module, expected: torch.nn.Module) -> None:
    weights = dict(trained.named_parameters())
    for name, parameter in expected.named_parameters():
        torch.testing.assert_close(weights[name], parameter, rtol=1e-4, atol=1e-6, msg=name)


def _one_mean_loss(tasks):
    """The loss the super-dataset was distilled with: one mean cross-entropy over its rows."""
    return lambda logits, targets: -(targets * torch.log_softmax(logits, 1)).sum(1).mean()


def _each_tasks_mean_loss(tasks):
    """The loss each merged set was distilled with: its own task's mean, summed over the sets."""
    return lambda logits, targets: sum(F.cross_entropy(logits[tasks == t], targets[tasks == t]) for t in (0, 1))


@pytest.mark.parametrize(("strategy", "seed", "loss_of_tasks"),
                         [("super_dataset", 5, _one_mean_loss), ("merged_sets", 3, _each_tasks_mean_loss)])
@pytest.mark.parametrize(("scenario", "head_only"), [("task", False), ("class", False), ("class", True)])
def test_a_merged_set_is_trained_by_its_own_loop_full_batch_sgd_at_its_learned_rates_on_its_distillation_loss(
        tiny_bert, built_models, strategy, seed, loss_of_tasks, scenario, head_only):
    data = _sequence_data(scenario)
    if head_only:  # sets distilled with the encoder frozen have one learning rate per step, the head's
        data = dataclasses.replace(data, **{f"{strategy}_lrs": getattr(data, f"{strategy}_lrs")[:, 0]})
    run_strategy(strategy, tiny_bert, data, _settings(), seed=seed)
    continual.RNGManager.set_random_seeds(seed)
    model = ContinualClassifier(tiny_bert, 1, data.layout).eval()  # the run's fresh model: same seed, same draws
    batch, targets, _ = collate([(*row, 0) for row in ExampleRows(getattr(data, strategy))])
    initial = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    lrs = getattr(data, f"{strategy}_lrs").tolist()
    _full_batch_sgd(model, batch, targets, lrs if not head_only else [(lr, 0.0) for lr in lrs], loss_of_tasks(batch["task_ids"]))
    _assert_same_weights(built_models[0], model)
    moved = {name for name, parameter in model.named_parameters() if not torch.equal(parameter, initial[name])}
    assert "heads.0.weight" in moved and any(name.startswith("blocks.") for name in moved) != head_only


@pytest.fixture
def sequence_config(tiny_sequence_overrides):
    def config(out, *overrides):
        return compose("run", [*tiny_sequence_overrides(out), *overrides])

    return config


def _is_count_over(value: float, total: int) -> bool:
    return value * total == pytest.approx(round(value * total), abs=1e-9)


def test_a_tiny_sequence_runs_every_strategy_and_writes_every_output(sequence_config, tmp_path):
    cfg = sequence_config(tmp_path / "run", "continual.scenarios=[task,class]", f"continual.strategies=[{','.join(STRATEGIES)}]")
    results = run_sequence(cfg)
    out = tmp_path / "run"
    for name in ("results.json", "results.md", "forgetting_curves.png", "accuracy_matrices.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["sequence"] == ["topics", "mood"] and set(saved["summary"]) == {"task", "class"}
    assert len(saved["runs"]) == 2 * len(STRATEGIES) * 2
    initial: dict = {}
    for run in saved["runs"]:
        matrix = run["accuracy_matrix"]
        sequential = run["strategy"] not in ("joint", "super_dataset", "merged_sets")
        assert len(matrix) == (2 if sequential else 1) and all(len(row) == 2 for row in matrix)
        # A model trained once on merged sets has no curve to draw: the figure shows its final accuracy as a line.
        assert sequential or run["strategy"] == "joint" or run["strategy"] in MERGED_LINES
        # 8 test examples per task: every accuracy is a count of them.
        assert all(_is_count_over(a, 8) for row in [*matrix, run["initial_accuracy"]] for a in row)
        # Every strategy starts from the same fresh model for a seed, so before training they all score the same.
        assert initial.setdefault((run["scenario"], run["seed"]), run["initial_accuracy"]) == run["initial_accuracy"]
        if sequential:
            # Avalanche's stream metrics agree with the accuracy matrix they were computed from.
            assert run["avalanche"]["bwt"] == pytest.approx(matrix[1][0] - matrix[0][0])
            assert run["avalanche"]["forgetting"] == pytest.approx(matrix[0][0] - matrix[1][0])
            assert run["avalanche"]["forward_transfer"] == pytest.approx(matrix[0][1] - run["initial_accuracy"][1])
            assert run["experience_starts"][0] == 0 and len(run["experience_starts"]) == 2
        assert run["curve"][0]["iteration"] == 0 and len(run["curve"][0]["accuracy"]) == 2
        assert all(_is_count_over(a, 4) for point in run["curve"] for a in point["accuracy"])
        if "replay" in run["strategy"]:
            assert [fit["examples"] for fit in run["memory_fit"]] == [6, 10]  # 2 per class: topics' 3, then mood's 2
            assert all(_is_count_over(fit["accuracy"], fit["examples"]) for fit in run["memory_fit"])
            assert all(0 < fit["loss"] < math.inf for fit in run["memory_fit"])
        else:
            assert run["memory_fit"] is None
    # Two sequential runs of one seed see the same first-task data in the same order before any memory is replayed.
    first = {run["strategy"]: run["curve"][0]["accuracy"] for run in saved["runs"] if (run["scenario"], run["seed"]) == ("class", 0)}
    assert len({tuple(curve) for curve in first.values()}) == 1
    summary = saved["summary"]["class"]["naive"]
    assert summary["bwt"]["n"] == 2 and summary["final_accuracy"][0]["n"] == 2
    assert saved["summary"]["task"]["joint"]["bwt"] is None
    assert "| mean_matched_replay |" in (out / "results.md").read_text()
    assert results["summary"] == saved["summary"]

    # Finished runs are read back: a second invocation trains nothing.
    def fail(*args, **kwargs):
        raise AssertionError("a finished run was recomputed")

    sequence_module.run_strategy, original = fail, sequence_module.run_strategy
    try:
        again = run_sequence(cfg)
    finally:
        sequence_module.run_strategy = original
    assert again["summary"] == saved["summary"]


@pytest.mark.parametrize(("mood_first", "per_class", "kept"), [(False, 2, 6), (True, 1, 2), (True, 3, 6)])
def test_replay_buffers_keep_memory_per_class_of_each_past_task(sequence_config, tiny_task_dir, tiny_sentiment_dir,
                                                                 tmp_path, monkeypatch, mood_first, per_class, kept):
    # Any class counts run: 1 or 3 per class of the 2-class task before the 3-class one, 2 per class the other way.
    from avalanche.training.plugins import ReplayPlugin

    sizes, classes = [], []
    original = ReplayPlugin.before_training_exp

    def spy(self, strategy, *args, **kwargs):
        buffer = self.storage_policy.buffer
        sizes.append((type(self.storage_policy).__name__, len(buffer), strategy.experience.current_experience))
        if isinstance(self.storage_policy, (RealExamplesBuffer, MeanMatchedBuffer)) and len(buffer):
            classes.append(sorted(int(buffer[i][1].argmax()) for i in range(len(buffer))))
        return original(self, strategy, *args, **kwargs)

    monkeypatch.setattr(ReplayPlugin, "before_training_exp", spy)
    tasks = [f"{{name: topics, path: '{tiny_task_dir}'}}", f"{{name: mood, path: '{tiny_sentiment_dir}'}}"]
    cfg = sequence_config(tmp_path / "run",
        "continual.strategies=[random_replay,herding_replay,distilled_text_replay,mean_matched_replay]",
        "continual.scenarios=[class]", "continual.seeds=[0]", f"continual.memory_per_class={per_class}",
        f"task_sequence.tasks=[{','.join(tasks[::-1] if mood_first else tasks)}]",
    )
    run_sequence(cfg)
    assert sorted((name, size) for name, size, exp in sizes if exp == 1) == [
        ("DistilledBuffer", kept), ("MeanMatchedBuffer", kept), ("RealExamplesBuffer", kept), ("RealExamplesBuffer", kept)]
    assert sorted(size for _, size, exp in sizes if exp == 0) == [0, 0, 0, 0]
    first_classes = 2 if mood_first else 3
    assert classes == [sorted(list(range(first_classes)) * per_class)] * 3  # class-balanced: random, herding, mean-matched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("continual.strategies=[naive,ewc]", r"continual.strategies='ewc' is not allowed"),
        ("continual.scenarios=[domain]", r"continual.scenarios='domain' is not allowed"),
        ("distill=head", "distill trains head"),
    ],
)
def test_bad_configs_fail_before_any_training(sequence_config, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        run_sequence(sequence_config(tmp_path / "run", override))
    assert not (tmp_path / "run" / "runs").exists()


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match=r"no task config for 'agnews'; known tasks: \['ag_news'"):
        task_config("agnews")


@pytest.mark.parametrize("sequence", ["agnews_then_sst2", "sst2_then_agnews", "rt_then_imdb", "four_tasks"])
def test_every_sequence_config_names_known_tasks_and_a_run_folder(sequence):
    job = compose("run", [f"task_sequence={sequence}"])
    names = [task_config(entry).name for entry in job.task_sequence.tasks]
    assert len(names) >= 2 and job.out == "runs/continual/" + "_then_".join(names)
    assert job.distill.params == "last_n_layers" and job.distill.n_layers == job.continual.trainable_layers


def test_a_strategy_run_is_reproducible_from_its_seed(sequence_config, tmp_path):
    overrides = ("continual.strategies=[random_replay]", "continual.scenarios=[class]", "continual.seeds=[3]")
    first = run_sequence(sequence_config(tmp_path / "a", *overrides))
    second = run_sequence(sequence_config(tmp_path / "b", *overrides))
    assert len(first["runs"]) == len(second["runs"]) == 1
    for a, b in zip(first["runs"], second["runs"]):
        assert a["accuracy_matrix"] == b["accuracy_matrix"] and a["curve"] == b["curve"] and a["memory_fit"] == b["memory_fit"]
