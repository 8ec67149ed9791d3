"""The main job's sections of ``docs/results.md``: a task sequence's bars, tables, reading and figures, from the
``results.json`` that ``python -m condense.run`` wrote (copied to ``benchmarks/results/continual_<sequence>.json``)."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

from condense.jobs.collect import flatten
from condense.config.parsing import compose
from condense.report.plots import accuracy_matrices, forgetting_curves, memory_sweep
from condense.report.tables import points, results_table, summarize_values, table_head
from condense.config.schema import ContinualConfig


def task_bwt(runs: list[dict], scenario: str, strategy: str, task: int = 0) -> dict[int, float]:
    """Each seed's BWT on ``task`` alone (the stream metric averages every earlier task: the same for two tasks)."""
    return {r["seed"]: r["accuracy_matrix"][-1][task] - r["accuracy_matrix"][task][task]
            for r in runs if r["scenario"] == scenario and r["strategy"] == strategy}


def paired_difference(runs: list[dict], scenario: str, better: str, worse: str, task: int = 0) -> dict:
    """Mean ± std over seeds of ``better``'s BWT on ``task`` minus ``worse``'s, paired by seed."""
    a, b = task_bwt(runs, scenario, better, task), task_bwt(runs, scenario, worse, task)
    return summarize_values([a[seed] - b[seed] for seed in sorted(a) if seed in b])


# The memories made of distilled data (the per-task sets in two forms, and the memory condensed against the learner),
# of which the best is held to the bars; and the fresh models trained on the merged super-dataset only.
DISTILLED_REPLAYS = ("distilled_replay", "distilled_text_replay", "condensed_replay", "learner_distilled_replay",
                     "herding_distilled_replay")
MERGED = ("merged_only", "merged_learned", "merged_joint")
# Merged-only / joint, on every task: the bar per scenario.
MERGED_BARS = {"task": 0.90, "class": 0.85}


def best_distilled(results: dict, scenario: str) -> str | None:
    """The distilled replay whose BWT on the first task, paired with random replay's by seed, is highest."""
    present = [s for s in DISTILLED_REPLAYS if s in results["summary"][scenario]]
    if not present or "random_replay" not in results["summary"][scenario]:
        return None
    return max(present, key=lambda s: paired_difference(results["runs"], scenario, s, "random_replay")["mean"])


def bar_rows(results: dict) -> list[str]:
    """The rows of the bars table: the best distilled replay against real replay, and merged-only against joint."""
    names, summary, runs = results["sequence"], results["summary"], results["runs"]
    rows = []
    for scenario in summary:
        best = best_distilled(results, scenario)
        if best is not None:
            # The class scenario's bar is against both real memories; the task scenario's against random replay.
            for real in ("random_replay", "herding_replay") if scenario == "class" else ("random_replay",):
                if real not in summary[scenario]:
                    continue
                d = paired_difference(runs, scenario, best, real)
                first_task = {s: summarize_values(list(task_bwt(runs, scenario, s).values())) for s in (best, real)}
                if scenario == "class":
                    goal, met = ("≥ +5 points", d["mean"] >= 0.05) if real == "random_replay" else ("≥ 0", d["mean"] >= 0)
                else:  # beyond one standard error of the paired mean
                    goal, met = "≥ 0 beyond one standard error", d["mean"] - d["std"] / d["n"] ** 0.5 >= 0
                rows.append(
                    f"| {scenario}-incremental: best distilled replay ({best}) BWT on {names[0]} − {real}'s ({goal}) | "
                    f"{points(first_task[best])} vs {points(first_task[real])}: "
                    f"{100 * d['mean']:+.1f} ± {100 * d['std']:.1f} (paired by seed, n = {d['n']}) | {'yes' if met else 'no'} |"
                )
        for merged in MERGED:
            if merged in summary[scenario] and "joint" in summary[scenario]:
                ratios = [m["mean"] / j["mean"] for m, j in
                          zip(summary[scenario][merged]["final_accuracy"], summary[scenario]["joint"]["final_accuracy"])]
                cells = ", ".join(f"{n} {100 * r:.1f}%" for n, r in zip(names, ratios))
                bar = MERGED_BARS[scenario]
                rows.append(f"| {scenario}-incremental: {merged} / joint on each task (≥ {100 * bar:.0f}%) | {cells} | "
                            f"{'yes' if min(ratios) >= bar else 'no'} |")
    return rows


