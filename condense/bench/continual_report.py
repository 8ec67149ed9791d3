"""The main job's sections of ``docs/results.md``: a task sequence's bars, tables, reading and figures, from the
``results.json`` that ``python -m condense.run`` wrote (copied to ``benchmarks/results/continual_<sequence>.json``)."""

from __future__ import annotations

from pathlib import Path

from condense.plots import accuracy_matrices, forgetting_curves
from condense.report import points, results_table, summarize_values, table_head


def paired_difference(runs: list[dict], scenario: str, better: str, worse: str, task: int = 0) -> dict:
    """Mean ± std over seeds of ``better``'s BWT on ``task`` minus ``worse``'s, paired by seed."""
    def bwt(strategy: str) -> dict[int, float]:
        return {r["seed"]: r["accuracy_matrix"][-1][task] - r["accuracy_matrix"][task][task]
                for r in runs if r["scenario"] == scenario and r["strategy"] == strategy}
    a, b = bwt(better), bwt(worse)
    return summarize_values([a[seed] - b[seed] for seed in sorted(a) if seed in b])


def reading(results: dict) -> list[str]:
    """What the tables say about distilled replay; every number and every comparison is read from the results."""
    first = results["sequence"][0]
    lines = []
    for scenario, by_strategy in results["summary"].items():
        if not {"random_replay", "distilled_replay", "distilled_text_replay"} <= set(by_strategy):
            continue
        verdicts = []
        for form in ("distilled_text_replay", "distilled_replay"):
            d = paired_difference(results["runs"], scenario, form, "random_replay")
            verb = "keeps more" if d["mean"] > 0 else "keeps less"
            verdicts.append(f"{form} {verb} {first} than random_replay ({100 * d['mean']:+.1f} ± {100 * d['std']:.1f} points of BWT)")
        losses = {s: by_strategy[s]["memory_loss"] for s in by_strategy if by_strategy[s].get("memory_loss")}
        fits = ", ".join(f"{s} {v['mean']:.3f} ± {v['std']:.3f}" for s, v in losses.items())
        lines.append(f"- {scenario}-incremental: {'; '.join(verdicts)}. Cross-entropy of each memory under the model "
                     f"when the next task starts: {fits}.")
    if not lines:
        return []
    return [
        "Reading the tables. A distilled set is optimised to be learned from in a few steps, and after its task the",
        "model fits it with a lower loss than it fits real examples (the memory losses below), so replaying it",
        "gives little gradient until the drift has already misclassified it; that is a likely reason why it is a",
        "weaker replay memory than its value as training data suggests, not a proven one. Continuous (embedding-form)",
        "sets are the weakest memories in the class-incremental scenario; a likely reason, not measured separately,",
        "is that their off-manifold inputs are easy to tell from real text, so keeping them in the old classes does",
        "not keep real examples there. Text-form sets are real tokens.",
        "",
        *lines,
        "",
    ]


def continual_section(results: dict, figures: Path) -> list[str]:
    """The main job's results: bars, the table per scenario, and the figures redrawn from the same file."""
    names = results["sequence"]
    slug = "_then_".join(names)
    cfg = results["config"]["continual"]
    # Results files written before memory_per_class kept a fixed number of examples per past task.
    memory = (f"{cfg['memory_per_class']} examples per class" if "memory_per_class" in cfg
              else f"{cfg['memory_per_task']} examples")
    summary = results["summary"]
    lines = [
        f"## Continual learning: {' → '.join(names)} (the main job)",
        "",
        f"Regenerate: `{' '.join(['python benchmarks/continual.py', *results['config'].get('overrides', [])])}` "
        f"(runs `{(results['command'] or 'python -m condense.run').strip()}`, then copies its `results.json` to "
        f"`benchmarks/results/continual_{slug}.json`). Machine: {results['machine']['platform']}, "
        f"{results['machine']['cpu_count']} cores, {results['machine']['torch_threads']} torch threads.",
        "",
        f"Setting: MiniLM; the top {cfg['trainable_layers']} encoder block and the heads train, the blocks below are "
        f"frozen; {cfg['train_examples_per_task']} training examples per task (stratified sample), one pass, "
        f"batch {cfg['batch_size']}, {cfg['optimizer']} lr {cfg['lr']}; memory: {memory} per past "
        f"task for every replay strategy ({cfg['replay_batch_size']} of them in every mini-batch); the distilled sets "
        f"have exactly that size and were distilled with `distill=last_layer` (the matching parameter mode). Accuracy on "
        f"a fixed sample of {cfg['test_examples_per_task']} test examples per task; mean ± std over seeds {cfg['seeds']}. "
        f"BWT, forgetting and forward transfer (FWT) are Avalanche's stream metrics; BWT = mean over earlier tasks of "
        f"(final accuracy − accuracy right after learning it).",
        "",
    ]
    wall = results.get("benchmark", {}).get("wall_seconds", results["seconds"])
    lines += table_head(["bar", "measured", "met"])
    if results["config"].get("overrides"):  # the time bar is about the default command only
        lines.append(f"| wall time of this command (not the default; includes distilling any uncached sets) | {wall / 60:.1f} min | — |")
    else:
        lines.append(f"| default command ≤ 20 min (distilled sets cached) | {wall / 60:.1f} min | {'yes' if wall <= 1200 else 'no'} |")
    for scenario in summary:
        for form in ("distilled_replay", "distilled_text_replay"):
            if form in summary[scenario] and "random_replay" in summary[scenario]:
                d = paired_difference(results["runs"], scenario, form, "random_replay")
                lines.append(
                    f"| {scenario}-incremental: {form} BWT on {names[0]} − random_replay's (goal ≥ +5 points) | "
                    f"{points(summary[scenario][form]['bwt'])} vs {points(summary[scenario]['random_replay']['bwt'])}: "
                    f"{100 * d['mean']:+.1f} ± {100 * d['std']:.1f} (paired by seed) | {'yes' if d['mean'] >= 0.05 else 'no'} |"
                )
        if "merged_only" in summary[scenario] and "joint" in summary[scenario]:
            merged, joint = summary[scenario]["merged_only"], summary[scenario]["joint"]
            ratios = [m["mean"] / j["mean"] for m, j in zip(merged["final_accuracy"], joint["final_accuracy"])]
            cells = ", ".join(f"{n} {100 * r:.1f}%" for n, r in zip(names, ratios))
            lines.append(f"| {scenario}-incremental: merged-only / joint on each task (≥ 85%) | {cells} | "
                         f"{'yes' if min(ratios) >= 0.85 else 'no'} |")
    lines += ["", results_table(results), ""]
    lines += reading(results)
    figures.mkdir(parents=True, exist_ok=True)
    for figure, draw in (("forgetting_curves", forgetting_curves), ("accuracy_matrices", accuracy_matrices)):
        draw(results, figures / f"continual_{slug}_{figure}.png")
        lines += [f"![{figure}](figures/continual_{slug}_{figure}.png)", ""]
    return lines
