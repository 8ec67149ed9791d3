"""The single-task sections of ``docs/results.md``: the bar summary and one section per task, from the
``<task>.json`` files of ``benchmarks/distill_tasks.py``, and the cost per outer step from ``distill_cost.json``."""

from __future__ import annotations

import json

from condense.config.parsing import preset
from condense.report.tables import SETS, points, table_head, table_row
from condense.config.schema import BASELINES, DistillConfig

TASKS = ("ag_news", "sst2", "imdb", "rotten_tomatoes")
CORESETS = BASELINES
TITLES = {
    "head": "Text form (default): frozen encoder, head-only inner loop, straight-through nearest-token projection",
    "head_embedding": "Embedding form: frozen encoder, head-only inner loop, continuous embeddings (`distill.projection=none`)",
    "all": "Full fine-tuning inner loop (`distill=all`: T = 1, learned learning rates for head and encoder)",
}


def set_table(variant: dict) -> list[str]:
    protocols = [p for p in ("learned", "finetune") if variant.get(p)]
    header = {"learned": "learned inner protocol", "finetune": "fine-tuning recipe (AdamW, all parameters)"}
    lines = table_head(["set", *(header[p] for p in protocols)], "l" + "r" * len(protocols))
    for name in SETS:
        # The full-data reference does not depend on the distillation seed: its spread is over fresh models.
        spread = "std_within_seed" if name == "full" else "std"
        lines.append(table_row([name, *(points(variant[p].get(name), spread) for p in protocols)]))
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


def bar_measures(report: dict) -> dict[str, str]:
    """The task's measures against the project's bars (head mode, one example per class), formatted."""
    head = report["variants"].get("head")
    embedding = report["variants"].get("head_embedding")
    measures = {}
    if embedding:
        learned = embedding["learned"]
        measures["embedding form / full (bar ≥ 97%)"] = f"{100 * learned['distilled']['mean'] / learned['full']['mean']:.1f}%"
    if head:
        learned = head["learned"]
        decoded, full, random = learned["decoded"]["mean"], learned["full"]["mean"], learned["random"]["mean"]
        best = max(CORESETS, key=lambda name: learned[name]["mean"])
        measures["decoded text / full (bar ≥ 90%)"] = f"{100 * decoded / full:.1f}%"
        measures["decoded text − random (points)"] = f"{100 * (decoded - random):+.1f}"
        measures["decoded text − best real subset (points)"] = f"{100 * (decoded - learned[best]['mean']):+.1f} ({best})"
    return measures


def bar_summary(reports: dict[str, dict]) -> list[str]:
    lines = ["## Bar summary (head mode, 1 example per class)", "",
             *table_head(["measure", *reports], "l" + "r" * len(reports))]
    per_task = {task: bar_measures(report) for task, report in reports.items()}
    for measure in dict.fromkeys(m for measures in per_task.values() for m in measures):
        lines.append(table_row([measure, *(per_task[t].get(measure, "—") for t in reports)]))
    lines.append("")
    return lines


def task_section(task: str, report: dict) -> list[str]:
    """Every variant distilled on ``task``: its overrides, set table and time; the decoded examples of seed 0."""
    lines = [f"## {task}", "", f"Regenerate: `{report['command']}`", ""]
    for variant, summary in report["variants"].items():
        lines += [f"### {TITLES.get(variant, variant)}", "", f"Overrides: `{' '.join(summary['overrides'])}`", ""]
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
        lines += ["### Decoded distilled examples (seed 0, text form)", "",
                  *table_head(["class", "soft label (own class)", "text"], "lrl")]
        for example in map(json.loads, texts):
            own = example["soft_label"][example["label"]]
            lines.append(table_row([example["label_name"], f"{own:.3f}", example["text"][:300]]))
        lines.append("")
    return lines


def preset_outer_steps(override: str) -> int:
    """Outer steps of the distill preset an override such as ``distill=head`` selects: its file on the schema."""
    group, name = override.split("=")
    return DistillConfig(**preset(group, name)).outer_steps