# A distilled memory started from a real one: paired with it, it shows what distilling adds to its start.
STARTED_FROM = {"herding_distilled_replay": "herding_replay"}


def _verdict(runs: list[dict], scenario: str, form: str, against: str, first: str, named: str | None = None) -> str:
    d = paired_difference(runs, scenario, form, against)
    verb = "keeps more" if d["mean"] > 0 else "keeps less"
    return f"{form} {verb} {first} than {named or against} ({100 * d['mean']:+.1f} ± {100 * d['std']:.1f} points of BWT)"


def reading(results: dict) -> list[str]:
    """What the tables say about distilled replay; every number and every comparison is read from the results."""
    first = results["sequence"][0]
    lines = []
    for scenario, by_strategy in results["summary"].items():
        forms = [s for s in DISTILLED_REPLAYS if s in by_strategy]
        if "random_replay" not in by_strategy or not forms:
            continue
        verdicts = [_verdict(results["runs"], scenario, form, "random_replay", first) for form in forms]
        verdicts += [_verdict(results["runs"], scenario, form, start, first, f"{start}, the rows it is distilled from")
                     for form, start in STARTED_FROM.items() if {form, start} <= set(by_strategy)]
        losses = {s: by_strategy[s]["memory_loss"] for s in by_strategy if by_strategy[s].get("memory_loss")}
        fits = ", ".join(f"{s} {v['mean']:.3f} ± {v['std']:.3f}" for s, v in losses.items())
        lines.append(f"- {scenario}-incremental: {'; '.join(verdicts)}. Cross-entropy of each memory under the model "
                     f"when the next task starts: {fits}.")
    if not lines:
        return []
    return [
        "Reading the tables. A distilled set is optimised to be learned from in a few steps; where the model fits it",
        "after its task with a lower loss than it fits real examples (the memory losses below), replaying it gives",
        "little gradient until the drift has already misclassified it; that is a likely reason, not a proven one,",
        "why such a set can be a weaker replay memory than its value as training data suggests. The per-task sets",
        "in embedding form (distilled_replay) are the weakest memories in the class-incremental scenario; a likely",
        "reason, not measured separately, is that their off-manifold inputs are easy to tell from real text, so",
        "keeping them in the old classes does not keep real examples there. Text-form sets are real tokens.",
        "",
        *lines,
        "",
    ]


# The groups whose values decide a continual job's numbers, as its results file stores them.
REPRODUCED_GROUPS = ("model", "distill", "continual")
# Settings added to the schema after results files were written, each with whether a (flattened) config uses it. A
# file made before one ran without it, so it lacks nothing it needs when its regenerating command does not use it.
ADDED_SETTINGS = {
    "continual.refit.": lambda flat: flat.get("continual.refit.steps", 0) != 0,
    "continual.learner_distill.": lambda flat: bool(set(STRATEGY_SETTINGS["learner_distill"])
                                                    & set(flat.get("continual.strategies", []))),
    "continual.feature_anchor.": lambda flat: flat.get("continual.feature_anchor.weight", 0) != 0,
    # Before these two, every learner-distilled memory was bilevel and noiseless: their defaults.
    "continual.learner_distill.objective": lambda flat: flat.get("continual.learner_distill.objective") != "bilevel",
    "continual.learner_distill.weight_noise": lambda flat: flat.get("continual.learner_distill.weight_noise") != 0,
}


def _unused_added_setting(key: str, flat: dict) -> bool:
    """Whether ``key`` (flattened, or a group's prefix) is one of :data:`ADDED_SETTINGS` that the flattened config
    ``flat`` leaves unused."""
    return any(key.startswith(prefix) and not uses(flat) for prefix, uses in ADDED_SETTINGS.items())


