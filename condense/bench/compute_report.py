"""The compute-saved section of ``docs/results.md``: what training on each set cost, what the set saves, a figure."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from condense.bench.compute_savings import Curve
from condense.cache import atomic_savefig
from condense.report.plots import plt
from condense.report.tables import figure_path, points, section_header, summarize_values, table_head, table_row

log = logging.getLogger(__name__)


def regime_title(regime: str, task: dict) -> str:
    if regime == "head":
        return "frozen encoder + linear head"
    recipe = task["finetune_recipe"]
    weights = "all weights" if recipe["params"] == "all" else f"the last {recipe['n_layers']} layer(s)"
    return f"fine-tuning {weights} (AdamW)"


SET_NAMES = {
    "distilled": "distilled (embeddings)",
    "decoded": "distilled, decoded text",
    "full_raw_text": "full data, raw text streamed",
    "full_cached_features": "full data, cached features",
}


def duration(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 1 else f"{seconds:.1f}" if seconds < 100 else f"{seconds:,.0f}"


def seconds_text(entry: dict | None) -> str:
    if entry is None:
        return "—"
    digits = 3 if entry["mean"] < 1 else 1
    return f"{entry['mean']:,.{digits}f} ± {entry['std']:,.{digits}f}"


def ratio_text(entry: dict | None) -> str:
    if entry is None:
        return "—"
    digits = 0 if entry["mean"] >= 10 else 2
    return f"{entry['mean']:,.{digits}f}× ± {entry['std']:,.{digits}f}"


def curve_summary(curves: list[Curve]) -> dict:
    """Mean and std over seeds at each evaluation (the seeds share the schedule)."""
    def stats(key: str) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([curve[key] for curve in curves], dtype=float)
        return values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])

    (accuracy_, accuracy_std), (seconds, seconds_std) = stats("accuracy"), stats("seconds")
    return {"examples": np.array(curves[0]["examples"]), "accuracy": accuracy_, "accuracy_std": accuracy_std,
            "seconds": seconds, "seconds_std": seconds_std}


def break_even_text(entry: dict) -> str:
    if entry["break_even"] is not None:
        return f"{entry['break_even']:,}"
    if entry["seconds"] is not None:
        return "never (no time saved)"
    if entry["break_even_at_most"] is not None:
        return f"≤ {entry['break_even_at_most']:,} (not reached within the stream)"
    return "never within the stream"


def payback(entry: dict) -> str:
    """The break-even as the end of a sentence about the set's cost."""
    if entry["break_even"] is not None:
        return f"is paid back after {entry['break_even']:,} trainings on the set"
    if entry["seconds"] is not None:
        return "is never paid back: training on the set is no faster"
    if entry["break_even_at_most"] is not None:
        return (f"is paid back after at most {entry['break_even_at_most']:,} trainings on the set (full-data training "
                "had not reached the set's accuracy by the end of its stream)")
    return "cannot be weighed: full-data training had not reached the set's accuracy by the end of its stream"


def usage_table(task: dict) -> list[str]:
    lines = table_head(["regime", "set", "accuracy (%)", "wall seconds", "examples processed"], "llrrr")
    for regime in ("head", "finetune"):
        for name, entry in task[regime].items():
            if isinstance(entry, list):  # full-data curves: where the whole stream ends
                end = {key: summarize_values([curve[key][-1] for curve in entry]) for key in ("accuracy", "seconds")}
                label = f"{SET_NAMES[name]} (whole stream, {len(entry)} seeds)"
                examples = entry[0]["examples"][-1]
            else:
                end, label, examples = entry, SET_NAMES[name], entry["examples"]
            lines.append(table_row([regime, label, points(end["accuracy"]), seconds_text(end["seconds"]), f"{examples:,}"]))
    return lines


def savings_table(task: dict) -> list[str]:
    lines = table_head(["regime", "set", "against", "seeds reaching the set's accuracy", "full-data seconds to it",
                        "speed-up", "examples to it", "examples ratio", "break-even (trainings)"], "lllrrrrrr")
    for regime, by_set in task["savings"].items():
        for name, by_baseline in by_set.items():
            for baseline, entry in by_baseline.items():
                examples = "—" if entry["examples"] is None else (
                    f"{entry['examples']['mean']:,.0f} ± {entry['examples']['std']:,.0f}")
                lines.append(table_row([
                    regime, f"{SET_NAMES[name]}: {100 * entry['target']:.1f}%", SET_NAMES[baseline],
                    f"{entry['reached']}/{entry['seeds']}", seconds_text(entry["seconds"]), ratio_text(entry["speedup"]),
                    examples, ratio_text(entry["examples_ratio"]), break_even_text(entry),
                ]))
    return lines


