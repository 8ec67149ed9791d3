"""condense.report.tables's numbers, tables and noise rule, and the results pages regenerated from the committed
results files: byte for byte, within their size limits, without a paragraph repeated, and linking files that exist."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from condense.bench.report import write_report
from condense.report.tables import (
    figure_path,
    points,
    pooled,
    section_header,
    signed_points,
    table_head,
    table_row,
    verdict,
)

ROOT = Path(__file__).resolve().parents[1]


def test_points_are_percentage_points_with_one_decimal_and_a_dash_for_nothing():
    assert points({"mean": 0.8125, "std": 0.03, "std_within_seed": 0.011}) == "81.2 ± 3.0"
    assert points({"mean": 0.8125, "std": 0.03, "std_within_seed": 0.011}, "std_within_seed") == "81.2 ± 1.1"
    assert points(None) == "—"
    assert signed_points({"mean": 0.052, "std": 0.01}) == "+5.2 ± 1.0"
    assert signed_points({"mean": -0.052, "std": 0.01}) == "-5.2 ± 1.0"


def test_tables_have_a_rule_that_aligns_each_column():
    assert table_head(["set", "learned", "finetune"], "lrr") == ["| set | learned | finetune |", "|---|---:|---:|"]
    assert table_head(["a", "b"]) == ["| a | b |", "|---|---|"]
    assert table_row(["x", "1.0 ± 0.0"]) == "| x | 1.0 ± 0.0 |"
    with pytest.raises(ValueError, match="one of l/r per column"):
        table_head(["a", "b"], "l")
    with pytest.raises(ValueError, match="one of l/r per column"):
        table_head(["a"], "c")


def test_pooled_summary_is_the_mean_and_std_over_every_model_of_every_seed():
    first, second = [0.5, 0.6, 0.7], [0.8, 0.9]
    summaries = [{"mean": statistics.fmean(v), "std": statistics.stdev(v), "n": len(v)} for v in (first, second)]
    result = pooled(summaries)
    assert result["mean"] == pytest.approx(statistics.fmean(first + second))
    assert result["std"] == pytest.approx(statistics.stdev(first + second))
    assert result["n"] == 5 and result["seeds"] == 2
    assert result["std_over_seeds"] == pytest.approx(statistics.stdev([0.6, 0.85]))
    assert pooled([{"mean": 0.7, "std": 0.0, "n": 1}])["std_over_seeds"] == 0.0


def test_a_variant_run_is_named_apart_from_the_preset_run_in_its_file_title_and_plots(tmp_path):
    machine = {"processor": "cpu", "cpu_count": 2, "torch_threads": 1, "torch": "2"}
    preset = {"experiment": "ablations", "name": "bench_ablations", "command": "c", "preset": "default", "seconds": 60,
              "machine": machine}
    variant = {**preset, "name": "bench_ablations_3_seeds"}
    assert figure_path(preset, tmp_path, "_sst2") == tmp_path / "bench_ablations_sst2.png"
    assert figure_path(variant, tmp_path, "_sst2") == tmp_path / "bench_ablations_3_seeds_sst2.png"
    assert section_header(preset, "Ablations") == [
        "## Ablations", "",
        "Regenerate: `c` (preset `default`, 1.0 min). Machine: cpu, 2 cores, 1 torch threads, torch 2.", "",
    ]
    assert section_header(variant, "Ablations")[0] == "## Ablations (variant run: `bench_ablations_3_seeds`)"
    # Files written before results carried their name are the preset's.
    old = {key: value for key, value in preset.items() if key != "name"}
    assert figure_path(old, tmp_path) == tmp_path / "bench_ablations.png"


def test_the_noise_rule_calls_a_difference_within_one_standard_error_no_difference():
    assert verdict({"mean": 0.02, "std": 0.04, "n": 4}, "more", "less") == "no different from"  # SE 0.02
    assert verdict({"mean": 0.021, "std": 0.04, "n": 4}, "more", "less") == "more"
    assert verdict({"mean": -0.021, "std": 0.04, "n": 4}, "more", "less") == "less"
    assert verdict({"mean": 0.5, "std": 0.0, "n": 1}, "more", "less", "same") == "same"  # one seed: no noise estimate


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    """The pages written from the committed results files into a fresh folder, with a copy of the README."""
    root = tmp_path_factory.mktemp("regenerated")
    shutil.copy(ROOT / "README.md", root / "README.md")
    write_report(ROOT / "benchmarks" / "results", root / "docs", root / "README.md")
    return root


def _generated(root: Path) -> list[Path]:
    return [root / "docs" / "results.md", *sorted((root / "docs" / "results").glob("*.md"))]


def test_the_committed_pages_regenerate_byte_for_byte(pages):
    for page in _generated(pages):
        committed = ROOT / page.relative_to(pages)
        assert committed.exists(), f"{committed} is not committed: run python benchmarks/report.py"
        assert page.read_text() == committed.read_text(), f"{committed} is stale: run python benchmarks/report.py"
    assert (pages / "README.md").read_text() == (ROOT / "README.md").read_text()
    assert sorted(p.name for p in (pages / "docs" / "figures").iterdir()) == sorted(p.name for p in (ROOT / "docs" / "figures").iterdir())
    assert sorted(p.name for p in (ROOT / "docs" / "results").glob("*.md")) == sorted(p.name for p in _generated(pages)[1:])


def test_the_front_pages_are_short_and_the_readme_shows_results(pages):
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
    assert len((pages / "docs" / "results.md").read_text().splitlines()) <= 400
    readme = (pages / "README.md").read_text()
    table = readme.split("<!-- results: generated by benchmarks/report.py -->")[1].split("<!-- /results -->")[0]
    assert table.count("\n|") >= 4 and "%" in table  # a header, a rule and result rows with numbers


def _paragraphs(path: Path) -> list[str]:
    """The prose paragraphs of a page: not headings, tables, figures, code or list items of one line."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", path.read_text())]
    return [b for b in blocks if len(b) >= 80 and not b.startswith(("#", "|", "![", "```"))]