def _override_value(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_override_value(item) for item in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def regeneration(results: dict) -> tuple[list[str], list[str]]:
    """The overrides that make today's command give the config a results file was made with, and the keys today's
    schema has that the file lacks (made by an earlier condense: no override brings back what the code did then).

    A file's own overrides stop regenerating it when a default changes later (a smaller default preset, a strategy
    added to ``continual=full``); the stored config says what it was, so the difference is spelled out."""
    stored = results["config"]
    today = dataclasses.asdict(compose("run", stored.get("overrides", [])))
    extra, missing = [], []
    for group in REPRODUCED_GROUPS:
        then, now = flatten(stored.get(group, {}), f"{group}."), flatten(today[group], f"{group}.")
        regenerating = {**now, **{key: value for key, value in then.items() if key in now}}  # with the extras below
        for key, value in now.items():
            if key not in then:
                if not _unused_added_setting(key, regenerating):
                    missing.append(key)
            elif then[key] != value:
                extra.append(f"{key}={_override_value(then[key])}")
    return extra, missing


def continual_section(results: dict, figures: Path) -> list[str]:
    """The main job's results: bars, the table per scenario, and the figures redrawn from the same file."""
    names = results["sequence"]
    slug = "_then_".join(names)
    file = results.get("name", f"continual_{slug}")  # a variant's file (benchmarks/continual.py --name) is named apart
    variant = ["--name", file.removeprefix("continual_").removesuffix(f"_{slug}")] if file != f"continual_{slug}" else []
    cfg = results["config"]["continual"]
    # Results files written before memory_per_class kept a fixed number of examples per past task.
    memory = (f"{cfg['memory_per_class']} examples per class" if "memory_per_class" in cfg
              else f"{cfg['memory_per_task']} examples")
    summary = results["summary"]
    overrides = results["config"].get("overrides", [])
    extra, missing = regeneration(results)
    if missing:  # no override gives back what an earlier condense did: its own code regenerates the file
        where = (f"Made by an earlier condense, whose config lacked {', '.join(missing[:3])}"
                 f"{' and more' if len(missing) > 3 else ''}; at the commit that wrote the file "
                 f"(`git log -- benchmarks/results/{file}.json`), regenerate:")
    else:
        where = "Regenerate:"
    lines = [
        f"## Continual learning: {' → '.join(names)} (" + ("the main job)" if file == f"continual_{slug}" else f"variant run: `{file}`)"),
        "",
        f"{where} `{shlex.join(['python', 'benchmarks/continual.py', *variant, *overrides, *([] if missing else extra)])}` "
        f"(ran `{shlex.join(['python', '-m', 'condense.run', *overrides])}`"
        + (f", when the defaults were {', '.join(extra)}" if extra and not missing else "")
        + f", then copied its `results.json` to `benchmarks/results/{file}.json`). Machine: {results['machine']['platform']}, "
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
    reused = results.get("benchmark", {}).get("reused_runs", 0)
    time_note = f"; {reused} of its {len(results['runs'])} strategy runs were read back from an earlier job" if reused else ""
    lines += table_head(["bar", "measured", "met"])
    if overrides or extra or missing:  # the time bar is about today's default command only
        lines.append(f"| wall time of this command (not today's default; includes distilling any uncached sets{time_note}) | "
                     f"{wall / 60:.1f} min | — |")
    else:
        lines.append(f"| default command ≤ 20 min (distilled sets cached{time_note}) | {wall / 60:.1f} min | {'yes' if wall <= 1200 else 'no'} |")
    lines += bar_rows(results)
    lines += ["", results_table(results), ""]
    lines += reading(results)
    figures.mkdir(parents=True, exist_ok=True)
    for figure, draw in (("forgetting_curves", forgetting_curves), ("accuracy_matrices", accuracy_matrices)):
        if draw(results, figures / f"{file}_{figure}.png"):  # no matrices without a sequential strategy
            lines += [f"![{figure}](figures/{file}_{figure}.png)", ""]
    return lines


def memory_sweeps(all_results: list[dict]) -> dict[tuple[str, ...], dict[int, dict]]:
    """The results of each sequence run at several memories per class with every other continual setting equal (the
    strategies aside: a sweep may run fewer at some memories), keyed by sequence, then memory per class. Two files at
    one memory (a later job that ran the replay strategies an earlier one left out) count as one: a strategy is read
    from the first file, in ``all_results``' order, that has it."""
    groups: dict[tuple, dict[int, dict]] = {}
    for results in all_results:
        settings = _without_strategy_settings_at_default(_without_unused_added_settings(results["config"]["continual"]))
        memory = settings.pop("memory_per_class", None)
        if memory is None:  # written before memory_per_class
            continue
        if not any(s.get("memory_loss") is not None for by in results["summary"].values() for s in by.values()):
            continue  # no strategy keeps a memory (a job of merged-only strategies): nothing to sweep
        settings.pop("strategies")
        by_memory = groups.setdefault((tuple(results["sequence"]), json.dumps(settings, sort_keys=True)), {})
        by_memory[memory] = results if memory not in by_memory else _combined(by_memory[memory], results)
    return {(sequence, method_overrides(json.loads(settings))): by_memory
            for (sequence, settings), by_memory in groups.items() if len(by_memory) > 1}


def _without_unused_added_settings(settings: dict) -> dict:
    """``continual`` settings less the added settings (:data:`ADDED_SETTINGS`) they leave unused: a file made before
    one existed lacks it and ran as one that does not use it, so the two compare equal."""
    flat = flatten(settings, "continual.")
    return {key: value for key, value in settings.items() if not _unused_added_setting(f"continual.{key}.", flat)}


# Continual settings that change how replay learns rather than how big the experiment is: a sweep run with one of
# them away from its default is named by it, beside the plain sweep of the same sequence.
METHOD_SETTINGS = ("continual.refit.", "continual.memory_loss.", "continual.asymmetric_loss", "continual.feature_anchor.",
                   *(f"continual.{group}." for group in STRATEGY_SETTINGS))


def method_overrides(settings: dict) -> str:
    """The method settings of a sweep that differ from the schema's defaults, as overrides ('' for none)."""
    defaults = flatten(dataclasses.asdict(ContinualConfig()), "continual.")
    return " ".join(f"{key}={_override_value(value)}" for key, value in flatten(settings, "continual.").items()
                    if key.startswith(METHOD_SETTINGS) and key in defaults and value != defaults[key])


def _without_strategy_settings_at_default(settings: dict) -> dict:
    defaults = dataclasses.asdict(ContinualConfig())
    # A file made before a setting of the group existed ran at what is now its default.
    return {key: value for key, value in settings.items()
            if not (key in STRATEGY_SETTINGS and {**defaults[key], **value} == defaults[key])}


def _combined(first: dict, later: dict) -> dict:
    """``first``'s summaries with the replay strategies (those that keep a memory) only ``later`` has, and both
    files' names in ``files``; ``first`` itself when ``later`` adds none."""
    added = {scenario: {name: s for name, s in by_strategy.items()
                        if s.get("memory_loss") is not None and name not in first["summary"].get(scenario, {})}
             for scenario, by_strategy in later["summary"].items()}
    if not any(added.values()):
        return first
    summary = {s: {**first["summary"].get(s, {}), **added.get(s, {})} for s in dict.fromkeys([*first["summary"], *added])}
    return {**first, "summary": summary, "files": [*_files(first), *_files(later)]}


def _files(results: dict) -> list[str]:
    """The results files (names without ``.json``) a sweep's entry was read from."""
    return results.get("files", [results.get("name", "continual_" + "_then_".join(results["sequence"]))])


def memory_sweep_section(sequence: tuple[str, ...], by_memory: dict[int, dict], figures: Path, variant: str = "") -> list[str]:
    """Final average accuracy and BWT of every replay strategy at each memory per class: the table and the plot;
    ``variant`` names the method settings the sweep ran with (:func:`memory_sweeps`' keys)."""
    memories = sorted(by_memory)
    slug = "_".join(filter(None, ["_then_".join(sequence),
                                  re.sub(r"[^a-z0-9]+", "_", variant.replace("continual.", "").lower()).strip("_")]))
    files = ", ".join(" + ".join(f"`{name}.json`" for name in _files(by_memory[m])) + f" ({m} per class)" for m in memories)
    lines = [f"## Memory budget: {' → '.join(sequence)}" + (f" (`{variant}`)" if variant else ""), "",
             f"From {files}; each file's section above gives the command that regenerates it. Every distilled set is "
             f"distilled at exactly its memory per class. Cells: final average accuracy / BWT on earlier tasks, mean ± std "
             f"over seeds {by_memory[memories[0]]['config']['continual']['seeds']}.", ""]
    lines += table_head(["scenario", "strategy", *[f"{m} per class" for m in memories]], "ll" + "r" * len(memories))
    for scenario in by_memory[memories[0]]["summary"]:
        strategies = dict.fromkeys(name for m in memories for name, s in by_memory[m]["summary"].get(scenario, {}).items()
                                   if s.get("memory_loss") is not None)
        for strategy in strategies:
            cells = []
            for m in memories:
                s = by_memory[m]["summary"].get(scenario, {}).get(strategy)
                cells.append("—" if s is None else f"{points(s['average_accuracy'])} / {points(s['bwt'])}")
            lines.append(f"| {scenario} | {strategy} | " + " | ".join(cells) + " |")
    figure = f"memory_sweep_{slug}.png"
    figures.mkdir(parents=True, exist_ok=True)
    memory_sweep(by_memory, figures / figure)
    return [*lines, "", f"![memory_sweep](figures/{figure})", ""]
