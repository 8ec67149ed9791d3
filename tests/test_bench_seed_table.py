"""The seed's table on a tiny model and task: every row is computed, cached, and laid out as the seed's table."""

from __future__ import annotations

from condense.bench import seed_table_report
from condense.bench.__main__ import run_experiment
from condense.cache import cache_dir
from condense.config.parsing import compose

OVERRIDES = [
    "eval=smoke", "threads=1", "report=false", "device=cpu", "bench.seeds=[0, 1]", "bench.outer_steps=2",
    "bench.seed_table.entire_seeds=[0, 1]", "bench.seed_table.ks=[1, 2]", "bench.seed_table.n_inits=2",
    "bench.seed_table.encoder_outer_steps=2", "bench.seed_table.encoder_ks=[1]", "bench.seed_table.recipe.min_steps=2",
]


def tiny_job(tiny_model_dirs, task_dir, tmp_path, *overrides):
    task = f"{{name: tiny, path: {task_dir}}}"
    return compose("bench", [f"model.name={tiny_model_dirs['bert']}", f"bench.seed_table.tasks=[{task}]",
                             f"bench.seed_table.encoder_tasks=[{task}]", f"results_dir={tmp_path}", *OVERRIDES, *overrides])


def test_seed_table_computes_every_row_once_and_reports_the_seed_layout(tiny_model_dirs, tiny_task_dir, tmp_path):
    job = tiny_job(tiny_model_dirs, tiny_task_dir, tmp_path)
    cells = cache_dir() / "evaluations"  # shared by the session's experiments: count only this run's cells
    before = {p.name for p in cells.glob("*.json")}
    results = run_experiment("seed_table", job, "python -m condense.bench seed_table")
    tiny = results["tasks"]["tiny"]
    entire = tiny["entire"]
    assert entire["train_examples"] == 24 and entire["test_examples"] == 12 and entire["whole_test"]["n"] == 2
    assert entire["subsample_examples"] == 12  # eval=smoke tests on 16 examples: all 12 of the tiny split
    assert entire["subsample"] == entire["whole_test"]
    encoder_sets = {seed_table_report.encoder_set(form, attention) for form in ("embedding", "text")
                    for attention in ("none", "first_token")}
    assert set(tiny["sets"]["1"]) == {"head-mode text", "random", "kcenters", "herding", *encoder_sets}
    assert set(tiny["sets"]["2"]) == {"head-mode text", "random", "kcenters", "herding"}, "encoder sets only for k=1"
    text_with_labels = tiny["sets"]["1"][seed_table_report.encoder_set("text", "first_token")]
    assert set(text_with_labels) == {"learned", "finetune"} and text_with_labels["finetune"]["n"] == 4  # 2 seeds x 2 models
    assert set(tiny["sets"]["1"][seed_table_report.encoder_set("embedding", "none")]) == {"learned"}

    # The full-data runs and every evaluation are cached: a second run computes nothing and agrees exactly.
    cached = {p.name for p in cells.glob("*.json")} - before
    # seeds x (k=1: head text + 3 real subsets + 2 attention settings x (2 learned forms + 1 recipe); k=2: 4 sets)
    assert len(cached) == 2 * ((4 + 2 * 3) + 4) == results["cells"]["computed"] + results["cells"]["reused"]
    again = run_experiment("seed_table", job, "python -m condense.bench seed_table")
    assert again["cells"] == {"computed": 0, "reused": len(cached)}
    assert again["tasks"] == results["tasks"]  # cached and fresh cells read alike: no JSON round trip needed
    # A run that adds nothing but sets leaves the full-data runs to the file that has them.
    sets_only = run_experiment("seed_table", tiny_job(tiny_model_dirs, tiny_task_dir, tmp_path, "bench.seed_table.entire_seeds=[]"),
                               "python -m condense.bench seed_table")
    assert sets_only["tasks"]["tiny"]["entire"] is None and sets_only["tasks"]["tiny"]["sets"] == tiny["sets"]

    assert "**tiny**" in "\n".join(seed_table_report.report(results, tmp_path))
    text = "\n".join(seed_table_report.summary([results], tmp_path))
    assert "| BERT-base (seed) | entire dataset | 94.46 | 93.86 | 91.86 | 84.71 |" in text
    assert "distilled dataset (1/class)" in text


