"""Measurements made before this release's defaults: what the memory budget and the replay options did at
``continual=full`` (``docs/results/continual.md``), and what every method that has left the product measured
(``docs/results/experimental.md``).

These files were written by condense at commit :data:`LEGACY_COMMIT` or earlier, under the names strategies had then.
Each table names its files; every file stores the command that made it, which regenerates it at that commit (``git
checkout bcea196``). Strategies that are still in the product are shown under today's names (:func:`today`).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from condense.bench.continual_report import first_task_bwt, merged_ratios, paired_difference
from condense.report.tables import points, signed_points, summarize_values, table_head, table_row, verdict

LEGACY_COMMIT = "bcea196"  # the last commit with the old strategy names and every removed method


def today(results: dict, strategy: str) -> str:
    """A legacy strategy's name today: the mean-matched memory was herding_distilled_replay with
    learner_distill.objective=mean_matching, the super-dataset merged_joint; other names are unchanged."""
    learner = results["config"]["continual"].get("learner_distill", {})
    if strategy == "herding_distilled_replay" and learner.get("objective") == "mean_matching" and not learner.get("weight_noise"):
        return "mean_matched_replay"
    return {"merged_joint": "super_dataset", "merged_learned": "merged_sets"}.get(strategy, strategy)


def renamed(results: dict) -> dict:
    """``results`` with its strategies under today's names (the bilevel herding_distilled_replay keeps its own)."""
    runs = [{**run, "strategy": today(results, run["strategy"])} for run in results["runs"]]
    summary = {scenario: {today(results, s): v for s, v in by.items()} for scenario, by in results["summary"].items()}
    return {**results, "runs": runs, "summary": summary}


def reproduce(files: dict[str, dict]) -> list[str]:
    """How to get each file back: its own command at :data:`LEGACY_COMMIT`."""
    lines = [f"Reproduce at commit `{LEGACY_COMMIT}` (`git checkout {LEGACY_COMMIT}`):", ""]
    for name, results in files.items():
        command = results.get("command") or shlex.join(["python", "-m", "condense.run", *results["config"].get("overrides", [])])
        lines.append(f"- `benchmarks/results/{name}.json`: `{command}`")
    return [*lines, ""]


def bwt_table(rows: list[tuple[str, dict]], strategies: tuple[str, ...], scenario: str = "class") -> list[str]:
    """BWT on the first task (mean ± std over seeds) of each strategy, a row per (label, results)."""
    lines = table_head(["run", *strategies], "l" + "r" * len(strategies))
    for label, results in rows:
        cells = [points(first_task_bwt(results, scenario, s)) if s in results["summary"].get(scenario, {}) else "—"
                 for s in strategies]
        lines.append(table_row([label, *cells]))
    return [*lines, ""]


def against(rows: list[tuple[str, dict]], method: str, reference: str, scenario: str = "class") -> list[str]:
    """One sentence per row: ``method`` against ``reference``, paired by seed, read with the noise rule."""
    lines = []
    for label, results in rows:
        summary = results["summary"].get(scenario, {})
        if method in summary and reference in summary:
            d = paired_difference(results, scenario, method, reference)
            kept = verdict(d, "more of the first task than", "less of the first task than", "as much of the first task as")
            lines.append(f"- {label}: {method} keeps {kept} {reference} ({signed_points(d)} points of BWT, n = {d['n']}).")
    return [*lines, ""] if lines else []


def final_table(rows: list[tuple[str, dict]], strategies: tuple[str, ...], scenario: str = "class") -> list[str]:
    """Final accuracy on every task (mean ± std over seeds), a row per (label, strategy)."""
    names = rows[0][1]["sequence"]
    lines = table_head(["run", "strategy", *(f"final {n}" for n in names)], "ll" + "r" * len(names))
    for label, results in rows:
        for strategy in strategies:
            summary = results["summary"].get(scenario, {}).get(strategy)
            if summary:
                lines.append(table_row([label, strategy, *(points(a) for a in summary["final_accuracy"])]))
    return [*lines, ""]


def merged_table(rows: list[tuple[str, dict]], strategies: tuple[str, ...]) -> list[str]:
    """Each merged strategy's final accuracy over joint training's, per task and scenario, and which is highest on
    its weakest task."""
    lines, reading = table_head(["run", "scenario", *strategies], "ll" + "r" * len(strategies)), []
    for label, results in rows:
        for scenario, summary in results["summary"].items():
            if "joint" not in summary:
                continue
            ratios = {s: merged_ratios(results, scenario, s) for s in strategies if s in summary}
            lines.append(table_row([label, scenario, *(" / ".join(f"{100 * r:.0f}%" for r in ratios[s]) if s in ratios
                                                       else "—" for s in strategies)]))
            top = max(ratios, key=lambda s: min(ratios[s]))
            reading.append(f"- {label}, {scenario}-incremental: {top} is highest on its weakest task "
                           f"({100 * min(ratios[top]):.0f}% of joint training).")
    return [*lines, "", *reading, ""]


def refit_table(files: list[tuple[str, dict]]) -> list[str]:
    """Validation accuracy on the first task after each re-fit variant, minus no re-fit, paired by seed."""
    lines = table_head(["run", "memory", "variant", "first task", "gain over no re-fit"], "lllrr")
    for label, results in files:
        for strategy in results["strategies"]:
            runs = [r for r in results["runs"] if r["strategy"] == strategy]
            for variant in results["variants"]:
                value = summarize_values([r["scores"][variant][0] for r in runs])
                gain = summarize_values([r["scores"][variant][0] - r["scores"]["none"][0] for r in runs])
                lines.append(table_row([label, today(results, strategy), variant, points(value), signed_points(gain)]))
    return [*lines, ""]


