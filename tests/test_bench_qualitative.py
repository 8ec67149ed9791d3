"""The qualitative study: token statistics, nearest neighbours, and a run and report on a tiny task."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from condense.bench.__main__ import run_experiment
from condense.bench.common import task_data
from condense.bench import qualitative
from condense.bench.qualitative import cell, nearest_neighbours, probe_heads, report, token_statistics
from condense.features import text_features
from condense.pipeline import CONFIG_DIR


@pytest.fixture
def tiny_bench_cfg(tiny_model_dirs, tiny_task_dir, tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("bench", overrides=[
            f"model.name={tiny_model_dirs['bert']}",
            "eval=smoke",
            "threads=1",
            f"bench.tasks=[{{name: tiny, path: {tiny_task_dir}}}]",
            "bench.outer_steps=2",
            "bench.seeds=[0]",
            "bench.qualitative.probe_inits=2",
            "bench.qualitative.real_sample=10",
            f"results_dir={tmp_path}",
            "report=false",
        ])


def test_token_statistics_counts_stop_words_among_words_and_repeats_among_tokens():
    # Words: the, movie, was, the, bestest, movie (the "##est" piece joins "best"; "," is punctuation).
    tokens = ["the", "movie", "was", "the", "best", "##est", ",", "movie"]
    stats = token_statistics(tokens)
    assert stats["stop_words"] == pytest.approx(3 / 6)  # the, was, the
    assert stats["repeated"] == pytest.approx(2 / 8)  # the second "the" and "movie"
    assert stats["subwords"] == pytest.approx(1 / 8)
    assert stats["punctuation"] == pytest.approx(1 / 8)
    assert stats["tokens"] == 8


def test_token_statistics_of_punctuation_only_and_empty_text_are_zero_shares():
    punctuation_only = {"stop_words": 0.0, "repeated": 1 / 3, "subwords": 0.0, "punctuation": 1.0, "tokens": 3.0}
    assert token_statistics([",", ",", "."]) == punctuation_only
    assert token_statistics([]) == dict.fromkeys(punctuation_only, 0.0)


def test_nearest_neighbours_are_sorted_by_cosine_similarity():
    generator = torch.Generator().manual_seed(0)
    references = torch.randn(50, 8, generator=generator)
    similarities, indices = nearest_neighbours(torch.randn(3, 8, generator=generator), references, k=5)
    assert similarities.shape == indices.shape == (3, 5)
    assert (similarities[:, :-1] >= similarities[:, 1:]).all()
    assert similarities[:, 0] == pytest.approx(similarities.new_tensor([s.max() for s in similarities]))


def test_a_training_text_finds_itself_as_nearest_neighbour_with_cosine_one(tiny_bench_cfg):
    data = task_data(tiny_bench_cfg, tiny_bench_cfg.bench.tasks[0])
    text = data.task.train["text"][5]
    query = text_features(data.encoder, [text], data.cfg.task.max_length)
    similarities, indices = nearest_neighbours(query, data.train_features, k=3)
    assert data.task.train["text"][int(indices[0, 0])] == text
    assert float(similarities[0, 0]) == pytest.approx(1.0, abs=1e-5)


def test_probe_heads_are_trained_once_then_read_from_the_cache(tiny_bench_cfg, monkeypatch):
    data = task_data(tiny_bench_cfg, tiny_bench_cfg.bench.tasks[0])
    first = probe_heads(data, n_inits=2, seed=7)

    @functools.wraps(qualitative.probe_head)  # the same signature, which is part of the cache key
    def no_training(*args, **kwargs):
        raise AssertionError("a cached probe was trained again")

    monkeypatch.setattr(qualitative, "probe_head", no_training)
    again = probe_heads(data, n_inits=2, seed=7)
    assert len(again) == 2
    for trained, cached in zip(first, again):
        assert all(torch.equal(trained[name], cached[name]) for name in ("head.weight", "head.bias"))
    assert not torch.equal(first[0]["head.weight"], first[1]["head.weight"])  # different seeds, different heads


def test_cell_keeps_a_table_row_intact():
    assert cell("a | b\nc") == "a \\| b c"
    assert len(cell("word " * 100)) <= 160


def test_run_and_report_show_every_distilled_example_with_soft_label_neighbours_and_confidence(tiny_bench_cfg, tmp_path):
    results = run_experiment("qualitative", tiny_bench_cfg, "python -m condense.bench qualitative")
    assert json.loads((tmp_path / "bench_qualitative.json").read_text())["experiment"] == "qualitative"
    task = results["tasks"]["tiny"]
    examples = task["seeds"]["0"]
    assert [e["class"] for e in examples] == ["business", "sports", "tech"]  # ipc=1, grouped by class
    for example in examples:
        assert sum(example["soft_label"].values()) == pytest.approx(1.0, abs=1e-4)
        assert example["confidence"]["n"] == 2 and 0.0 <= example["confidence"]["mean"] <= 1.0
        assert len(example["predicted"]) == 2
        assert len(example["neighbours"]) == 2
        assert example["neighbours"][0]["similarity"] >= example["neighbours"][1]["similarity"]
        assert 0.0 <= example["statistics"]["stop_words"] <= 1.0 and example["statistics"]["tokens"] > 0
    for name in task["label_names"]:
        real = task["classes"][name]["real"]
        assert 1 <= real["examples"] <= 10
        # Real comparison text is cut to the distilled examples' token budget.
        assert real["statistics"]["tokens"]["mean"] <= task["token_budget"]

    lines = report(results, tmp_path / "figures")
    text = "\n".join(lines)
    assert text.startswith("## Qualitative")
    assert "| class | soft label | decoded distilled text |" in text
    for example in examples:
        row = next(line for line in lines if line.startswith(f"| {example['class']} | "))
        assert "business: " in row and "sports: " in row and "tech: " in row
    assert "stop words, % of words" in text and "stop words against" in text