def cost_section(cost: dict) -> list[str]:
    """Outer steps per second and peak memory of each parameter mode, and what that makes of its preset."""
    lines = [
        "## Cost per outer step", "", f"Regenerate: `{cost['command']}` — {cost['task']}, {cost['ipc']} example per class, "
        f"each mode's default preset, one process per measurement, 1 torch thread; mean ± std over seeds {cost['seeds']}. "
        f"Machine: {cost['machine']}.", "",
        *table_head(["inner parameters", "preset", "T", "synthetic tokens", "real batch", "outer steps / s",
                     "peak memory (GiB)", "preset's outer steps", "distillation time at the preset"], "llrrrrrrr"),
    ]
    for mode, row in cost["modes"].items():
        outer_steps = preset_outer_steps(row["preset"])
        minutes = outer_steps / row["steps_per_second"]["mean"] / 60
        lines.append(table_row([
            mode, f"`{row['preset']}`", str(row["inner_steps"]), str(row["seq_len"]), str(row["real_batch_size"]),
            f"{row['steps_per_second']['mean']:.2f} ± {row['steps_per_second']['std']:.2f}",
            f"{row['peak_rss_gib']['mean']:.2f} ± {row['peak_rss_gib']['std']:.2f}", str(outer_steps), f"{minutes:.1f} min",
        ]))
    lines += [
        "",
        "Peak memory is the process's peak resident set (model, tokenised AG News and the unrolled graph). The first",
        "run on a task also encodes its real data once (minutes for the larger splits here), then reads it from the cache.",
        "",
    ]
    return lines


def unroll_memory_section(memory: dict) -> list[str]:
    """Seconds per outer step and peak memory of ``all``-mode distillation against T, full unroll or checkpointed."""
    ratios = memory["ratios"]
    peak_key = next(k for k in ratios if k.startswith("peak_T"))
    growth_key = next(k for k in ratios if k.startswith("peak_minus_baseline_T"))
    lines = [
        "## Longer inner loops at bounded memory", "",
        f"Regenerate: `{memory['command']}` — {memory['task']}, {memory['model']}, {memory['ipc']} example per class, "
        f"`{memory['preset']}` with `distill.inner_steps=T` (every encoder weight trains; {memory['real_batch_size']} real "
        f"examples a step), one process per (T, bptt, seed), {memory['warmup_steps']} warm-up and {memory['measured_steps']} "
        f"measured outer steps, seeds {memory['seeds']}; memory: {memory['memory']}, the baseline is the process right "
        f"before the first outer step (model and data). `checkpoint` recomputes each unrolled step during the outer "
        f"backward (`distill.bptt=checkpoint`); its hypergradient equals the full unroll's "
        f"(`tests/test_inner_checkpoint.py`). Machine: {memory['machine']}, device {memory['device']}.", "",
        *table_head(["T", "bptt", "s / outer step", "peak memory (GiB)", "peak − baseline (GiB)", "s/step ÷ full at the same T"],
                    "llrrrr"),
    ]
    for row in memory["configs"].values():
        speed = ratios["seconds_checkpoint_over_full"].get(str(row["inner_steps"]))
        lines.append(table_row([
            str(row["inner_steps"]), row["bptt"],
            f"{row['seconds_per_step']['mean']:.2f} ± {row['seconds_per_step']['std']:.2f}",
            f"{row['peak_gib']['mean']:.2f} ± {row['peak_gib']['std']:.2f}",
            f"{row['peak_minus_baseline_gib']['mean']:.2f} ± {row['peak_minus_baseline_gib']['std']:.2f}",
            f"{speed:.2f}" if row["bptt"] == "checkpoint" and speed is not None else "",
        ]))
    worst = max((s for s in ratios["seconds_checkpoint_over_full"].values() if s is not None), default=None)
    peak, growth = ratios[peak_key], ratios[growth_key]
    hi = peak_key.split("_")[1]
    lines += [
        "",
        f"Bars: peak memory at {hi} ÷ at T1 with checkpointing {peak['checkpoint']:.2f} (goal ≤ 2.5; full unroll "
        f"{peak['full']:.2f}; growth above the baseline {growth['checkpoint']:.2f} against {growth['full']:.2f}); "
        f"seconds per outer step, checkpoint ÷ full at the same T: at most "
        f"{'—' if worst is None else f'{worst:.2f}'} (goal ≤ 1.5).",
        "",
    ]
    return lines


