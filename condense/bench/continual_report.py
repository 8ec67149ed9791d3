"""The main job's results: ``docs/results/continual.md`` and the index's headline tables, from the ``results.json``
files ``python -m condense.run`` writes (copied by ``benchmarks/continual.py`` to
``benchmarks/results/continual_[<name>_]<sequence>.json``).

A file is *current* when today's code made it (its config has today's strategy settings); older files are read by
:mod:`condense.bench.legacy_report`. Every comparison in the text is paired by seed and read with the one noise rule
of :func:`condense.report.tables.verdict`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from condense.report.plots import accuracy_matrices, forgetting_curves
from condense.report.tables import gpu_note, points, results_table, signed_points, summarize_values, table_head, table_row, verdict

# The memories made of distilled data and of real rows; the bar holds the best of the first against the best of the
# second. The super-dataset is held against joint training.
DISTILLED_MEMORIES = ("distilled_text_replay", "mean_matched_replay")
REAL_MEMORIES = ("random_replay", "herding_replay")
MEMORIES = (*REAL_MEMORIES, *DISTILLED_MEMORIES)
MERGED_BAR = 0.85  # super_dataset / joint, final accuracy on every task
TIME_BAR_MINUTES = 20  # the default command, its distilled sets cached


def is_current(results: dict) -> bool:
    """Whether today's code made the file: its continual config has today's strategy-owned settings."""
    return "mean_matched_replay" in results["config"]["continual"]


def file_name(results: dict) -> str:
    return results.get("name", "continual_" + "_then_".join(results["sequence"]))


def variant_name(results: dict) -> str:
    """The ``--name`` a variant's file was written with ('' for a sequence at the defaults)."""
    slug = "_then_".join(results["sequence"])
    return file_name(results).removeprefix("continual_").removesuffix(slug).removesuffix("_")


def at_defaults(results: dict) -> bool:
    """Whether the file ran the main job with its default settings: a sequence chosen, and at most the number of
    threads changed (which changes how fast, not what is computed)."""
    overrides = results["config"].get("overrides", [])
    return not variant_name(results) and all(o.startswith(("task_sequence", "threads=")) for o in overrides)


def default_command(results: dict) -> bool:
    """Whether the file ran the default command itself, threads included: the one whose time the bar is about."""
    return at_defaults(results) and not any(o.startswith("threads=") for o in results["config"].get("overrides", []))


def arrow(results: dict) -> str:
    return " → ".join(results["sequence"])


def task_bwt(runs: list[dict], scenario: str, strategy: str, task: int = 0) -> dict[int, float]:
    """Each seed's BWT on ``task`` alone: its final accuracy minus its accuracy right after it was learned."""
    return {r["seed"]: r["accuracy_matrix"][-1][task] - r["accuracy_matrix"][task][task]
            for r in runs if r["scenario"] == scenario and r["strategy"] == strategy}


def first_task_bwt(results: dict, scenario: str, strategy: str) -> dict | None:
    values = list(task_bwt(results["runs"], scenario, strategy).values())
    return summarize_values(values) if values else None


def paired_difference(results: dict, scenario: str, a: str, b: str, task: int = 0) -> dict:
    """Mean ± std over seeds of ``a``'s BWT on ``task`` minus ``b``'s, paired by seed."""
    first, second = task_bwt(results["runs"], scenario, a, task), task_bwt(results["runs"], scenario, b, task)
    return summarize_values([first[seed] - second[seed] for seed in sorted(first) if seed in second])


def best(results: dict, scenario: str, candidates: tuple[str, ...]) -> str | None:
    """The candidate with the highest mean BWT on the first task, among those the file ran."""
    present = [s for s in candidates if s in results["summary"].get(scenario, {})]
    return max(present, key=lambda s: first_task_bwt(results, scenario, s)["mean"]) if present else None


def merged_ratios(results: dict, scenario: str, merged: str = "super_dataset") -> list[float] | None:
    """``merged``'s final accuracy over joint training's, per task; None when the file lacks either."""
    summary = results["summary"].get(scenario, {})
    if merged not in summary or "joint" not in summary:
        return None
    return [m["mean"] / j["mean"] for m, j in zip(summary[merged]["final_accuracy"], summary["joint"]["final_accuracy"])]


