"""The section of ``docs/results.md`` on re-fitting the heads on the replay memory (``continual.refit``), from the
files ``benchmarks/refit_validation.py`` writes: validation accuracy, never test accuracy, of each replay strategy's
final model under each refit variant, and the gain over no refit, paired by seed."""

from __future__ import annotations

from condense.bench.continual_report import method_overrides
from condense.report.tables import summarize_values, table_head


def _first(scores: list[float]) -> float:
    return scores[0]


def _average(scores: list[float]) -> float:
    return sum(scores) / len(scores)


def _gains(runs: list[dict], variant: str, value_of) -> dict:
    """Mean ± std over seeds of ``variant``'s score minus no refit's, each read by ``value_of`` from a run's scores."""
    return summarize_values([value_of(r["scores"][variant]) - value_of(r["scores"]["none"]) for r in runs])


def _cell(runs: list[dict], variant: str, value_of) -> tuple[str, str]:
    values = summarize_values([value_of(r["scores"][variant]) for r in runs])
    gains = _gains(runs, variant, value_of)
    gain = "—" if variant == "none" else f"{100 * gains['mean']:+.1f} ± {100 * gains['std']:.1f}"
    return f"{100 * values['mean']:.1f} ± {100 * values['std']:.1f}", gain


def refit_table(results: dict) -> list[str]:
    """Per strategy and variant: accuracy on the first task and on average over tasks, each with its paired gain."""
    first = results["sequence"][0]
    lines = table_head(["strategy", "refit", f"{first}", "gain", "average", "gain"], "llrrrr")
    for strategy in results["strategies"]:
        runs = [r for r in results["runs"] if r["strategy"] == strategy]
        for variant in ["none", *results["variants"]]:
            on_first, on_average = _cell(runs, variant, _first), _cell(runs, variant, _average)
            lines.append(f"| {strategy} | {variant} | {on_first[0]} | {on_first[1]} | {on_average[0]} | {on_average[1]} |")
    return lines


def best_variants(results: dict) -> list[str]:
    """Per strategy, the variant whose average accuracy gains most over no refit (paired by seed), and that gain."""
    lines = []
    for strategy in results["strategies"]:
        runs = [r for r in results["runs"] if r["strategy"] == strategy]
        best = max(results["variants"], key=lambda v: _gains(runs, v, _average)["mean"])
        lines.append(f"- {strategy}: best refit by average accuracy is \"{best}\", "
                     f"{100 * _gains(runs, best, _average)['mean']:+.1f} points on average and "
                     f"{100 * _gains(runs, best, _first)['mean']:+.1f} on {results['sequence'][0]}.")
    return lines


def refit_section(results: dict) -> list[str]:
    seeds = sorted({r["seed"] for r in results["runs"]})
    cfg = results["config"]["continual"]
    machine = results["machine"]
    method = method_overrides(cfg)  # a method setting the runs used beside the preset's (a feature anchor)
    return [
        f"## Re-fitting the heads on the memory: {' → '.join(results['sequence'])}, {results['scenario']}-incremental "
        f"(validation, {cfg['train_examples_per_task']} training rows per task)" + (f", with `{method}`" if method else ""),
        "",
        f"Regenerate: `{results['command']}`. Machine: {machine['platform']}, {machine['cpu_count']} cores, "
        f"{machine['torch_threads']} torch threads; {results['seconds'] / 60:.1f} min.",
        "",
        f"Each replay strategy runs as in the `continual=full` preset ({cfg['memory_per_class']} example per class of "
        f"each past task, {cfg['train_examples_per_task']} training rows per task)"
        + (f" with `{method}`" if method else "") + "; the model the last task leaves "
        "is copied and each copy's heads are re-fitted on the memory (`continual.refit`: full-batch Adam on the "
        "memory's features, blocks frozen). Accuracy in % on "
        f"{results['validation_rows_per_task']} rows per task of the training split that no strategy trains on "
        f"(not the test split), mean ± std over seeds {seeds}; gains are paired by seed against no refit.",
        "",
        *refit_table(results),
        "",
        *best_variants(results),
        "",
    ]
