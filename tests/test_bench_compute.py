"""The compute-saved experiment: plumbing on a tiny model and task, and the savings arithmetic on hand-made curves."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from condense.bench.__main__ import run_experiment
from condense.bench.common import studied_set, task_data
from condense.bench.compute import finetune_examples
from condense.bench.compute_report import report
from condense.bench.compute_savings import break_even, savings, time_to_accuracy
from condense.bench.compute_streams import eval_steps, stream_batches
from condense.config.parsing import compose
from condense.eval.protocols import shuffled_batches
from condense.config.schema import FinetuneRecipe

TINY_SET_SIZE = 3  # the tiny task's 3 classes, 1 example each
INNER_STEPS = 10  # configs/distill/head.yaml


@pytest.fixture(scope="module")
def bench_cfg(tiny_model_dirs, tiny_task_dir, tmp_path_factory):
    return compose("bench", [
        f"model.name={tiny_model_dirs['bert']}", "eval=smoke", "threads=1", "report=false", "device=cpu",  # pinned numbers
        f"results_dir={tmp_path_factory.mktemp('results')}",
        f"bench.tasks=[{{name: tiny, path: {tiny_task_dir}}}]", "bench.outer_steps=2", "bench.n_inits=2",
        "bench.seeds=[0]", "bench.compute.head_max_examples=40", "bench.compute.head_batch_size=8",
        "bench.compute.eval_points=3", "bench.compute.finetune_max_examples=20",
        "bench.compute.finetune_eval_points=2",
        "bench.compute.seeds=[0,1]",
        # The recipe these curves were pinned with (batches of 16, constant lr, shuffled), not today's default one.
        "eval.finetune.recipe.batch_size=16", "eval.finetune.recipe.schedule=constant",
        "eval.finetune.recipe.group_by_length=false",
    ])


@pytest.fixture(scope="module")
def results(bench_cfg, tmp_path_factory):
    # The autouse cache isolation is per test; this runs once for the module, under the same cache folder.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONDENSE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        return run_experiment("compute", bench_cfg, "python -m condense.bench compute (test)")


def all_curves(task: dict) -> list[dict]:
    return [*task["head"]["full_raw_text"], *task["head"]["full_cached_features"], *task["finetune"]["full_raw_text"]]


def test_results_file_is_written_as_json(results, bench_cfg):
    written = json.loads((Path(bench_cfg.results_dir) / "bench_compute.json").read_text())
    assert written["experiment"] == "compute"
    assert set(written["tasks"]) == {"tiny"}


def right_answers(accuracies: list[float]) -> list[int]:
    """Each accuracy as the number of the 12 test examples it got right."""
    counts = [round(12 * a) for a in accuracies]
    assert [12 * a for a in accuracies] == pytest.approx(counts, abs=1e-4)
    return counts


def test_a_rerun_reads_every_measurement_back(results, bench_cfg, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONDENSE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        again = run_experiment("compute", bench_cfg, "python -m condense.bench compute (test)")
    # Per form, the heads on the one set (2); its fine-tuning (1); head streams (2 seeds x raw / cached) and
    # fine-tuning streams (2 seeds); the encoding sample (1).
    assert again["cells"] == {"computed": 0, "reused": 2 + 1 + 4 + 2 + 1}
    assert again["tasks"] == results["tasks"]  # the timings too: a resumed run keeps those it had measured


def test_full_data_curves_rise_in_time_and_examples(results):
    for curve in all_curves(results["tasks"]["tiny"]):
        assert curve["examples"][0] == 0 and curve["seconds"][0] == 0.0
        assert all(b > a for a, b in itertools.pairwise(curve["examples"]))
        assert len(curve["accuracy"]) == len(curve["seconds"]) == len(curve["examples"])
    task = results["tasks"]["tiny"]
    # Test accuracy before any step (the fresh head or the pretrained weights), then at each evaluation, per seed.
    assert [right_answers(c["accuracy"]) for c in task["head"]["full_raw_text"]] == [[5, 7, 8, 8], [4, 4, 4, 7]]
    assert [right_answers(c["accuracy"]) for c in task["head"]["full_cached_features"]] == [[5, 7, 8, 8], [4, 4, 4, 4]]
    assert [right_answers(c["accuracy"]) for c in task["finetune"]["full_raw_text"]] == [[5, 5, 5], [4, 4, 4]]


def test_streaming_raw_text_trains_the_head_that_cached_features_train(results):
    """The same seed draws the same head and the same batches, and encoding on the clock gives the cached features:
    the two streams agree until their schedules part (after 2 of 5 steps, and 2 of 3)."""
    task = results["tasks"]["tiny"]
    assert len(task["head"]["full_raw_text"]) == len(task["head"]["full_cached_features"]) == 2  # a stream per seed
    for raw, cached in zip(task["head"]["full_raw_text"], task["head"]["full_cached_features"]):
        assert raw["seed"] == cached["seed"]
        assert raw["examples"][:3] == cached["examples"][:3] and raw["accuracy"][:3] == cached["accuracy"][:3]


def test_examples_processed_are_exact(results):
    task = results["tasks"]["tiny"]
    assert task["head"]["distilled"]["examples"] == TINY_SET_SIZE * INNER_STEPS
    assert task["head"]["decoded"]["examples"] == TINY_SET_SIZE * INNER_STEPS
    assert task["head"]["distilled"]["encoder_passes"] == TINY_SET_SIZE
    # eval=smoke's recipe: max(min_steps=2, 1 epoch x 1 batch) = 2 steps of the whole 3-example set.
    assert task["finetune"]["distilled"]["examples"] == 2 * TINY_SET_SIZE
    # 40 examples in batches of 8 = 5 steps, evaluated after steps {1, round(sqrt 5) = 2, 5}.
    for curve in task["head"]["full_raw_text"]:
        assert curve["examples"] == [0, 8, 16, 40]
    # One epoch of the 24 training texts, 3 steps.
    for curve in task["head"]["full_cached_features"]:
        assert curve["examples"] == [0, 8, 16, 24]
    # Batches of 16: a full one, then 4 of the 8 left in the epoch.
    for curve in task["finetune"]["full_raw_text"]:
        assert curve["examples"] == [0, 16, 20]


def test_sets_are_summarised_over_every_fresh_model(results, bench_cfg):
    task = results["tasks"]["tiny"]
    assert task["head"]["distilled"]["accuracy"]["n"] == bench_cfg.bench.n_inits
    # 2 heads right on 10 of 12 test examples, each way: the straight-through set is its decoded text.
    assert task["head"]["distilled"]["accuracy"]["mean"] * 24 == pytest.approx(20, abs=1e-4)
    assert task["head"]["decoded"]["accuracy"] == task["head"]["distilled"]["accuracy"]
    assert task["finetune"]["distilled"]["accuracy"]["mean"] * 12 == pytest.approx(7, abs=1e-4)
    assert task["head"]["distilled"]["seconds"]["n"] == bench_cfg.bench.n_inits
    assert task["finetune"]["distilled"]["accuracy"]["n"] == bench_cfg.eval.finetune.n_inits
    assert [curve["seed"] for curve in task["head"]["full_raw_text"]] == [0, 1]


def test_distillation_cost_is_the_studied_sets_own(results, bench_cfg):
    distilled = studied_set(bench_cfg, task_data(bench_cfg, bench_cfg.bench.tasks[0]), 0)
    distillation = results["tasks"]["tiny"]["distillation"]
    assert distillation["seconds"]["mean"] == pytest.approx(distilled.meta["progress"]["seconds"])
    assert distillation["outer_steps"] == [2]
    assert distillation["train_examples"] == 24
    assert distillation["encoding_sample"] == 24  # the preset's sample is larger than the tiny split


def test_savings_compare_each_set_against_its_baselines(results):
    derived = results["tasks"]["tiny"]["savings"]
    assert set(derived["head"]) == {"distilled", "decoded"}
    assert set(derived["head"]["distilled"]) == {"full_raw_text", "full_cached_features"}
    assert set(derived["finetune"]["distilled"]) == {"full_raw_text"}
    distillation = results["tasks"]["tiny"]["distillation"]
    raw = derived["head"]["distilled"]["full_raw_text"]
    cached = derived["head"]["distilled"]["full_cached_features"]
    with_encoding = distillation["seconds"]["mean"] + distillation["train_encoding_seconds"]
    assert raw["cost_seconds"] == pytest.approx(with_encoding)
    assert cached["cost_seconds"] == pytest.approx(distillation["seconds"]["mean"])
    assert raw["target"] == results["tasks"]["tiny"]["head"]["distilled"]["accuracy"]["mean"]


def test_report_draws_one_figure_per_task_and_covers_both_regimes(results, tmp_path):
    lines = report(results, tmp_path / "figures")
    text = "\n".join(lines)
    figure = tmp_path / "figures" / "bench_compute_tiny.png"
    assert figure.exists() and figure.stat().st_size > 10_000
    assert "![" in text and "(figures/bench_compute_tiny.png)" in text
    assert text.startswith("## Compute saved")
    assert "| head |" in text and "| finetune |" in text
    assert "break-even" in text.lower() and "cached features" in text


def test_time_to_accuracy_interpolates_between_evaluations():
    curve = {"examples": [0, 100, 300], "seconds": [0.0, 2.0, 6.0], "accuracy": [0.5, 0.6, 0.8]}
    hit = time_to_accuracy(curve, 0.7)
    assert hit["seconds"] == pytest.approx(4.0) and hit["examples"] == pytest.approx(200)
    assert time_to_accuracy(curve, 0.6) == {"seconds": 2.0, "examples": 100}
    assert time_to_accuracy(curve, 0.4) == {"seconds": 0.0, "examples": 0}
    assert time_to_accuracy(curve, 0.81) is None


def test_break_even_is_the_cost_over_the_time_each_training_saves():
    assert break_even(100.0, 11.0, 1.0) == 10
    assert break_even(101.0, 11.0, 1.0) == 11
    assert break_even(100.0, 1.0, 1.0) is None  # saves nothing: never pays off
    assert break_even(100.0, 0.5, 1.0) is None


def test_savings_on_hand_made_curves():
    curves = [
        {"examples": [0, 100, 200], "seconds": [0.0, 5.0, 10.0], "accuracy": [0.5, 0.7, 0.9]},  # 0.8 at 7.5 s, 150 ex
        {"examples": [0, 100, 200], "seconds": [0.0, 6.0, 13.0], "accuracy": [0.5, 0.8, 0.9]},  # 0.8 at 6 s, 100 ex
    ]
    distilled = {"accuracy": {"mean": 0.8, "std": 0.01}, "seconds": {"mean": 0.5, "std": 0.1}, "examples": 20}
    result = savings(curves, distilled, cost_seconds=60.0)
    assert result["reached"] == 2 and result["seeds"] == 2
    assert result["seconds"]["mean"] == pytest.approx(6.75)
    assert result["seconds"]["std"] == pytest.approx(math.sqrt(2 * 0.75**2))
    assert result["speedup"]["mean"] == pytest.approx((15 + 12) / 2)
    assert result["examples_ratio"]["mean"] == pytest.approx((150 / 20 + 100 / 20) / 2)
    assert result["break_even"] == math.ceil(60 / (6.75 - 0.5)) == 10
    assert result["break_even_per_seed"] == [math.ceil(60 / 7), math.ceil(60 / 5.5)]


def test_savings_bound_the_break_even_when_the_stream_never_reaches_the_set():
    curves = [{"examples": [0, 100], "seconds": [0.0, 10.0], "accuracy": [0.5, 0.7]}]
    distilled = {"accuracy": {"mean": 0.8, "std": 0.0}, "seconds": {"mean": 1.0, "std": 0.0}, "examples": 20}
    result = savings(curves, distilled, cost_seconds=90.0)
    assert result["reached"] == 0 and result["seconds"] is None and result["break_even"] is None
    assert result["break_even_at_most"] == 10  # full data needs more than 10 s, so each training saves more than 9 s


def test_stream_batches_hold_exactly_max_examples_across_epochs():
    batches = stream_batches(10, 25, 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2, 4, 1]
    assert sum(len(b) for b in batches) == 25
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10))  # the first epoch is a permutation
    assert sum(len(b) for b in stream_batches(10, None, 4, torch.Generator().manual_seed(0))) == 10


def test_eval_steps_are_log_spaced_and_end_at_the_last_step():
    assert eval_steps(1000, 4) == {1, 10, 100, 1000}
    assert eval_steps(5, 1) == {5}
    assert max(eval_steps(7, 3)) == 7


@pytest.mark.parametrize("size, batch_size, epochs, min_steps", [(3, 16, 3, 30), (20, 16, 3, 5), (40, 16, 1, 2)])
def test_finetune_examples_match_the_recipes_batches(size, batch_size, epochs, min_steps):
    recipe = FinetuneRecipe(batch_size=batch_size, epochs=epochs, min_steps=min_steps)
    steps = max(min_steps, epochs * math.ceil(size / batch_size))
    batches = itertools.islice(shuffled_batches(size, batch_size, torch.Generator().manual_seed(0)), steps)
    assert finetune_examples(size, recipe) == sum(len(b) for b in batches)
