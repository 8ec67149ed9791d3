"""Write ``docs/results.md`` from the committed JSON files in ``benchmarks/results/``.

    python benchmarks/report.py

Nothing here is typed by hand: every figure in the page is read from a results file.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import yaml

from condense import report as report_module
from condense.bench import EXPERIMENTS
from condense.evaluate import summarize
from condense.plots import accuracy_matrices, forgetting_curves

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "figures"
TASKS = ("ag_news", "sst2", "imdb", "rotten_tomatoes")
SETS = ("distilled", "decoded", "random", "kcenters", "herding", "full")
CORESETS = ("random", "kcenters", "herding")


def pct(entry: dict | None, spread: str = "std") -> str:
    if entry is None:
        return "—"
    return f"{100 * entry['mean']:.1f} ± {100 * entry[spread]:.1f}"


def set_table(variant: dict) -> list[str]:
    protocols = [p for p in ("learned", "finetune") if variant.get(p)]
    header = {"learned": "learned inner protocol", "finetune": "fine-tuning recipe (AdamW, all parameters)"}
    lines = ["| set | " + " | ".join(header[p] for p in protocols) + " |", "|---|" + "---:|" * len(protocols)]
    for name in SETS:
        # The full-data reference does not depend on the distillation seed: its spread is over fresh models.
        spread = "std_within_seed" if name == "full" else "std"
        lines.append(f"| {name} | " + " | ".join(pct(variant[p].get(name), spread) for p in protocols) + " |")
    inits = {p: variant[p]["distilled"]["inits"] for p in protocols}
    full = {p: variant[p]["full"]["inits"] for p in protocols if "full" in variant[p]}
    lines.append("")
    lines.append(
        f"Mean ± std over {variant['learned']['distilled']['n']} distillation seeds of each seed's mean over "
        + ", ".join(f"{inits[p]} fresh models ({p})" for p in protocols)
        + "; `full` (the same for every seed) is mean ± std over " + ", ".join(f"{full[p]} ({p})" for p in full)
        + " fresh models."
    )
    return lines


def bar_rows(report: dict) -> list[str]:
    head = report["variants"].get("head")
    embedding = report["variants"].get("head_embedding")
    rows = []
    if embedding:
        learned = embedding["learned"]
        rows.append(
            f"| embedding form / full (bar ≥ 97%) | {100 * learned['distilled']['mean'] / learned['full']['mean']:.1f}% |"
        )
    if head:
        learned = head["learned"]
        decoded, full, random = learned["decoded"]["mean"], learned["full"]["mean"], learned["random"]["mean"]
        best = max(CORESETS, key=lambda name: learned[name]["mean"])
        rows += [
            f"| decoded text / full (bar ≥ 90%) | {100 * decoded / full:.1f}% |",
            f"| decoded text − random (points) | {100 * (decoded - random):+.1f} |",
            f"| decoded text − best real subset (points) | {100 * (decoded - learned[best]['mean']):+.1f} ({best}) |",
        ]
    return rows


def bench_sections() -> list[str]:
    """The analysis suite (``python -m condense.bench``): its cost table, then each experiment's sections.

    ``bench_<experiment>.json`` is the preset run of an experiment; any other ``bench_*.json`` is a variant run of
    one (``results_name=...``), shown after it.
    """
    files = {path.stem: json.loads(path.read_text()) for path in sorted(RESULTS.glob("bench_*.json"))}
    if not files:
        return []
    presets = {f"bench_{name}": files[f"bench_{name}"] for name in EXPERIMENTS if f"bench_{name}" in files}
    variants = {stem: results for stem, results in files.items() if stem not in presets}
    lines = [
        "## Analysis suite: what each experiment cost", "",
        "Each experiment is one command; `python -m condense.bench all` runs them in this order, sharing cached distilled "
        "sets. Minutes are each command's wall time; `sets distilled` counts the sets it distilled itself and those it "
        "found cached (made by an earlier experiment of the same run, or an earlier run).", "",
        "| experiment | command | preset | minutes | sets distilled / reused from cache |", "|---|---|---|---:|---:|",
    ]

    def row(results: dict) -> str:
        ledger = results["distillation"]
        return (f"| {results['experiment']} | `{results['command']}` | {results['preset']} | {results['seconds'] / 60:.1f} | "
                f"{ledger['distilled_now']} / {ledger['reused']} |")

    lines += [row(results) for results in presets.values()]
    total = sum(results["seconds"] for results in presets.values()) / 60
    lines += [f"| **the suite** | | | **{total:.1f}** | |"]
    lines += [row(results) for results in variants.values()]
    lines.append("")
    for name in EXPERIMENTS:
        module = importlib.import_module(f"condense.bench.{name}")
        for results in [*([presets[f"bench_{name}"]] if f"bench_{name}" in presets else []),
                        *(r for r in variants.values() if r["experiment"] == name)]:
            lines += module.report(results, FIGURES)
    return lines


def paired_difference(runs: list[dict], scenario: str, better: str, worse: str, task: int = 0) -> dict:
    """Mean ± std over seeds of ``better``'s BWT on ``task`` minus ``worse``'s, paired by seed."""
    def bwt(strategy: str) -> dict[int, float]:
        return {r["seed"]: r["accuracy_matrix"][-1][task] - r["accuracy_matrix"][task][task]
                for r in runs if r["scenario"] == scenario and r["strategy"] == strategy}
    a, b = bwt(better), bwt(worse)
    return summarize([a[seed] - b[seed] for seed in sorted(a) if seed in b])


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


def continual_section(results: dict) -> list[str]:
    """The main job's results: bars, the table per scenario, and the figures redrawn from the same file."""
    names = results["sequence"]
    slug = "_then_".join(names)
    cfg = results["config"]["continual"]
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
        f"batch {cfg['batch_size']}, {cfg['optimizer']} lr {cfg['lr']}; memory: {cfg['memory_per_task']} examples per past "
        f"task for every replay strategy ({cfg['replay_batch_size']} of them in every mini-batch); the distilled sets "
        f"have exactly that size and were distilled with `distill=last_layer` (the matching parameter mode). Accuracy on "
        f"a fixed sample of {cfg['test_examples_per_task']} test examples per task; mean ± std over seeds {cfg['seeds']}. "
        f"BWT, forgetting and forward transfer (FWT) are Avalanche's stream metrics; BWT = mean over earlier tasks of "
        f"(final accuracy − accuracy right after learning it).",
        "",
    ]
    wall = results.get("benchmark", {}).get("wall_seconds", results["seconds"])
    lines += ["| bar | measured | met |", "|---|---|---|"]
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
                    f"{pct(summary[scenario][form]['bwt'])} vs {pct(summary[scenario]['random_replay']['bwt'])}: "
                    f"{100 * d['mean']:+.1f} ± {100 * d['std']:.1f} (paired by seed) | {'yes' if d['mean'] >= 0.05 else 'no'} |"
                )
        if "merged_only" in summary[scenario] and "joint" in summary[scenario]:
            merged, joint = summary[scenario]["merged_only"], summary[scenario]["joint"]
            ratios = [m["mean"] / j["mean"] for m, j in zip(merged["final_accuracy"], joint["final_accuracy"])]
            cells = ", ".join(f"{n} {100 * r:.1f}%" for n, r in zip(names, ratios))
            lines.append(f"| {scenario}-incremental: merged-only / joint on each task (≥ 85%) | {cells} | "
                         f"{'yes' if min(ratios) >= 0.85 else 'no'} |")
    lines += ["", report_module.results_table(results), ""]
    lines += reading(results)
    FIGURES.mkdir(parents=True, exist_ok=True)
    for figure, draw in (("forgetting_curves", forgetting_curves), ("accuracy_matrices", accuracy_matrices)):
        draw(results, FIGURES / f"continual_{slug}_{figure}.png")
        lines += [f"![{figure}](figures/continual_{slug}_{figure}.png)", ""]
    return lines