def test_no_paragraph_of_generated_prose_repeats_unless_its_numbers_do(pages):
    seen: dict[str, str] = {}
    repeated = []
    for page in _generated(pages):
        for paragraph in _paragraphs(page):
            if paragraph in seen and not re.search(r"\d", paragraph):
                repeated.append(f"{page.name} and {seen[paragraph]}: {paragraph[:80]}")
            seen.setdefault(paragraph, page.name)
    assert repeated == []


def test_every_path_the_pages_name_exists(pages):
    missing = []
    for page in [*_generated(pages), pages / "README.md"]:
        text = page.read_text()
        for link in re.findall(r"\]\(([^)#]+)\)", text):
            if not link.startswith("http") and not (page.parent / link).resolve().exists() \
                    and not (ROOT / (page.parent / link).resolve().relative_to(pages)).exists():
                missing.append(f"{page.name}: {link}")
        for path in re.findall(r"`((?:benchmarks|docs|configs|condense|tests)/[\w./-]+)`", text):
            if not (ROOT / path).exists():
                missing.append(f"{page.name}: {path}")
    assert missing == []


def test_the_report_side_reads_results_without_loading_models_or_data():
    code = (
        "import sys\n"
        "from condense.bench import EXPERIMENTS, reporter\n"
        "import condense.bench.report\n"
        "[reporter(name) for name in EXPERIMENTS]\n"
        "running = ['transformers', 'sklearn', 'condense.models.encoders', 'condense.jobs.distill_task', 'condense.eval.protocols',\n"
        "           'condense.bench.common', 'condense.eval.prompting', 'condense.models.heads']\n"
        "print([name for name in running if name in sys.modules])\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def _sequence_results(bwt_by_strategy: dict[str, dict[str, list[float]]], finals: dict[str, dict[str, list[float]]]) -> dict:
    """A two-task results dict: sequential runs whose first-task accuracy drops by the given BWT per seed from 0.8,
    and one-row runs (joint, merged) with the given final accuracies."""
    from condense.report.tables import summarize_runs

    runs = []
    for scenario, by_strategy in bwt_by_strategy.items():
        for strategy, values in by_strategy.items():
            runs += [{"scenario": scenario, "strategy": strategy, "seed": seed, "accuracy_matrix": [[0.8, 0.5], [0.8 + bwt, 0.7]],
                      "avalanche": {"bwt": bwt, "forgetting": -bwt, "forward_transfer": 0.0}, "seconds": 1.0}
                     for seed, bwt in enumerate(values)]
    for scenario, by_strategy in finals.items():
        for strategy, final in by_strategy.items():
            runs += [{"scenario": scenario, "strategy": strategy, "seed": seed, "accuracy_matrix": [final],
                      "avalanche": {}, "seconds": 1.0} for seed in range(5)]
    scenarios = {r["scenario"] for r in runs}
    summary = {s: {name: summarize_runs([r for r in runs if r["scenario"] == s and r["strategy"] == name])
                   for name in dict.fromkeys(r["strategy"] for r in runs if r["scenario"] == s)} for s in ("task", "class") if s in scenarios}
    return {"sequence": ["a", "b"], "summary": summary, "runs": runs}


def test_the_bars_hold_the_best_distilled_memory_to_the_best_real_one_and_the_super_dataset_to_joint():
    from condense.bench.continual_report import bar_rows, best, DISTILLED_MEMORIES

    random = [-0.30, -0.25, -0.35, -0.28, -0.32]
    results = _sequence_results(
        {"class": {"random_replay": random, "herding_replay": [r + 0.02 for r in random],
                   "distilled_text_replay": [r + 0.01 for r in random], "mean_matched_replay": [r + 0.06 for r in random]}},
        {"class": {"joint": [0.8, 0.8], "super_dataset": [0.70, 0.68]}},
    )
    results["config"] = {"continual": {"mean_matched_replay": {}}, "overrides": ["continual.seeds=[0,1,2,3,4]"]}
    assert best(results, "class", DISTILLED_MEMORIES) == "mean_matched_replay"
    rows = bar_rows(results)
    assert len(rows) == 2  # not the default command: no time bar
    # +6 over random, +4 over herding, the best real memory: every seed alike.
    assert rows[0].startswith("| class-incremental: best distilled memory (mean_matched_replay) BWT on a ≥ best real "
                              "memory's (herding_replay)") and rows[0].endswith("+4.0 ± 0.0 (paired by seed, n = 5) | yes |")
    assert rows[1].endswith("| a 87.5%, b 85.0% | yes |")
    worse = _sequence_results({"class": {"herding_replay": random, "mean_matched_replay": [r - 0.01 for r in random]}}, {})
    worse["config"] = results["config"]
    assert bar_rows(worse)[0].endswith("-1.0 ± 0.0 (paired by seed, n = 5) | no |")


def test_the_reading_reads_each_memory_against_each_real_one_with_the_noise_rule():
    from condense.bench.continual_report import reading

    random = [-0.30, -0.25, -0.35, -0.28, -0.32]
    results = _sequence_results({"class": {"naive": [-0.8] * 5, "random_replay": random,
                                           "herding_replay": [r + 0.20 for r in random],
                                           "mean_matched_replay": [r + d for r, d in zip(random, [0.1, 0.1, 0.0, 0.1, 0.2])]}}, {})
    line = next(line for line in reading(results) if line.startswith("- class-incremental"))
    assert "mean_matched_replay keeps more of a than random_replay (+10.0 ± 7.1 points of BWT)" in line
    assert "mean_matched_replay keeps less of a than herding_replay (-10.0 ± 7.1 points of BWT)" in line
    assert "naive fine-tuning loses 80.0 points of a" in line
    tied = _sequence_results({"class": {"random_replay": random, "mean_matched_replay": [r + d for r, d in zip(random, [0.02, -0.02, 0.01, -0.01, 0.0])]}}, {})
    assert "mean_matched_replay keeps as much of a as random_replay" in reading(tied)[0]


def test_a_legacy_file_shows_todays_names_only_for_methods_still_in_the_product():
    from condense.bench.legacy_report import renamed, today

    matched = {"config": {"continual": {"learner_distill": {"objective": "mean_matching", "weight_noise": 0.0}}}}
    bilevel = {"config": {"continual": {"learner_distill": {"objective": "bilevel", "weight_noise": 0.0}}}}
    noisy = {"config": {"continual": {"learner_distill": {"objective": "mean_matching", "weight_noise": 0.08}}}}
    assert today(matched, "herding_distilled_replay") == "mean_matched_replay"
    assert today(bilevel, "herding_distilled_replay") == today(noisy, "herding_distilled_replay") == "herding_distilled_replay"
    assert today(bilevel, "merged_joint") == "super_dataset" and today(bilevel, "merged_only") == "merged_only"
    results = {**matched, "runs": [{"strategy": "herding_distilled_replay"}], "summary": {"class": {"herding_distilled_replay": {}}}}
    assert renamed(results)["summary"] == {"class": {"mean_matched_replay": {}}}
    assert renamed(results)["runs"] == [{"strategy": "mean_matched_replay"}]


def test_the_settings_tables_name_what_each_file_changed_and_skip_files_without_their_strategies():
    from condense.bench.continual_report import changed_settings, options_table, super_dataset_table

    defaults = _sequence_results({"class": {"random_replay": [-0.3] * 5}}, {"class": {"joint": [0.8, 0.8], "super_dataset": [0.72, 0.6]}})
    defaults["config"] = {"overrides": ["task_sequence=x", "threads=1"]}
    longer = _sequence_results({}, {"class": {"joint": [0.8, 0.8], "super_dataset": [0.6, 0.76]}})
    longer["config"] = {"overrides": ["continual.super_dataset.outer_steps=800", "continual.strategies=[joint,super_dataset]",
                                      "threads=1", "out=runs/x"]}
    assert changed_settings(defaults) == "defaults"
    assert changed_settings(longer) == "`continual.super_dataset.outer_steps=800`"
    replay = options_table([defaults, longer])
    assert len(replay) == 3 and "| a → b | defaults | -30.0 ± 0.0 / " in replay[2]  # the run without memories is left out
    merged = super_dataset_table([defaults, longer])
    assert merged[2:] == ["| a → b | defaults | 90.0%, 75.0% | 66.0 ± 0.0 |",
                          "| a → b | `continual.super_dataset.outer_steps=800` | 75.0%, 95.0% | 68.0 ± 0.0 |"]