def reading(task: dict) -> list[str]:
    """What the tables mean, in sentences; every number is read from the results."""
    distillation = task["distillation"]
    cost = (f"{duration(distillation['seconds']['mean'])} s of distillation plus "
            f"~{duration(distillation['train_encoding_seconds'])} s encoding the {task['train_examples']:,} "
            "training texts once")
    raw = task["savings"]["head"]["distilled"]["full_raw_text"]
    cached = task["savings"]["head"]["distilled"]["full_cached_features"]
    distilled = task["head"]["distilled"]
    lines = [f"Frozen encoder: a head trains on the distilled set in {seconds_text(distilled['seconds'])} s"]
    if raw["seconds"] is not None:
        lines[0] += (f", while streaming raw training text to the same accuracy takes {seconds_text(raw['seconds'])} s "
                     f"({ratio_text(raw['speedup'])} faster)")
    lines[0] += f"; making the set ({cost}) {payback(raw)}."
    if cached["seconds"] is None:
        verdict = f"does not reach the set's accuracy within one epoch; against it, distilling {payback(cached)}"
    else:
        verdict = (f"reaches the set's accuracy in {seconds_text(cached['seconds'])} s; against that, distilling "
                   f"({duration(cached['cost_seconds'])} s) {payback(cached)}")
    lines.append(
        "Those savings apply to training from raw text. Once the training features are cached, as distillation "
        f"needs them anyway, a head trained on all of them {verdict}."
    )
    tuned = task["savings"]["finetune"]["distilled"]["full_raw_text"]
    finetuned = task["finetune"]["distilled"]
    title = regime_title("finetune", task)
    lines.append(
        f"{title[0].upper() + title[1:]}: the recipe on the distilled set reaches {points(finetuned['accuracy'])}% "
        f"in {seconds_text(finetuned['seconds'])} s"
        + ("" if tuned["seconds"] is None else f", the recipe on streamed full data {seconds_text(tuned['seconds'])} s")
        + f"; there making the set {payback(tuned)}."
    )
    return lines


def draw(task_name: str, task: dict, path: Path) -> None:
    """Accuracy against training seconds per regime: full-data curves (mean ± std over seeds) and the sets' points."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    colours = {
        "full_raw_text": "tab:blue", "full_cached_features": "tab:green",
        "distilled": "tab:red", "decoded": "tab:orange",
    }
    distill_seconds = task["distillation"]["seconds"]["mean"]
    for ax, regime in zip(axes, ("head", "finetune")):
        for name, entry in task[regime].items():
            if isinstance(entry, list):
                curve = curve_summary(entry)
                # Log time axis: the point at 0 examples (the untrained model) has no place on it.
                x, y, band = curve["seconds"][1:], 100 * curve["accuracy"][1:], 100 * curve["accuracy_std"][1:]
                ax.plot(x, y, marker=".", color=colours[name],
                        label=f"{SET_NAMES[name]} (mean of {len(entry)} seeds)")
                ax.fill_between(x, y - band, y + band, color=colours[name], alpha=0.2, lw=0)
            else:
                ax.errorbar(entry["seconds"]["mean"], 100 * entry["accuracy"]["mean"], xerr=entry["seconds"]["std"],
                            yerr=100 * entry["accuracy"]["std"], capsize=4, color=colours[name],
                            # Hollow diamonds for the decoded text, which often sits exactly on the embedding form.
                            fmt="D" if name == "decoded" else "o", ms=9 if name == "decoded" else 6,
                            mfc="none" if name == "decoded" else colours[name],
                            label=f"{SET_NAMES[name]} ({entry['examples']:,} examples processed)")
                ax.axhline(100 * entry["accuracy"]["mean"], color=colours[name], ls=":", lw=1)
        ax.axvline(distill_seconds, color="grey", ls="--", lw=1,
                   label=f"distillation, one-off ({duration(distill_seconds)} s)")
        ax.set_xscale("log")
        # Plain-number ticks, at 1-2-5 on a short axis so that one spanning under a decade still gets labels.
        low, high = ax.get_xlim()
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if math.log10(high / low) > 2 else (1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("wall-clock training seconds (log scale; test evaluation excluded)")
        ax.set_ylabel("test accuracy (%)" + (" on the encoder-test subsample" if regime == "finetune" else ""))
        ax.set_title(f"{task_name}: {regime_title(regime, task)}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)


def report(results: dict, figures: Path) -> list[str]:
    """The compute-saved section of ``docs/results.md``, with one figure per task drawn into ``figures``."""
    figures.mkdir(parents=True, exist_ok=True)
    lines = section_header(results, "Compute saved")
    lines += [
        "Training on the distilled set against training on the full data, in two regimes: the set's own (frozen "
        "encoder, fresh linear head, the learned inner protocol) and the standard fine-tuning recipe (AdamW on the "
        "encoder weights too). Wall seconds are training only (test evaluation off the clock), mean ± std over "
        "fresh models (of every distillation seed) for the sets and over seeds for the full-data streams; examples "
        "processed count every example in every training step. Full-data streams tokenise and encode raw text "
        "inside each step, as when nothing is cached; the cached-features stream reads the frozen features "
        "distillation already needed. Break-even is the number of trainings on the set after which its cost is paid "
        "back: distillation seconds plus encoding the training split once against raw-text streams, distillation "
        "seconds alone against cached features.",
        "",
    ]
    for name, task in results["tasks"].items():
        distillation = task["distillation"]
        path = figure_path(results, figures, f"_{name}")
        draw(name, task, path)
        lines += [
            f"### {name}",
            "",
            *usage_table(task),
            "",
            f"Distillation: {seconds_text(distillation['seconds'])} s for "
            f"{', '.join(map(str, distillation['outer_steps']))} outer steps (per distillation seed), plus "
            f"~{duration(distillation['train_encoding_seconds'])} s to encode the {task['train_examples']:,} "
            f"training texts once (timed on {distillation['encoding_sample']:,} of them). Head accuracy is on the "
            f"whole test split ({task['test_examples']['head']:,} examples), fine-tuned accuracy on the fixed "
            f"encoder-test subsample ({task['test_examples']['finetune']:,}).",
            "",
            *savings_table(task),
            "",
            *reading(task),
            "",
            f"![Compute saved on {name}: accuracy against training seconds](figures/{path.name})",
            "",
        ]
    return lines
