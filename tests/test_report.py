"""condense.report.tables's numbers and tables, and docs/results.md regenerated from the committed results files."""

from __future__ import annotations

import copy
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from condense.bench.report import write_report
from condense.report.tables import figure_path, points, pooled, section_header, signed_points, table_head, table_row

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


def test_the_bars_hold_the_best_distilled_replay_to_real_replay_by_seed_and_merged_sets_to_joint():
    from condense.bench.continual_report import bar_rows, best_distilled

    random = [-0.30, -0.25, -0.35, -0.28, -0.32]
    results = _sequence_results(
        {"class": {"random_replay": random, "herding_replay": [r + 0.02 for r in random],
                   "distilled_replay": [r - 0.10 for r in random], "distilled_text_replay": [r + 0.06 for r in random]},
         "task": {"random_replay": random, "herding_replay": random,
                  "condensed_replay": [r + d for r, d in zip(random, [0.01, -0.01, 0.02, 0.0, 0.0])]}},
        {"task": {"joint": [0.8, 0.8], "merged_only": [0.76, 0.70], "merged_learned": [0.8, 0.73]},
         "class": {"joint": [0.8, 0.8], "merged_learned": [0.70, 0.68]}},
    )
    assert best_distilled(results, "class") == "distilled_text_replay" and best_distilled(results, "task") == "condensed_replay"
    rows = bar_rows(results)
    by_bar = {row.split(" | ")[0]: row for row in rows}
    assert len(rows) == 6  # the task scenario's bar is against random replay only
    # Class: +6 points over random (goal +5) and +4 over herding (goal ≥ 0), every seed alike.
    assert by_bar["| class-incremental: best distilled replay (distilled_text_replay) BWT on a − random_replay's (≥ +5 points)"] \
        .endswith("+6.0 ± 0.0 (paired by seed, n = 5) | yes |")
    assert by_bar["| class-incremental: best distilled replay (distilled_text_replay) BWT on a − herding_replay's (≥ 0)"] \
        .endswith("+4.0 ± 0.0 (paired by seed, n = 5) | yes |")
    # Task: a mean gain of +0.4 with a standard error of 0.5 is not beyond one standard error.
    task_row = by_bar["| task-incremental: best distilled replay (condensed_replay) BWT on a − random_replay's (≥ 0 beyond one standard error)"]
    assert task_row.endswith("+0.4 ± 1.1 (paired by seed, n = 5) | no |")
    assert by_bar["| task-incremental: merged_only / joint on each task (≥ 90%)"].endswith("| a 95.0%, b 87.5% | no |")
    assert by_bar["| task-incremental: merged_learned / joint on each task (≥ 90%)"].endswith("| a 100.0%, b 91.2% | yes |")
    assert by_bar["| class-incremental: merged_learned / joint on each task (≥ 85%)"].endswith("| a 87.5%, b 85.0% | yes |")


def test_the_reading_pairs_a_distilled_memory_with_the_real_rows_it_started_from():
    from condense.bench.continual_report import reading

    random = [-0.30, -0.25, -0.35, -0.28, -0.32]
    results = _sequence_results({"class": {"random_replay": random, "herding_replay": [r + 0.20 for r in random],
                                           "herding_distilled_replay": [r + d for r, d in zip(random, [0.1, 0.1, 0.0, 0.1, 0.2])]}}, {})
    for strategy in results["summary"]["class"].values():
        strategy["memory_loss"] = {"mean": 0.1, "std": 0.0}
    line = next(line for line in reading(results) if line.startswith("- class-incremental"))
    assert "herding_distilled_replay keeps more a than random_replay (+10.0 ± 7.1 points of BWT)" in line
    assert "herding_distilled_replay keeps less a than herding_replay, the rows it is distilled from (-10.0 ± 7.1 points of BWT)" in line


