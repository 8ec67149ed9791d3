"""The analysis suite's command, shared helpers, and the scaling, ablation and transfer experiments on tiny models."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from condense.bench import EXPERIMENTS, ablations, common, scaling, transfer
from condense.bench.__main__ import main, run_experiment
from condense.pipeline import CONFIG_DIR


def bench_config(tiny_model_dirs, task_dir, *overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("bench", overrides=[
            f"model.name={tiny_model_dirs['bert']}", "eval=smoke", "threads=1", "report=false",
            f"bench.tasks=[{{name: tiny, path: {task_dir}}}]", "bench.seeds=[0]", "bench.outer_steps=2", "bench.n_inits=3",
            *overrides,
        ])


def test_every_preset_composes_and_paper_is_larger_than_default():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        default, paper = compose("bench"), compose("bench", overrides=["bench=paper"])
    assert default.bench.name == "default" and paper.bench.name == "paper"
    assert list(default.bench.scaling.ks) == [1, 5, 10, 20, 50]
    assert set(default.bench.scaling.tasks) == {"ag_news", "sst2", "rotten_tomatoes", "imdb"}
    assert paper.bench.outer_steps > default.bench.outer_steps and len(paper.bench.seeds) >= 3
    assert paper.bench.scaling.outer_steps > default.bench.scaling.outer_steps
    for experiment in EXPERIMENTS:
        assert experiment in default.bench or experiment in ("scaling", "ablations", "transfer")


def test_the_command_names_the_experiments_when_called_wrongly():
    with pytest.raises(SystemExit, match="scaling"):
        main([])
    with pytest.raises(SystemExit, match="usage"):
        main(["bench=paper"])
    with pytest.raises(ValueError, match="unknown experiment 'scale'.*scaling"):
        main(["scale", "report=false"])


def test_pooled_summary_is_the_mean_and_std_over_every_model_of_every_seed():
    first, second = [0.5, 0.6, 0.7], [0.8, 0.9]
    summaries = [{"mean": statistics.fmean(v), "std": statistics.stdev(v), "n": len(v)} for v in (first, second)]
    result = common.pooled(summaries)
    assert result["mean"] == pytest.approx(statistics.fmean(first + second))
    assert result["std"] == pytest.approx(statistics.stdev(first + second))
    assert result["n"] == 5 and result["seeds"] == 2
    assert result["std_over_seeds"] == pytest.approx(statistics.stdev([0.6, 0.85]))


def test_distilled_sets_are_cached_by_config_and_the_ledger_says_so(tiny_model_dirs, tiny_task_dir):
    cfg = bench_config(tiny_model_dirs, tiny_task_dir)
    data = common.task_data(cfg, cfg.bench.tasks[0])
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
    cfg = bench_config(tiny_model_dirs, tiny_task_dir, f"bench.scaling.tasks=[{task}]", "bench.scaling.ks=[1,2]",
                       "bench.scaling.outer_steps=2", f"results_dir={tmp_path}")
    results = run_experiment("scaling", cfg, "python -m condense.bench scaling")
    saved = json.loads((tmp_path / "bench_scaling.json").read_text())
    assert saved["experiment"] == "scaling" and saved["preset"] == "default" and saved["seconds"] > 0
    assert saved["distillation"]["distilled_now"] + saved["distillation"]["reused"] == 2  # one set per k
    tiny = saved["tasks"]["tiny"]
    assert set(tiny["ks"]) == {"1", "2"}
    for entry in tiny["ks"].values():
        assert set(entry["summary"]) == set(scaling.SETS)
        assert all(entry["summary"][name]["n"] == 3 for name in scaling.SETS)  # bench.n_inits fresh heads
    lines = scaling.report(results, tmp_path)
    assert (tmp_path / "bench_scaling_tiny.png").stat().st_size > 0
    text = "\n".join(lines)
    assert "python -m condense.bench scaling" in text and "| 2 |" in text and "Full data (linear probe" in text


def test_ablations_cover_every_factor_and_separate_the_label_effect(tiny_model_dirs, tiny_task_dir, tmp_path):
    cfg = bench_config(tiny_model_dirs, tiny_task_dir, "bench.ablations.encoder_outer_steps=1", "bench.ablations.encoder_n_inits=1",
                       f"results_dir={tmp_path}")
    results = run_experiment("ablations", cfg, "python -m condense.bench ablations")
    tiny = results["tasks"]["tiny"]
    assert {factor: set(choices) for factor, choices in tiny["factors"].items()} == {
        factor: set(choices) for factor, choices in ablations.FACTORS.items()}
    # The studied set appears under every factor but is distilled once.
    base = [choices[choice]["distilled"] for factor, choices in tiny["factors"].items()
            for choice in choices if ablations.FACTORS[factor][choice] == ablations.BASE]
    assert len(base) == len(ablations.FACTORS) and all(entry == base[0] for entry in base)
    assert tiny["factors"]["inner parameters"]["all"]["distilled"]["n"] == 1
    assert tiny["factors"]["inner parameters"]["all"]["overrides"]["params"] == "all"
    assert set(tiny["label_only"]) == {ablations.HARD, ablations.DISTILLED_LABELS, ablations.OWN_LABELS}
    text = "\n".join(ablations.report(results, tmp_path))
    assert (tmp_path / "bench_ablations_tiny.png").exists() and "Label-only effect" in text and "noise" in text


def test_bag_of_words_fits_soft_labels_and_reads_the_words():
    texts = ["good great fun", "bad awful dull"]
    test_texts, test_labels = ["great fun", "awful", "good", "dull bad"], np.array([1, 0, 1, 0])
    assert transfer.bag_of_words_accuracy(texts, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), test_texts, test_labels) == 1.0
    # Labels that say the opposite with confidence are learned as such.
    assert transfer.bag_of_words_accuracy(texts, torch.tensor([[0.9, 0.1], [0.1, 0.9]]), test_texts, test_labels) == 0.0


def test_transfer_trains_every_set_with_every_recipe(tiny_model_dirs, tiny_task_dir, tmp_path):
    cfg = bench_config(tiny_model_dirs, tiny_task_dir, "bench.transfer.finetune_inits=1", f"results_dir={tmp_path}",
                       "results_name=bench_transfer_tiny")
    results = run_experiment("transfer", cfg, "python -m condense.bench transfer")
    assert json.loads((tmp_path / "bench_transfer_tiny.json").read_text())["name"] == "bench_transfer_tiny"
    summary = results["tasks"]["tiny"]["summary"]
    assert set(summary["decoded text"]) == set(transfer.RECIPES)
    assert set(summary["continuous embeddings"]) == set(transfer.RECIPES) - {transfer.BAG_OF_WORDS}
    assert summary["random real"][transfer.BAG_OF_WORDS]["n"] == 3  # one random draw per fresh model
    assert all(0 <= entry["mean"] <= 1 and not math.isnan(entry["std"]) for s in summary.values() for entry in s.values())
    text = "\n".join(transfer.report(results, tmp_path))
    assert (tmp_path / "bench_transfer_tiny_tiny.png").exists() and "bag-of-words" in text


def test_a_variant_run_is_named_apart_from_the_preset_run_in_its_file_title_and_plots(tmp_path):
    machine = {"processor": "cpu", "cpu_count": 2, "torch_threads": 1, "torch": "2"}
    preset = {"experiment": "ablations", "name": "bench_ablations", "command": "c", "preset": "default", "seconds": 60,
              "machine": machine}
    variant = {**preset, "name": "bench_ablations_3_seeds"}
    assert common.figure_path(preset, tmp_path, "_sst2") == tmp_path / "bench_ablations_sst2.png"
    assert common.figure_path(variant, tmp_path, "_sst2") == tmp_path / "bench_ablations_3_seeds_sst2.png"
    assert common.section_header(preset, "Ablations")[0] == "## Ablations"
    assert "bench_ablations_3_seeds" in common.section_header(variant, "Ablations")[0]