def micro_batch_section(memory: dict) -> list[str]:
    """Peak memory and seconds per outer step against the real batch, in one forward or in micro-batches."""
    micro = str(memory["micro_batch"])
    peak_key = next(k for k in memory["ratios"] if k.startswith("peak_"))
    _, hi, _, lo = peak_key.split("_")
    lines = [
        "## Large real batches in micro-batches", "",
        f"Regenerate: `{memory['command']}` — a {memory['model']} ({memory['parameters'] / 1e6:.0f}M weights), "
        f"`{memory['preset']}` (every weight trains, one inner step), {memory['synthetic_examples']} synthetic examples "
        f"and random real rows of {memory['seq_len']} tokens; the real loss in one forward, or {micro} rows at a time "
        f"(`distill.real_micro_batch={micro}`: the same loss and hypergradients, `tests/test_micro_batch.py`). One "
        f"process per configuration, {memory['warmup_steps']} warm-up and {memory['measured_steps']} measured outer "
        f"steps, seeds {memory['seeds']}; memory: {memory['memory']}, the baseline is the process right before the "
        f"first outer step. Machine: {memory['machine']}, device {memory['device']}.", "",
        *table_head(["real batch", "micro-batch", "s / outer step", "peak memory (GiB)", "peak − baseline (GiB)",
                     "s/step ÷ one forward"], "rlrrrr"),
    ]
    for row in memory["configs"].values():
        speed = memory["ratios"]["seconds_micro_over_whole"].get(str(row["real_batch_size"]))
        lines.append(table_row([
            str(row["real_batch_size"]), "—" if row["real_micro_batch"] is None else str(row["real_micro_batch"]),
            f"{row['seconds_per_step']['mean']:.1f} ± {row['seconds_per_step']['std']:.1f}",
            f"{row['peak_gib']['mean']:.2f} ± {row['peak_gib']['std']:.2f}",
            f"{row['peak_minus_baseline_gib']['mean']:.2f} ± {row['peak_minus_baseline_gib']['std']:.2f}",
            f"{speed:.2f}" if row["real_micro_batch"] is not None else "",
        ]))
    peak = memory["ratios"][peak_key]
    lines += ["", f"Bar: peak memory at real batch {hi} ÷ at {lo}, micro-batched: {peak[micro]:.2f} (goal ≤ 1.5; in one "
              f"forward {peak['none']:.2f}).", ""]
    return lines


def loop_precision_section(precision: dict) -> list[str]:
    """The hypergradients' error under bf16 autocast (and TF32 on CUDA) against fp32, per preset."""
    lines = [
        "## The distillation loop in bf16", "",
        f"Regenerate: `{precision['command']}` — {precision['task']}, {precision['model']}, {precision['ipc']} example "
        f"per class; for each preset and seed ({precision['seeds']}) one outer step from the same state, fresh head and "
        "real batch in fp32 and with `distill.precision=bf16` (bf16 autocast for the inner steps and the real forward; "
        "softmax, cross-entropy and KL in fp32). Relative error |g − g_fp32| / |g_fp32| of each learned tensor's "
        f"hypergradient, mean ± std over seeds. Machine: {precision['machine']}, device {precision['device']}.", "",
    ]
    labels = [label for label in next(iter(precision["presets"].values()))["summary"] if label != "fp32"]
    tensors = ["inputs", "label_logits", "log_lrs", "attention_logits"]
    lines += table_head(["preset", "precision", "s / outer step", "÷ fp32", "inputs", "soft labels", "learning rates",
                         "attention labels", "outer loss difference"], "llrrrrrrr")
    for name, row in precision["presets"].items():
        summary, fp32 = row["summary"], row["summary"]["fp32"]["seconds"]["mean"]
        for label in labels:
            seconds = summary[label]["seconds"]
            cells = [name, label, f"{seconds['mean']:.2f} ± {seconds['std']:.2f}", f"{seconds['mean'] / fp32:.1f}"]
            cells += [f"{summary[label][t]['relative_error']['mean']:.1e} ± {summary[label][t]['relative_error']['std']:.0e}"
                      if t in summary[label] else "—" for t in tensors]
            cells.append(f"{summary[label]['loss_difference']['mean']:.1e}")
            lines.append(table_row(cells))
    lines.append("")
    return lines
