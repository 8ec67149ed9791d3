"""The analysis suite's command and shared helpers, and the scaling, ablation and transfer experiments on tiny
models, whose numbers are pinned: the tiny task has 12 test examples, so every accuracy is a count of right answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from condense.bench import EXPERIMENTS, ablations_report, common, reporter, runner, scaling_report, transfer
from condense.bench import transfer_report
from condense.bench.__main__ import main, run_experiment
from condense.config.parsing import compose
from condense.report.tables import points

TEST_EXAMPLES = 12  # the tiny task's test split


def bench_config(tiny_model_dirs, task_dir, *overrides):
    return compose("bench", [
        f"model.name={tiny_model_dirs['bert']}", "eval=smoke", "threads=1", "report=false", "device=cpu",  # pinned numbers
        f"bench.tasks=[{{name: tiny, path: {task_dir}}}]", "bench.seeds=[0]", "bench.outer_steps=2", "bench.n_inits=3",
        *overrides,
    ])


def right_answers(summary: dict) -> int:
    """Test examples a summary's fresh models got right, over all of them: each accuracy is k / 12."""
    total = summary["mean"] * summary["n"] * TEST_EXAMPLES
    assert total == pytest.approx(round(total), abs=1e-4), summary
    return round(total)


def test_every_preset_composes_and_paper_is_larger_than_default():
    default, paper = compose("bench"), compose("bench", ["bench=paper"])
    assert default.bench.name == "default" and paper.bench.name == "paper"
    assert list(default.bench.scaling.ks) == [1, 5, 10, 20, 50]
    assert set(default.bench.scaling.tasks) == {"ag_news", "sst2", "rotten_tomatoes", "imdb"}
    assert paper.bench.outer_steps > default.bench.outer_steps and len(paper.bench.seeds) >= 3
    assert paper.bench.scaling.outer_steps > default.bench.scaling.outer_steps
    assert set(default.bench.tasks) < set(paper.bench.tasks)
    for experiment in EXPERIMENTS:  # every experiment has its own settings, and a runner and a reporter
        assert hasattr(default.bench, experiment) and callable(runner(experiment)) and callable(reporter(experiment))
    # Each experiment's own budget grows with the paper preset.
    assert paper.bench.ablations.encoder_outer_steps > default.bench.ablations.encoder_outer_steps
    assert paper.bench.compute.eval_points > default.bench.compute.eval_points
    assert paper.bench.compute.head_max_examples is None  # a whole epoch
    assert paper.bench.transfer.finetune_inits > default.bench.transfer.finetune_inits
    assert paper.bench.prompting.orderings > default.bench.prompting.orderings
    assert paper.bench.qualitative.probe_inits > default.bench.qualitative.probe_inits


def test_the_command_names_the_experiments_when_called_wrongly(tiny_model_dirs, tiny_task_dir):
    with pytest.raises(SystemExit, match="scaling"):
        main([])
    with pytest.raises(SystemExit, match="usage"):
        main(["bench=paper"])
    with pytest.raises(SystemExit, match="usage.*scaling"):
        main(["scale", "report=false"])
    with pytest.raises(ValueError, match="unknown experiment 'scale'.*scaling"):
        run_experiment("scale", bench_config(tiny_model_dirs, tiny_task_dir), "python -m condense.bench scale")
    for lookup in (runner, reporter):
        with pytest.raises(ValueError, match="unknown experiment 'scale'.*qualitative"):
            lookup("scale")


def test_distilled_sets_are_cached_by_config_and_the_ledger_says_so(tiny_model_dirs, tiny_task_dir):
    job = bench_config(tiny_model_dirs, tiny_task_dir)
    data = common.task_data(job, job.bench.tasks[0])
    common.LEDGER.clear()
    first = common.distilled(data, ipc=1, outer_steps=2, seed=0)
    again = common.distilled(data, ipc=1, outer_steps=2, seed=0)
    other = common.distilled(data, ipc=1, outer_steps=2, seed=1)
    assert torch.equal(first.embeddings, again.embeddings) and not torch.equal(first.embeddings, other.embeddings)
    ledger = common.ledger_summary()
    assert ledger["distilled_now"] == 2 and ledger["reused"] == 0  # the second call reused a set made in this run
    assert [entry["reused"] for entry in common.LEDGER] == [False, True, False]


