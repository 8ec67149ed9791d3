"""condense.report's numbers and tables, and docs/results.md regenerated from the committed results files."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from condense.bench.report import write_report
from condense.report import figure_path, points, pooled, section_header, signed_points, table_head, table_row

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


def test_the_committed_results_page_regenerates_byte_for_byte(tmp_path):
    doc, figures = tmp_path / "docs" / "results.md", tmp_path / "docs" / "figures"
    write_report(ROOT / "benchmarks" / "results", doc, figures)
    assert doc.read_bytes() == (ROOT / "docs" / "results.md").read_bytes()
    assert sorted(p.name for p in figures.iterdir()) == sorted(p.name for p in (ROOT / "docs" / "figures").iterdir())


def test_the_report_side_reads_results_without_loading_models_or_data():
    code = (
        "import sys\n"
        "from condense.bench import EXPERIMENTS, reporter\n"
        "import condense.bench.report\n"
        "[reporter(name) for name in EXPERIMENTS]\n"
        "running = ['transformers', 'sklearn', 'condense.models', 'condense.pipeline', 'condense.evaluate',\n"
        "           'condense.bench.common', 'condense.prompting', 'condense.heads']\n"
        "print([name for name in running if name in sys.modules])\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