def minutes(results: dict) -> tuple[float, bool]:
    """The command's wall time in minutes without making distilled sets, and whether any were made: a file that
    records how long its sets took (``sets_seconds``) counts them out only when they were not read from the cache."""
    wall = results.get("benchmark", {}).get("wall_seconds", results["seconds"])
    made = results.get("sets_seconds", 0) > 60  # reading cached sets and the data takes seconds; distilling, minutes
    return (wall - results.get("sets_seconds", 0) if made else wall) / 60, made


def bar_rows(results: dict) -> list[str]:
    """The bars of the main job: the best distilled memory against the best real one, the super-dataset against joint
    training, and (for the default command) its time."""
    rows, first = [], results["sequence"][0]
    for scenario in results["summary"]:
        distilled, real = best(results, scenario, DISTILLED_MEMORIES), best(results, scenario, REAL_MEMORIES)
        if scenario == "class" and distilled and real:
            d = paired_difference(results, scenario, distilled, real)
            bwt = (first_task_bwt(results, scenario, distilled), first_task_bwt(results, scenario, real))
            rows.append(table_row([
                f"{scenario}-incremental: best distilled memory ({distilled}) BWT on {first} ≥ best real memory's ({real})",
                f"{points(bwt[0])} vs {points(bwt[1])}: {signed_points(d)} (paired by seed, n = {d['n']})",
                "yes" if d["mean"] >= 0 else "no"]))
        ratios = merged_ratios(results, scenario)
        if scenario == "class" and ratios:
            cells = ", ".join(f"{name} {100 * r:.1f}%" for name, r in zip(results["sequence"], ratios))
            rows.append(table_row([f"{scenario}-incremental: super_dataset / joint on each task (≥ {100 * MERGED_BAR:.0f}%)",
                                   cells, "yes" if min(ratios) >= MERGED_BAR else "no"]))
    if default_command(results):
        spent, made = minutes(results)
        note = "without distilling its sets, which this run did first" if made else "its distilled sets cached"
        rows.append(table_row([f"the default command ≤ {TIME_BAR_MINUTES} min ({note})", f"{spent:.1f} min",
                               "yes" if spent <= TIME_BAR_MINUTES else "no"]))
    return rows


def reading(results: dict) -> list[str]:
    """What the tables say, every number and comparison read from the file."""
    first, lines = results["sequence"][0], []
    for scenario, by_strategy in results["summary"].items():
        parts = []
        for memory in DISTILLED_MEMORIES:
            for real in REAL_MEMORIES:
                if memory in by_strategy and real in by_strategy:
                    d = paired_difference(results, scenario, memory, real)
                    kept = verdict(d, f"more of {first} than", f"less of {first} than", f"as much of {first} as")
                    parts.append(f"{memory} keeps {kept} {real} ({signed_points(d)} points of BWT)")
        if "naive" in by_strategy:
            forgot = first_task_bwt(results, scenario, "naive")
            parts.append(f"naive fine-tuning loses {-100 * forgot['mean']:.1f} points of {first}")
        ratios = merged_ratios(results, scenario)
        if ratios:
            parts.append("the super-dataset alone reaches " + ", ".join(
                f"{100 * r:.0f}% of joint training on {name}" for name, r in zip(results["sequence"], ratios)))
        if parts:
            lines.append(f"- {scenario}-incremental: {'; '.join(parts)}.")
    return [*lines, ""] if lines else []


def regenerate(results: dict) -> str:
    """The command that regenerates the file, and the one it ran."""
    variant = ["--name", variant_name(results)] if variant_name(results) else []
    overrides = results["config"].get("overrides", [])
    return (f"`{shlex.join(['python', 'benchmarks/continual.py', *variant, *overrides])}` (runs "
            f"`{shlex.join(['python', '-m', 'condense.run', *overrides])}`)")