def main() -> None:
    lines = [
        "# Results",
        "",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; each section names the command",
        "that regenerates its file. Accuracies are test accuracies in percent. Data: AG News (Zhang, Zhao & LeCun",
        "2015; a 12,000-example training sample), SST-2 (Socher et al. 2013, GLUE: Wang et al. 2019; test = GLUE dev),",
        "IMDB (Maas et al. 2011; stratified 10,000 train / 5,000 test sample, 128 tokens) and Rotten Tomatoes (Pang &",
        "Lee 2005). Model: all-MiniLM-L6-v2, mean pooling. One example per class.",
        "",
        "Sets, all the same size: `distilled` = the learned synthetic set in embedding form; `decoded` = its",
        "nearest-token text, re-tokenised; `random`, `kcenters`, `herding` = real training examples (coresets on",
        "frozen encoder features), each given its own learned soft labels and inner learning rates by the same",
        "outer loop with the inputs frozen, so a gap to `distilled` is the inputs' and not the labels'; `full` = the",
        "same model and parameter subset trained on all the training data (a linear probe for `head`; the",
        "fine-tuning recipe on a fixed 1,000-example training sample for `finetune` and for `all`, see `configs/eval/default.yaml`).",
        "Models whose encoder trains are tested on a fixed random 300-example test subsample; frozen-encoder",
        "models on the whole test split.",
        "",
    ]
    reports = {task: json.loads((RESULTS / f"{task}.json").read_text()) for task in TASKS if (RESULTS / f"{task}.json").exists()}
    if reports:
        any_report = next(iter(reports.values()))
        lines += [f"Machine: {any_report['machine']}.", ""]

    for path in sorted(RESULTS.glob("continual_*.json")):
        lines += continual_section(json.loads(path.read_text()))
    lines += bench_sections()

    lines += ["## Bar summary (head mode, 1 example per class)", "", "| measure | " + " | ".join(reports) + " |",
              "|---|" + "---:|" * len(reports)]
    per_task = {task: {row.split("|")[1].strip(): row.split("|")[2].strip() for row in bar_rows(r)} for task, r in reports.items()}
    measures = list(dict.fromkeys(m for rows in per_task.values() for m in rows))
    for measure in measures:
        lines.append(f"| {measure} | " + " | ".join(per_task[t].get(measure, "—") for t in reports) + " |")
    lines.append("")

    titles = {
        "head": "Text form (default): frozen encoder, head-only inner loop, straight-through nearest-token projection",
        "head_embedding": "Embedding form: frozen encoder, head-only inner loop, continuous embeddings (`distill.projection=none`)",
        "all": "Full fine-tuning inner loop (`distill=all`: T = 1, learned learning rates for head and encoder)",
    }
    for task, report in reports.items():
        lines += [f"## {task}", "", f"Regenerate: `{report['command']}`", ""]
        for variant, summary in report["variants"].items():
            lines += [f"### {titles.get(variant, variant)}", "", f"Overrides: `{' '.join(summary['overrides'])}`", ""]
            lines += set_table(summary)
            seconds = summary["distill_seconds"]
            wall = summary.get("wall_seconds")
            lines += [
                "",
                f"Distillation time: {seconds['mean']:.0f} s mean, {seconds['max']:.0f} s max per run"
                + (f"; whole run including evaluation: {wall['mean'] / 60:.1f} min mean, {wall['max'] / 60:.1f} min max" if wall else "")
                + " (two to four benchmark runs shared the 2 cores; see the cost table for uncontended speed).",
                "",
            ]
            if variant == "all":
                learned = summary["learned"]
                ratio = learned["distilled"]["mean"] / learned["full"]["mean"]
                gain = learned["distilled"]["mean"] - learned["random"]["mean"]
                lines += [
                    f"Distilled / fine-tuning on the 1,000-example sample: {100 * ratio:.1f}%; distilled − random: "
                    f"{100 * gain:+.1f} points (bar: ≥ +15).",
                    "",
                ]
        texts = report["variants"].get("head", {}).get("texts_seed0")
        if texts:
            lines += ["### Decoded distilled examples (seed 0, text form)", "", "| class | soft label (own class) | text |", "|---|---:|---|"]
            for line in texts:
                example = json.loads(line)
                own = example["soft_label"][example["label"]]
                lines.append(f"| {example['label_name']} | {own:.3f} | {example['text'][:300]} |")
            lines.append("")

    cost_file = RESULTS / "distill_cost.json"
    if cost_file.exists():
        cost = json.loads(cost_file.read_text())
        lines += [
            "## Cost per outer step", "", f"Regenerate: `{cost['command']}` — {cost['task']}, {cost['ipc']} example per class, "
            f"each mode's default preset, one process per measurement, 1 torch thread; mean ± std over seeds {cost['seeds']}. "
            f"Machine: {cost['machine']}.", "",
            "| inner parameters | preset | T | synthetic tokens | real batch | outer steps / s | peak memory (GiB) "
            "| preset's outer steps | distillation time at the preset |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for mode, row in cost["modes"].items():
            preset = yaml.safe_load((ROOT / "configs" / "distill" / f"{row['preset'].split('=')[1]}.yaml").read_text())
            minutes = preset["outer_steps"] / row["steps_per_second"]["mean"] / 60
            lines.append(
                f"| {mode} | `{row['preset']}` | {row['inner_steps']} | {row['seq_len']} | {row['real_batch_size']} | "
                f"{row['steps_per_second']['mean']:.2f} ± {row['steps_per_second']['std']:.2f} | "
                f"{row['peak_rss_gib']['mean']:.2f} ± {row['peak_rss_gib']['std']:.2f} | {preset['outer_steps']} | "
                f"{minutes:.1f} min |"
            )
        lines += [
            "",
            "Peak memory is the process's peak resident set (model, tokenised AG News and the unrolled graph). The first",
            "run on a task also encodes its real data once (minutes for the larger splits here), then reads it from the cache.",
        ]
        lines.append("")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines) + "\n")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