def test_scaling_runs_every_k_writes_its_results_file_and_one_plot_per_task(tiny_model_dirs, tiny_task_dir, tmp_path):
    task = f"{{name: tiny, path: {tiny_task_dir}}}"
    job = bench_config(tiny_model_dirs, tiny_task_dir, f"bench.scaling.tasks=[{task}]", "bench.scaling.ks=[1,2]",
                       "bench.scaling.outer_steps=2", f"results_dir={tmp_path}")
    results = run_experiment("scaling", job, "python -m condense.bench scaling")
    saved = json.loads((tmp_path / "bench_scaling.json").read_text())
    assert saved["experiment"] == "scaling" and saved["preset"] == "default"
    assert saved["command"] == "python -m condense.bench scaling"  # the command that regenerates it
    assert saved["distillation"]["distilled_now"] + saved["distillation"]["reused"] == 2  # one set per k
    tiny = saved["tasks"]["tiny"]
    assert set(tiny["ks"]) == {"1", "2"}
    for entry in tiny["ks"].values():
        assert set(entry["summary"]) == set(scaling_report.SETS)
        assert all(entry["summary"][name]["n"] == 3 for name in scaling_report.SETS)  # bench.n_inits fresh heads
    # Right answers out of 3 heads x 12 test examples; the full-data probe (eval=smoke: one) gets all 12.
    assert {k: {name: right_answers(s) for name, s in entry["summary"].items()} for k, entry in tiny["ks"].items()} == {
        "1": {"distilled": 28, "decoded": 28, "random": 29, "kcenters": 26, "herding": 26},
        "2": {"distilled": 28, "decoded": 28, "random": 29, "kcenters": 31, "herding": 28},
    }
    assert tiny["full"] == {"mean": 1.0, "std": 0.0, "n": 1}
    lines = scaling_report.report(results, tmp_path)
    assert (tmp_path / "bench_scaling_tiny.png").stat().st_size > 0
    text = "\n".join(lines)
    assert "python -m condense.bench scaling" in text and "Full data (linear probe on every training example): 100.0 ± 0.0." in text
    summary = tiny["ks"]["2"]["summary"]
    assert "| 2 | " + " | ".join(points(summary[name]) for name in scaling_report.SETS) + " | " in text
    assert ("Distilled minus the best real subset, in points: k=1: -2.8 vs random; k=2: -8.3 vs kcenters. Distilled "
            "as a share of full-data accuracy: 78%, 78% for k = 1, 2.") in text


def test_ablations_cover_every_factor_and_separate_the_label_effect(tiny_model_dirs, tiny_task_dir, tmp_path):
    job = bench_config(tiny_model_dirs, tiny_task_dir, "bench.ablations.encoder_outer_steps=1", "bench.ablations.encoder_n_inits=1",
                       f"results_dir={tmp_path}")
    results = run_experiment("ablations", job, "python -m condense.bench ablations")
    # Each of the 10 distinct variants (the base once) and the label-only comparison is a cell, for the one seed: a
    # rerun reads each back and agrees exactly.
    again = run_experiment("ablations", job, "python -m condense.bench ablations")
    assert again["cells"] == {"computed": 0, "reused": 10 + 1} and again["tasks"] == results["tasks"]
    tiny = results["tasks"]["tiny"]
    factors = ablations_report.FACTORS
    assert {factor: set(choices) for factor, choices in tiny["factors"].items()} == {
        factor: set(choices) for factor, choices in factors.items()}
    # The studied set appears under every factor but is distilled once.
    base = [choices[choice]["distilled"] for factor, choices in tiny["factors"].items()
            for choice in choices if factors[factor][choice] == ablations_report.BASE]
    assert len(base) == len(factors) and all(entry == base[0] for entry in base)
    assert tiny["factors"]["inner parameters"]["all"]["distilled"]["n"] == 1
    assert tiny["factors"]["inner parameters"]["all"]["overrides"]["params"] == "all"
    # Right answers (distilled, decoded) of 3 fresh heads x 12 test examples; encoder-training variants: 1 model.
    assert {factor: {choice: (right_answers(e["distilled"]), right_answers(e["decoded"])) for choice, e in choices.items()}
            for factor, choices in tiny["factors"].items()} == {
        "labels": {"learned": (28, 28), "hard": (28, 28)},
        "inner steps T": {"1": (15, 15), "3": (19, 19), "10": (28, 28)},
        # all: the preset's head inner lr of 3.0 (a random tiny encoder's features are not MiniLM's; was 8 at 0.1)
        "inner parameters": {"head": (28, 28), "last_n_layers": (8, 8), "all": (4, 4)},
        "inner optimiser": {"sgd": (28, 28), "momentum": (22, 22), "adam": (23, 23)},
        "initialisation": {"real text": (28, 28), "noise": (27, 27)},
        "trained form": {"text (straight-through)": (28, 28), "continuous embeddings": (26, 28)},
    }
    labels = tiny["label_only"]
    assert {name: right_answers(labels[name]) for name in labels} == {
        ablations_report.HARD: 31, ablations_report.DISTILLED_LABELS: 29, ablations_report.OWN_LABELS: 29}
    text = "\n".join(ablations_report.report(results, tmp_path))
    assert (tmp_path / "bench_ablations_tiny.png").exists() and "Label-only effect" in text
    assert "With one distillation seed the spread is over fresh models only" in text  # bench.seeds=[0]
    assert f"| labels | learned (studied set) | {points(base[0])} |" in text
    assert ("Over a random real subset with hard labels (86.1%), learned labels alone add -5.6 points and learned "
            "inputs on top add -2.8 more (77.8%).") in text