def test_a_memory_sweep_groups_runs_that_differ_only_in_memory_and_plots_them(tmp_path):
    from condense.bench.continual_report import memory_sweep_section, memory_sweeps

    def at(memory: int, bwt: float, strategies: list[str], seeds=(0, 1, 2, 3, 4), name: str | None = None) -> dict:
        results = _sequence_results({"class": {s: [bwt] * len(seeds) for s in strategies}}, {})
        for run in results["runs"]:
            run["memory_fit"] = [{"loss": 0.1, "examples": 2}, {"loss": 0.1, "examples": 2}]
        from condense.report.tables import summarize_runs
        results["summary"] = {"class": {s: summarize_runs([r for r in results["runs"] if r["strategy"] == s]) for s in strategies}}
        results["config"] = {"continual": {"memory_per_class": memory, "seeds": list(seeds), "strategies": strategies}}
        if name:
            results["name"] = name
        return results

    one = at(1, -0.30, ["random_replay", "distilled_replay"], name="continual_full_a_then_b")
    two = at(2, -0.20, ["random_replay"], name="continual_full_mem2_a_then_b")
    other_seeds = at(4, -0.10, ["random_replay"], seeds=(0, 1, 2))  # other settings: not the same sweep
    sweeps = memory_sweeps([one, two, other_seeds])
    assert list(sweeps) == [(("a", "b"), "")] and sorted(sweeps[(("a", "b"), "")]) == [1, 2]
    lines = memory_sweep_section(("a", "b"), sweeps[(("a", "b"), "")], tmp_path)
    assert "| class | random_replay | 60.0 ± 0.0 / -30.0 ± 0.0 | 65.0 ± 0.0 / -20.0 ± 0.0 |" in lines
    assert "| class | distilled_replay | 60.0 ± 0.0 / -30.0 ± 0.0 | — |" in lines
    assert (tmp_path / "memory_sweep_a_then_b.png").stat().st_size > 10_000
    assert memory_sweeps([one, other_seeds]) == {}
    # A later job at one memory adds the strategies the first left out; the first file's are kept.
    more = at(2, -0.50, ["random_replay", "condensed_replay"], name="continual_full_mem2_more_a_then_b")
    combined = memory_sweeps([one, two, more])[(("a", "b"), "")]
    assert combined[2]["summary"]["class"]["random_replay"] == two["summary"]["class"]["random_replay"]
    assert combined[2]["summary"]["class"]["condensed_replay"] == more["summary"]["class"]["condensed_replay"]
    assert combined[1] is one and set(two["summary"]["class"]) == {"random_replay"}  # the inputs are left as they were
    lines = memory_sweep_section(("a", "b"), combined, tmp_path)
    assert "| class | condensed_replay | — | 50.0 ± 0.0 / -50.0 ± 0.0 |" in lines
    assert "`continual_full_mem2_a_then_b.json` + `continual_full_mem2_more_a_then_b.json` (2 per class)" in lines[2]
    # A job that adds no replay strategy (merged-only ones keep no memory) leaves its memory's results as they were.
    merged = at(1, -0.40, ["random_replay"], name="continual_full_merged_a_then_b")
    merged["summary"]["class"]["merged_joint"] = {**merged["summary"]["class"].pop("random_replay"), "memory_loss": None}
    assert memory_sweeps([merged, one, two])[(("a", "b"), "")][1] is one
    # The same sweep with the heads re-fitted on the memory is a sweep of its own, named by that setting.
    refits = [at(m, -0.1, ["random_replay"], name=f"continual_refit_mem{m}_a_then_b") for m in (1, 2)]
    for results in refits:
        results["config"]["continual"]["refit"] = {"steps": 100, "lr": 0.01, "start": "current"}
    sweeps = memory_sweeps([one, two, *refits])
    assert list(sweeps) == [(("a", "b"), ""), (("a", "b"), "continual.refit.steps=100")]
    lines = memory_sweep_section(("a", "b"), sweeps[(("a", "b"), "continual.refit.steps=100")], tmp_path, "continual.refit.steps=100")
    assert lines[0] == "## Memory budget: a → b (`continual.refit.steps=100`)"
    assert lines[-2] == "![memory_sweep](figures/memory_sweep_a_then_b_refit_steps_100.png)"
    # A file made after a setting was added stores it at its unused default; one made before lacks it: same sweep.
    later = at(4, -0.1, ["random_replay"], name="continual_full_mem4_a_then_b")
    later["config"]["continual"]["refit"] = {"steps": 0, "lr": 0.01, "start": "current"}
    later["config"]["continual"]["feature_anchor"] = {"weight": 0.0}
    assert sorted(memory_sweeps([one, two, later])[(("a", "b"), "")]) == [1, 2, 4]
    # A strategy's own settings (learner_distill) at their defaults beside the plain strategies: the same sweep; away
    # from them, a job of their own (here at a single memory, so no sweep at all).
    import dataclasses

    own = at(1, -0.2, ["random_replay", "herding_distilled_replay"], name="continual_full_hd_a_then_b")
    own["config"]["continual"]["learner_distill"] = dataclasses.asdict(LearnerDistillConfig())
    assert memory_sweeps([one, two, own])[(("a", "b"), "")][1]["files"] == ["continual_full_a_then_b", "continual_full_hd_a_then_b"]
    # Made before learner_distill.objective existed: at what is now its default, so still the same sweep.
    del own["config"]["continual"]["learner_distill"]["objective"]
    assert memory_sweeps([one, two, own])[(("a", "b"), "")][1]["files"] == ["continual_full_a_then_b", "continual_full_hd_a_then_b"]
    own["config"]["continual"]["learner_distill"]["outer_steps"] = 1
    assert memory_sweeps([one, two, own])[(("a", "b"), "")][1] is one
    # ... and at two memories, a sweep of its own, named by the setting, beside the plain one.
    own_two = copy.deepcopy(own)
    own_two["config"]["continual"]["memory_per_class"] = 2
    sweeps = memory_sweeps([one, two, own, own_two])
    assert sorted(sweeps) == [(("a", "b"), ""), (("a", "b"), "continual.learner_distill.outer_steps=1")]
    assert sweeps[(("a", "b"), "continual.learner_distill.outer_steps=1")] == {1: own, 2: own_two}