def _rows(files: dict[str, dict], names: dict[str, str]) -> list[tuple[str, dict]]:
    return [(label, renamed(files[name])) for name, label in names.items() if name in files]


def _section(title: str, what: str, body: Callable[[], list[str]], used: dict[str, dict]) -> list[str]:
    return [f"## {title}", "", what, "", *body(), *reproduce(used)]


SEQUENCES = {"ag_news_then_sst2": "ag_news → sst2", "sst2_then_ag_news": "sst2 → ag_news"}


def _pick(files: dict[str, dict], pattern: str, label: str = "{sequence}") -> dict[str, str]:
    """Files named ``pattern.format(sequence=...)`` for both two-task sequences, with their row labels."""
    return {pattern.format(sequence=s): label.format(sequence=arrow) for s, arrow in SEQUENCES.items()
            if pattern.format(sequence=s) in files}


def _average_accuracy(results: dict, strategy: str, scenario: str = "class") -> dict[int, float]:
    """Each seed's final accuracy averaged over the tasks."""
    return {r["seed"]: sum(r["accuracy_matrix"][-1]) / len(r["accuracy_matrix"][-1]) for r in results["runs"]
            if r["scenario"] == scenario and r["strategy"] == strategy}


def _ace_reading(files: dict[str, dict]) -> list[str]:
    """Per sequence and memory: the asymmetric loss's final average accuracy minus the plain run's, paired by seed."""
    lines = []
    for sequence, arrow in (("ag_news_then_sst2", "ag_news → sst2"), ("sst2_then_ag_news", "sst2 → ag_news")):
        plain, ace = files.get(f"continual_full_{sequence}"), files.get(f"continual_full_ace_{sequence}")
        if not (plain and ace):
            continue
        for strategy in ("random_replay", "herding_replay", "distilled_text_replay"):
            a, b = _average_accuracy(ace, strategy), _average_accuracy(plain, strategy)
            d = summarize_values([100 * (a[s] - b[s]) for s in sorted(a) if s in b])
            lines.append(f"- {arrow}, {strategy}: the final average accuracy is {verdict(d, 'higher', 'lower', 'no different')} "
                         f"with the asymmetric loss ({d['mean']:+.1f} ± {d['std']:.1f} points, n = {d['n']}).")
    return [*lines, ""] if lines else []


def memory_budget_page(files: dict[str, dict]) -> list[str]:
    """Earlier measurements of the memory budget and the replay options, at ``continual=full``."""
    budget = {f"continual_full{'' if m == 1 else f'_mem{m}'}_{s}": f"{arrow}, {m}/class"
              for s, arrow in SEQUENCES.items() for m in (1, 2, 4, 8, 16)}
    budget.update({f"continual_four_mem{m}_ag_news_then_sst2_then_imdb_then_rotten_tomatoes": f"four tasks, {m}/class"
                   for m in (1, 2, 4, 8)})
    budget = {name: label for name, label in budget.items() if name in files}
    matched = {**_pick(files, "continual_full_mm_{sequence}", "{sequence}, 1/class"),
               **_pick(files, "continual_full_mm_mem2_{sequence}", "{sequence}, 2/class")}
    options = {**_pick(files, "continual_full_{sequence}", "{sequence}, plain"),
               **_pick(files, "continual_full_der_{sequence}", "{sequence}, memory_loss.weight=1 (DER)"),
               **_pick(files, "continual_full_refit_{sequence}", "{sequence}, refit.steps=100")}
    real_and_text = ("random_replay", "herding_replay", "distilled_text_replay")
    lines = []
    if budget:
        lines += _section(
            "Earlier: memory per class (continual=full)",
            "Class-incremental BWT on the first task (points, mean ± std over 5 seeds) at 2,000 training rows per task "
            "(1,000 for four tasks), before the DER term became the default.",
            lambda: bwt_table(_rows(files, budget), real_and_text), {n: files[n] for n in budget})
    if matched:
        lines += _section(
            "Earlier: the mean-matched memory (continual=full)",
            "The same measure for the mean-matched memory beside the real memories it was run with.",
            lambda: bwt_table(_rows(files, matched), ("random_replay", "herding_replay", "mean_matched_replay"))
            + against(_rows(files, matched), "mean_matched_replay", "herding_replay"), {n: files[n] for n in matched})
    if options:
        lines += _section(
            "Earlier: replay options (continual=full)",
            "Each option applied to every memory; class-incremental BWT on the first task.",
            lambda: bwt_table(_rows(files, options), real_and_text), {n: files[n] for n in options})
    ace = {**_pick(files, "continual_full_{sequence}", "{sequence}, plain"),
           **_pick(files, "continual_full_ace_{sequence}", "{sequence}, asymmetric_loss=true")}
    if any("ace" in n for n in ace):
        lines += _section(
            "Earlier: ER-ACE's asymmetric cross-entropy (continual=full, continual.asymmetric_loss=true)",
            "The incoming task's rows scored over its own classes only, so that new classes do not push the old ones' "
            "logits down. Final accuracy on both tasks, class-incremental:",
            lambda: final_table(_rows(files, ace), ("random_replay", "herding_replay", "distilled_text_replay"))
            + _ace_reading(files),
            {n: files[n] for n in ace})
    return lines