def test_bag_of_words_fits_soft_labels_and_reads_the_words():
    texts = ["good great fun", "bad awful dull"]
    test_texts, test_labels = ["great fun", "awful", "good", "dull bad"], np.array([1, 0, 1, 0])
    assert transfer.bag_of_words_accuracy(texts, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), test_texts, test_labels) == 1.0
    # Labels that say the opposite with confidence are learned as such.
    assert transfer.bag_of_words_accuracy(texts, torch.tensor([[0.9, 0.1], [0.1, 0.9]]), test_texts, test_labels) == 0.0


def test_transfer_trains_every_set_with_every_recipe(tiny_model_dirs, tiny_task_dir, tmp_path):
    job = bench_config(tiny_model_dirs, tiny_task_dir, "bench.transfer.finetune_inits=1", f"results_dir={tmp_path}",
                       "results_name=bench_transfer_tiny")
    results = run_experiment("transfer", job, "python -m condense.bench transfer")
    # 3 sets x 4 recipes and 2 bag-of-words fits, each a cell: a rerun reads them back and agrees exactly.
    again = run_experiment("transfer", job, "python -m condense.bench transfer")
    assert again["cells"] == {"computed": 0, "reused": 3 * 4 + 2} and again["tasks"] == results["tasks"]
    assert json.loads((tmp_path / "bench_transfer_tiny.json").read_text())["name"] == "bench_transfer_tiny"
    summary = results["tasks"]["tiny"]["summary"]
    recipes = transfer_report.RECIPES
    assert set(summary["decoded text"]) == set(recipes)
    assert set(summary["continuous embeddings"]) == set(recipes) - {transfer_report.BAG_OF_WORDS}
    assert summary["random real"][transfer_report.BAG_OF_WORDS]["n"] == 3  # one random draw per fresh model
    # Right answers on the 12 test examples, over 3 fresh heads (learned protocol, converged head), 1 model (the
    # AdamW recipes, bench.transfer.finetune_inits=1), and 1 deterministic fit (the decoded text's bag of words).
    learned, converged, top_block, every_weight, bag_of_words = recipes
    assert {name: {recipe: right_answers(entry) for recipe, entry in by_recipe.items()}
            for name, by_recipe in summary.items()} == {
        "decoded text": {learned: 28, converged: 33, top_block: 7, every_weight: 7, bag_of_words: 9},
        "random real": {learned: 31, converged: 36, top_block: 7, every_weight: 7, bag_of_words: 32},
        "continuous embeddings": {learned: 26, converged: 26, top_block: 7, every_weight: 7},
    }
    text = "\n".join(transfer_report.report(results, tmp_path))
    assert (tmp_path / "bench_transfer_tiny_tiny.png").exists() and "bag-of-words" in text
    assert f"| {converged} | {points(summary['decoded text'][converged])} (3) | {points(summary['random real'][converged])} (3) |" in text


def test_a_converged_head_repeats_with_its_seed_and_each_init_is_its_own_seed(tiny_model_dirs, tiny_task_dir):
    job = bench_config(tiny_model_dirs, tiny_task_dir)
    data = common.task_data(job, job.bench.tasks[0])
    train = common.training_form(data, common.studied_set(job, data, 0), "embedding")
    result = transfer.head_to_convergence(data, train, n_inits=2, seed=10)
    assert result["n"] == 2 and right_answers(result) >= 0  # each accuracy a count of the 12 test answers
    assert transfer.head_to_convergence(data, train, n_inits=2, seed=10) == result  # the seed fixes every head
    # Init i is drawn with seed + i: the two heads are the one-init runs at seeds 10 and 11.
    alone = [transfer.head_to_convergence(data, train, n_inits=1, seed=s)["mean"] for s in (10, 11)]
    assert result["mean"] == pytest.approx(sum(alone) / 2, abs=1e-12)