def machine_line(results: dict) -> str:
    m = results["machine"]
    return f"{m['platform']}, {m['cpu_count']} cores, {m['torch_threads']} torch threads{gpu_note(m)}"


def section(results: dict, figures: Path) -> list[str]:
    """One sequence at the defaults (or a named variant): its bars, tables, reading and figures."""
    file = file_name(results)
    lines = [f"## {arrow(results)}" + (f" (variant `{variant_name(results)}`)" if variant_name(results) else ""),
             "", f"Regenerate: {regenerate(results)}. Machine: {machine_line(results)}; seeds {results['config']['continual']['seeds']}.", ""]
    bars = bar_rows(results)
    if bars:
        lines += [*table_head(["bar", "measured", "met"]), *bars, ""]
    lines += [results_table(results, changed_settings(results) if variant_name(results) else ""), ""]
    lines += reading(results)
    figures.mkdir(parents=True, exist_ok=True)
    for figure, draw in (("forgetting_curves", forgetting_curves), ("accuracy_matrices", accuracy_matrices)):
        if draw(results, figures / f"{file}_{figure}.png"):  # no matrices without a sequential strategy
            lines += [f"![{figure}](figures/{file}_{figure}.png)", ""]
    return lines


def sequences_table(all_results: list[dict], scenario: str = "class") -> list[str]:
    """The headline: per sequence, each memory's BWT on the first task, the best distilled memory minus the best
    real one (paired by seed), and the super-dataset's share of joint training on its weakest task."""
    columns = ["sequence", "naive", *MEMORIES, "best distilled − best real", "super_dataset / joint (weakest task)"]
    lines = table_head(columns, "l" + "r" * (len(columns) - 1))
    for results in all_results:
        if scenario not in results["summary"]:
            continue
        cells = [points(first_task_bwt(results, scenario, s)) if s in results["summary"][scenario] else "—"
                 for s in ("naive", *MEMORIES)]
        distilled, real = best(results, scenario, DISTILLED_MEMORIES), best(results, scenario, REAL_MEMORIES)
        gap = "—" if not (distilled and real) else (
            f"{signed_points(paired_difference(results, scenario, distilled, real))} ({distilled} − {real})")
        ratios = merged_ratios(results, scenario)
        weakest = "—" if not ratios else f"{100 * min(ratios):.1f}%"
        lines.append(table_row([arrow(results), *cells, gap, weakest]))
    return lines


def changed_settings(results: dict) -> str:
    """What a file's command changed of the defaults: its overrides, less where it ran and which strategies."""
    kept = [o for o in results["config"].get("overrides", [])
            if not o.startswith(("task_sequence", "threads=", "out=", "continual.strategies="))]
    return ", ".join(f"`{o}`" for o in kept) or "defaults"


def options_table(files: list[dict], scenario: str = "class") -> list[str]:
    """One question, one table: each memory's BWT on the first task and final average accuracy under the defaults and
    each variant of the replay settings; files without a memory are left out."""
    lines = table_head(["sequence", "settings", *MEMORIES], "ll" + "r" * len(MEMORIES))
    for results in files:
        summary = results["summary"].get(scenario, {})
        if not any(s in summary for s in MEMORIES):
            continue
        cells = [f"{points(first_task_bwt(results, scenario, s))} / {points(summary[s]['average_accuracy'])}"
                 if s in summary else "—" for s in MEMORIES]
        lines.append(table_row([arrow(results), changed_settings(results), *cells]))
    return lines


def super_dataset_table(files: list[dict], scenario: str = "class") -> list[str]:
    """The super-dataset against joint training under the defaults and each variant of its settings: its share of
    joint's final accuracy on every task, and its final average accuracy."""
    lines = table_head(["sequence", "settings", "super_dataset / joint, each task", "super_dataset, average"], "llrr")
    for results in files:
        ratios = merged_ratios(results, scenario)
        if ratios is None:
            continue
        average = results["summary"][scenario]["super_dataset"]["average_accuracy"]
        lines.append(table_row([arrow(results), changed_settings(results),
                                ", ".join(f"{100 * r:.1f}%" for r in ratios), points(average)]))
    return lines
