"""The continual harness on tiny models: label layouts, dict mini-batches, heads, buffers, and whole sequences."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from condense import run as run_module
from condense.continual import (
    STRATEGIES,
    ContinualClassifier,
    Examples,
    LabelLayout,
    avalanche_dataset,
    collate,
)
from condense.models import hidden_states_below, load_encoder, top_blocks
from condense.pipeline import CONFIG_DIR
from condense.run import run_sequence


def test_label_layouts_place_each_task_in_its_head_or_its_block():
    probabilities = torch.tensor([[0.25, 0.75]])
    task = LabelLayout("task", [3, 2])
    joint = LabelLayout("class", [3, 2])
    assert task.width == 3 and joint.width == 5
    assert task.targets(1, probabilities).tolist() == [[0.25, 0.75, 0.0]]
    assert joint.targets(1, probabilities).tolist() == [[0.0, 0.0, 0.0, 0.25, 0.75]]
    assert (task.task_label(1), joint.task_label(1)) == (1, 0)
    with pytest.raises(ValueError, match="scenario must be one of"):
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


def test_dict_minibatches_are_padded_to_their_longest_row_and_move_like_tensors():
    layout = LabelLayout("task", [3, 2])
    dataset = avalanche_dataset(_examples(5, 6, 1, layout, 2), layout)
    rows = [dataset[i] for i in range(3)]
    batch, targets, task_labels = collate(rows)
    assert batch["hidden_states"].shape == (3, 4, 16) and batch["attention_mask"].sum(1).tolist() == [2, 3, 4]
    assert batch.to("cpu")["task_ids"].tolist() == [1, 1, 1]  # BatchEncoding: Avalanche calls .to(device)
    assert task_labels.tolist() == [1, 1, 1] and targets.shape == (3, 3)
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
    loss = torch.nn.CrossEntropyLoss()(logits, targets)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.heads[0].weight.grad.abs().sum() > 0 and model.heads[1].weight.grad.abs().sum() > 0
    joint = ContinualClassifier(tiny_bert, 1, LabelLayout("class", [3, 2]))
    assert len(joint.heads) == 1 and joint(batch).shape == (4, 5)


def sequence_config(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, out, *overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("run", overrides=[
            f"task_sequence.tasks=[{{name: topics, path: '{tiny_task_dir}'}},{{name: mood, path: '{tiny_sentiment_dir}'}}]",
            f"model.name={tiny_model_dirs['bert']}", "distill.outer_steps=2", "distill.seq_len=8",
            "distill.real_batch_size=8", "continual.memory_per_task=6", "continual.seeds=[0,1]",
            "continual.train_examples_per_task=12", "continual.test_examples_per_task=8",
            "continual.curve_examples_per_task=4", "continual.batch_size=4", "continual.replay_batch_size=2",
            "continual.merged_only_epochs=2", "continual.curve_points_per_experience=2", "threads=1",
            f"out={out}", *overrides,
        ])


def test_a_tiny_sequence_runs_every_strategy_and_writes_every_output(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, tmp_path):
    cfg = sequence_config(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, tmp_path / "run")
    results = run_sequence(cfg)
    out = tmp_path / "run"
    for name in ("results.json", "results.md", "forgetting_curves.png", "accuracy_matrices.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["sequence"] == ["topics", "mood"] and set(saved["summary"]) == {"task", "class"}
    assert len(saved["runs"]) == 2 * len(STRATEGIES) * 2
    for run in saved["runs"]:
        matrix = run["accuracy_matrix"]
        sequential = run["strategy"] not in ("joint", "merged_only")
        assert len(matrix) == (2 if sequential else 1) and all(len(row) == 2 for row in matrix)
        assert all(0.0 <= a <= 1.0 for row in matrix for a in row)
        if sequential:
            # Avalanche's stream metrics agree with the accuracy matrix they were computed from.
            assert run["avalanche"]["bwt"] == pytest.approx(matrix[1][0] - matrix[0][0])
            assert run["avalanche"]["forgetting"] == pytest.approx(matrix[0][0] - matrix[1][0])
            assert run["avalanche"]["forward_transfer"] == pytest.approx(matrix[0][1] - run["initial_accuracy"][1])
            assert run["experience_starts"][0] == 0 and len(run["experience_starts"]) == 2
        assert run["curve"][0]["iteration"] == 0 and len(run["curve"][0]["accuracy"]) == 2
        if "replay" in run["strategy"]:
            assert [fit["examples"] for fit in run["memory_fit"]] == [6, 12]
            assert all(fit["loss"] >= 0 and 0 <= fit["accuracy"] <= 1 for fit in run["memory_fit"])
        else:
            assert run["memory_fit"] is None
    summary = saved["summary"]["class"]["naive"]
    assert summary["bwt"]["n"] == 2 and summary["final_accuracy"][0]["n"] == 2
    assert saved["summary"]["task"]["joint"]["bwt"] is None
    assert "| distilled_replay |" in (out / "results.md").read_text()
    assert results["summary"] == saved["summary"]

    # Finished runs are read back: a second invocation trains nothing.
    def fail(*args, **kwargs):
        raise AssertionError("a finished run was recomputed")

    run_module.run_strategy, original = fail, run_module.run_strategy
    try:
        again = run_sequence(cfg)
    finally:
        run_module.run_strategy = original
    assert again["summary"] == saved["summary"]


def test_replay_buffers_keep_the_memory_budget_per_past_task(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, tmp_path, monkeypatch):
    from avalanche.training.plugins import ReplayPlugin

    sizes = []
    original = ReplayPlugin.before_training_exp

    def spy(self, strategy, *args, **kwargs):
        sizes.append((type(self.storage_policy).__name__, len(self.storage_policy.buffer), strategy.experience.current_experience))
        return original(self, strategy, *args, **kwargs)

    monkeypatch.setattr(ReplayPlugin, "before_training_exp", spy)
    cfg = sequence_config(
        tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, tmp_path / "run",
        "continual.strategies=[random_replay,herding_replay,distilled_replay,distilled_text_replay]",
        "continual.scenarios=[class]", "continual.seeds=[0]",
    )
    run_sequence(cfg)
    # Before the second task, every memory holds exactly memory_per_task examples of the first.
    assert sorted(size for _, size, exp in sizes if exp == 1) == [6, 6, 6, 6]
    assert all(size == 0 for _, size, exp in sizes if exp == 0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("continual.strategies=[naive,ewc]", r"unknown \['ewc'\]"),
        ("continual.scenarios=[domain]", r"unknown \['domain'\]"),
        ("distill=head", "distill trains head"),
        ("continual.memory_per_task=4", "does not split evenly over the 3 classes of topics"),
    ],
)
def test_bad_configs_fail_before_any_training(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, tmp_path, override, message):
    cfg = sequence_config(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, tmp_path / "run", override)
    with pytest.raises(ValueError, match=message):
        run_sequence(cfg)
    assert not (tmp_path / "run" / "runs").exists()


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match=r"no task config .* for 'agnews'; known tasks: \['ag_news'"):
        run_module.task_config("agnews")


@pytest.mark.parametrize("sequence", ["agnews_then_sst2", "sst2_then_agnews", "rt_then_imdb", "four_tasks"])
def test_every_sequence_config_names_known_tasks_and_a_run_folder(sequence):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("run", overrides=[f"task_sequence={sequence}"])
    names = [run_module.task_config(entry).name for entry in cfg.task_sequence.tasks]
    assert len(names) >= 2 and cfg.out == "runs/continual/" + "_then_".join(names)
    assert cfg.distill.params == "last_n_layers" and cfg.distill.n_layers == cfg.continual.trainable_layers


def test_a_strategy_run_is_reproducible_from_its_seed(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, tmp_path):
    overrides = ("continual.strategies=[random_replay]", "continual.scenarios=[class]", "continual.seeds=[3]")
    first = run_sequence(sequence_config(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, tmp_path / "a", *overrides))
    second = run_sequence(sequence_config(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir, tmp_path / "b", *overrides))
    for a, b in zip(first["runs"], second["runs"]):
        assert a["accuracy_matrix"] == b["accuracy_matrix"] and a["curve"] == b["curve"] and a["memory_fit"] == b["memory_fit"]