def test_a_results_file_made_under_other_defaults_names_the_overrides_that_give_its_config_back():
    import dataclasses
    import json

    from condense.bench.continual_report import ADDED_SETTINGS, REPRODUCED_GROUPS, regeneration
    from condense.jobs.collect import flatten
    from condense.config.parsing import compose

    job = dataclasses.asdict(compose("run", ["task_sequence=sst2_then_agnews"]))
    results = {"config": {**{g: job[g] for g in REPRODUCED_GROUPS}, "overrides": ["task_sequence=sst2_then_agnews"]}}
    assert regeneration(results) == ([], [])
    results["config"]["continual"] = {**job["continual"], "train_examples_per_task": 1000, "strategies": ["naive", "joint"]}
    assert regeneration(results) == (["continual.strategies=[naive,joint]", "continual.train_examples_per_task=1000"], [])
    del results["config"]["continual"]["asymmetric_loss"]  # a key an earlier schema did not have
    assert regeneration(results)[1] == ["continual.asymmetric_loss"]
    # A file made before continual.refit and learner_distilled_replay ran without them: nothing is missing while the
    # command that regenerates it does not use them either.
    results["config"]["continual"] = {k: v for k, v in job["continual"].items() if k not in ("refit", "learner_distill")}
    assert regeneration(results) == ([], [])
    results["config"]["overrides"] += ["continual.refit.steps=50", "continual=full"]
    extra, missing = regeneration(results)
    assert missing == ["continual.refit.steps", "continual.refit.lr", "continual.refit.start", "continual.refit.targets"]
    # continual=full lists learner_distilled_replay, but the file's own strategies (an extra override) do not.
    assert not any(key.startswith("continual.learner_distill") for key in missing)
    assert any(e.startswith("continual.strategies=") for e in extra)
    # A learner-distilled file made before learner_distill.objective and weight_noise ran at what are their defaults.
    overrides = ["task_sequence=sst2_then_agnews", "continual.strategies=[herding_distilled_replay]"]
    distilled = dataclasses.asdict(compose("run", overrides))
    distilled["continual"]["learner_distill"] = {k: v for k, v in distilled["continual"]["learner_distill"].items()
                                                 if k not in ("objective", "weight_noise")}
    results = {"config": {**{g: distilled[g] for g in REPRODUCED_GROUPS}, "overrides": overrides}}
    assert regeneration(results) == ([], [])
    results["config"]["overrides"] = [*overrides, "continual.learner_distill.objective=mean_matching"]
    assert regeneration(results) == ([], ["continual.learner_distill.objective"])

    # Every committed file: its stated command, with those overrides, composes to exactly the config it was made
    # with, or its section says that an earlier condense made it.
    fixed = 0
    for path in sorted((ROOT / "benchmarks" / "results").glob("continual_*.json")):
        stored = json.loads(path.read_text())
        extra, missing = regeneration(stored)
        if missing:
            continue
        fixed += bool(extra)
        today = dataclasses.asdict(compose("run", [*stored["config"].get("overrides", []), *extra]))
        for group in REPRODUCED_GROUPS:
            now, then = flatten(today[group], f"{group}."), flatten(stored["config"][group], f"{group}.")
            # Keys the file lacks are settings added since, which regeneration() found off in today's command.
            assert {key: now.get(key) for key in then} == then, (path.name, group)
            assert all(key in then or key.startswith(tuple(ADDED_SETTINGS)) for key in now), (path.name, group)
    assert fixed >= 1  # the full-preset files made before merged_joint joined continual=full