def test_the_summary_merges_one_models_runs_task_by_task_and_rows_each_model():
    def stat(mean):
        return {"mean": mean, "std": 0.01, "n": 10}

    def run(name, model, tasks):
        return {"name": name, "config": {"model": {"name": model}}, "tasks": tasks}

    entire = {"entire": {"whole_test": stat(0.9), "subsample": stat(0.9)}, "train_examples": 100}
    first = run("bench_seed_table", "minilm", {"sst2": {**entire, "sets": {"1": {
        "head-mode text": {"finetune": stat(0.7)}, "herding": {"finetune": stat(0.6)}}}}})
    encoder = seed_table_report.encoder_set("embedding", "none")
    # A run that only adds sets (bench.seed_table.entire_seeds=[]) divides by the first run's entire-dataset runs.
    second = run("bench_seed_table_sst2_all", "minilm", {"sst2": {"entire": None, "train_examples": 100,
                                                                  "sets": {"1": {encoder: {"learned": stat(0.81)}}}}})
    alone = "\n".join(seed_table_report.task_table("sst2", second["tasks"]["sst2"]))
    assert f"| 1 | {encoder} | — | 81.0 ± 1.0 |" in alone and "are in the summary below" in alone
    other = run("bench_seed_table_mpnet", "mpnet_base", {"sst2_2k": {**entire, "train_examples": 2000, "sets": {"1": {
        "head-mode text": {"finetune": stat(0.77)}}}}})
    text = "\n".join(seed_table_report.summary([first, second, other], None))
    assert "| minilm (here) | distilled dataset (1/class) | — | — | 70.0 ± 1.0 | — |" in text
    assert "| mpnet_base (here) | entire dataset | — | — | 90.0 ± 1.0 (2,000 training rows) | — |" in text
    one_seed = {"entire": {"whole_test": {**stat(0.9), "n": 1}, "subsample": {**stat(0.9), "n": 1}}, "train_examples": 10}
    assert "| 90.0 (1 seed) |" in "\n".join(seed_table_report.seed_layout({"m": {"ag_news": {**one_seed, "sets": {}}}}))
    # k = 1: 70 / 90 = 77.8% < 85%, but 10 points ahead of herding; k = 10 was not run.
    assert "| sst2 | 1 | recipe on the best text set ≥ 85% of entire | 77.8% (head-mode text) | no |" in text
    assert "| sst2 | 1 | … ≥ the best real subset + 5 points | +10.0 points (vs herding) | yes |" in text
    assert "| sst2 | 10 | recipe on the best text set ≥ 90% of entire | not run | no |" in text
    assert "| sst2_2k | 1 | recipe on the best text set ≥ 85% of entire | 85.6% (head-mode text) | yes |" in text
    assert "| sst2 | 1 | 70.0 ± 1.0 (head-mode text) | 77.8% | 60.0 ± 1.0 (herding) | 66.7% | +10.0 |" in text


def test_budgets_compare_every_k_across_label_treatments_and_plot_accuracy_against_k(tmp_path):
    def stat(mean):
        return {"mean": mean, "std": 0.02, "n": 9}

    entire = {"whole_test": stat(0.8), "subsample": stat(0.8)}
    learned = {"name": "bench_seed_table", "config": {"model": {"name": "minilm"}, "bench": {"seed_table": {}}},
               "tasks": {"rotten_tomatoes": {"entire": entire, "train_examples": 10, "sets": {"1": {"random": {"finetune": stat(0.55)}}}}}}
    hard = {"name": "bench_seed_table_hard", "config": {"model": {"name": "minilm"}, "bench": {"seed_table": {"baseline_labels": "hard"}}},
            "tasks": {"rotten_tomatoes": {"entire": None, "train_examples": 10, "sets": {
                "1": {"head-mode text": {"finetune": stat(0.66)}, "recipe-mode text": {"finetune": stat(0.65)}, "random": {"finetune": stat(0.58)}},
                "10": {"head-mode text": {"finetune": stat(0.72)}, "herding": {"finetune": stat(0.74)}}}}}}
    text = "\n".join(seed_table_report.summary([learned, hard], tmp_path))
    # Both label treatments of random stay: the best real subset at k = 1 is the hard-labelled one.
    assert "| rotten_tomatoes | 1 | 66.0 ± 2.0 (head-mode text) | 82.5% | 58.0 ± 2.0 (random (hard labels)) | 72.5% | +8.0 |" in text
    assert "| rotten_tomatoes | 10 | 72.0 ± 2.0 (head-mode text) | 90.0% | 74.0 ± 2.0 (herding (hard labels)) | 92.5% | -2.0 |" in text
    assert "| rotten_tomatoes | 10 | … ≥ the best real subset + 5 points | -2.0 points (vs herding (hard labels)) | no |" in text
    assert (tmp_path / "seed_table_budgets_minilm.png").stat().st_size > 10_000
    assert "![recipe accuracy against k, minilm](figures/seed_table_budgets_minilm.png)" in text


def test_attention_ablation_needs_an_encoder_preset_and_bad_variants_fail_at_start(tiny_model_dirs, tiny_task_dir, tmp_path):
    import pytest

    from condense.config.parsing import ConfigError

    with pytest.raises(ConfigError, match="bench.seed_table.attention=.*'sideways'"):
        tiny_job(tiny_model_dirs, tiny_task_dir, tmp_path, "bench.seed_table.attention=[none, sideways]")
    with pytest.raises(ConfigError, match="no task config for 'nope'"):
        tiny_job(tiny_model_dirs, tiny_task_dir, tmp_path, "bench.seed_table.encoder_tasks=[nope]")
