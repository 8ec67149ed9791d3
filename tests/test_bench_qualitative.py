"""The qualitative study: token statistics, nearest neighbours, and a run and report on a tiny task."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from condense.bench.__main__ import run_experiment
from condense.bench.common import task_data
from condense.bench import qualitative
from condense.bench.qualitative import nearest_neighbours, probe_heads, probe_outputs, token_statistics
from condense.bench.qualitative_report import cell, report
from condense.config.parsing import compose
from condense.models.features import text_features


@pytest.fixture
def tiny_bench_cfg(tiny_model_dirs, tiny_task_dir, tmp_path):
    return compose("bench", [
        f"model.name={tiny_model_dirs['bert']}",
        "eval=smoke",
        "threads=1",
        "device=cpu",  # pinned numbers
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
    query = text_features(data.encoder, [text], data.job.task.max_length)
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
    assert len(first) == len(again) == 2
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
    data = task_data(tiny_bench_cfg, tiny_bench_cfg.bench.tasks[0])
    heads = probe_heads(data, n_inits=2, seed=tiny_bench_cfg.eval.seed)  # the experiment's, from the cache
    # The probes fit the tiny task: both right on all 12 test examples.
    assert task["probe"] == {"inits": 2, "seed": tiny_bench_cfg.eval.seed, "test_accuracy": {"mean": 1.0, "std": 0.0, "n": 2}}
    assert task["token_budget"] == 30  # distill.seq_len 32 less [CLS] and [SEP]
    for example in examples:
        assert sum(example["soft_label"].values()) == pytest.approx(1.0, abs=1e-4)
        features = text_features(data.encoder, [example["text"]], data.job.task.max_length)
        label = torch.tensor([task["label_names"].index(example["class"])])
        confidence, predicted = probe_outputs(heads, features, label)
        assert example["confidence"]["n"] == 2
        assert example["confidence"]["mean"] == pytest.approx(confidence.mean().item(), abs=1e-6)
        assert example["confidence"]["mean"] > 0.99 and example["predicted"] == [example["class"]] * 2
        assert len(example["neighbours"]) == 2
        assert example["neighbours"][0]["similarity"] >= example["neighbours"][1]["similarity"]
        assert all(n["label"] == example["class"] for n in example["neighbours"])
        assert example["statistics"] == token_statistics(data.encoder.tokenizer.tokenize(example["text"]))
        assert example["statistics"]["tokens"] == task["token_budget"]
    for name in task["label_names"]:
        real = task["classes"][name]["real"]
        # The class's 8 training texts of 5 words make one window of the full 30 tokens and a shorter last one.
        assert real["examples"] == 2 and real["statistics"]["tokens"]["mean"] == 20.0
        assert real["predicted_as_class"] == 1.0

    lines = report(results, tmp_path / "figures")
    text = "\n".join(lines)
    assert text.startswith("## Qualitative")
    assert "| class | soft label | decoded distilled text |" in text
    for example in examples:
        row = next(line for line in lines if line.startswith(f"| {example['class']} | "))
        assert "business: " in row and "sports: " in row and "tech: " in row
    assert "stop words, % of words" in text and "stop words against" in text
