"""The few-shot prompting section of ``docs/results.md``, and the prompt conditions that key its results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from condense.cache import atomic_savefig
from condense.report.plots import plt
from condense.report.tables import figure_path, section_header, signed_points, table_head, table_row, verdict

CONDITIONS = ("distilled", "random", "none")
DESCRIPTIONS = {"distilled": "distilled (decoded text)", "random": "random real examples", "none": "none (zero-shot)"}
MODEL_NAMES = {"smollm2": "SmolLM2-135M-Instruct"}


def plot(results: dict, path: Path) -> None:
    """Grouped bars: a group per task, a bar per condition, error bars the std over orderings; chance dashed."""
    tasks = list(results["tasks"])
    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 + 1.7 * len(tasks)), 4.0))
    width = 0.8 / len(CONDITIONS)
    for index, (name, colour) in enumerate(zip(CONDITIONS, ("C3", "C0", "C7"))):
        summaries = [results["tasks"][task]["conditions"][name]["summary"] for task in tasks]
        xs = np.arange(len(tasks)) + (index - 1) * width
        # Zero-shot runs once (it is deterministic): no spread over orderings to draw.
        spread = None if name == "none" else [100 * s["std"] for s in summaries]
        ax.bar(xs, [100 * s["mean"] for s in summaries], width=width, yerr=spread, color=colour, capsize=3,
               label=DESCRIPTIONS[name] + (", one run" if name == "none" else ""))
    for position, task in enumerate(tasks):
        chance = 100 / len(results["tasks"][task]["label_words"])
        ax.hlines(chance, position - 0.45, position + 0.45, colors="k", linestyles="dashed", linewidth=1,
                  label="chance" if position == 0 else None)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_xlabel("task")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{MODEL_NAMES.get(results['model'], results['model'])}: prompt examples "
                 f"(mean ± std over {results['orderings']} orderings)", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def sentence(task: str, result: dict) -> str:
    """Which prompt wins on ``task``, in words, saying so plainly when the distilled one loses."""
    conditions = result["conditions"]
    mean = {name: 100 * conditions[name]["summary"]["mean"] for name in CONDITIONS}
    gap = result["distilled_minus_random"]
    n = gap["n"]
    versus = {
        "no different from": f"distilled and random real prompts are no different (distilled − random {signed_points(gap)} "
                             f"points over {n} paired orderings)",
        "ahead": f"distilled prompts beat random real examples by {signed_points(gap)} points over {n} paired orderings",
        "behind": f"distilled prompts lose to random real examples, by {signed_points(gap)} points over {n} paired orderings",
    }[verdict(gap, "ahead", "behind")]
    zero = result["distilled_minus_none"]
    against_zero = verdict(zero, "better than", "worse than", "no different from")
    return (f"**{task}**: highest mean: {DESCRIPTIONS[result['winner']]}, {mean[result['winner']]:.1f}%. "
            f"{versus[0].upper()}{versus[1:]}. Distilled prompts are {against_zero} no examples at all "
            f"(distilled − zero-shot {signed_points(zero)} points; zero-shot {mean['none']:.1f}%).")


def report(results: dict, figures: Path) -> list[str]:
    figures.mkdir(parents=True, exist_ok=True)
    path = figure_path(results, figures)
    plot(results, path)
    settings = results["config"]["bench"]["prompting"]
    bench = results["config"]["bench"]
    model = MODEL_NAMES.get(results["model"], results["model"])
    lines = section_header(results, "Few-shot prompting with distilled texts")
    lines += [
        f"{model} classifies a fixed test sample by the summed log-probability of each label word (lower-cased "
        "label name, with a leading space) after a prompt: an instruction line, the examples as "
        "`Text: …\\nLabel: …` blocks, then the query. Examples: the studied set's decoded texts "
        f"(k={bench['ipc']} per class, {bench['outer_steps']} outer steps, distillation seeds {list(bench['seeds'])}); "
        "the same number of random real training texts per class; or none. "
        f"Texts are cut to {settings['max_example_tokens']} tokens in the prompt and "
        f"{settings['max_query_tokens']} as queries. Cells: mean ± std over {results['orderings']} orderings (seeds "
        "that shuffle the examples and draw the random ones; zero-shot is deterministic, so it runs once); "
        "SE: binomial standard error of one run's accuracy on the test sample, sqrt(p(1 − p)/n), the noise a "
        "single run carries on top of the spread over orderings. Label words: "
        + "; ".join(f"{task}: {', '.join(result['label_words'])}" for task, result in results["tasks"].items()) + ".",
        "",
        *table_head(["task", "prompt examples", "accuracy (%)", "runs", "test examples", "SE of one run (points)",
                     "prompt tokens"], "llrrrrr"),
    ]
    for task, result in results["tasks"].items():
        for name in CONDITIONS:
            entry = result["conditions"][name]
            summary = entry["summary"]
            spread = " (one run)" if name == "none" else f" ± {100 * summary['std']:.1f}"
            accuracy = f"{100 * summary['mean']:.1f}{spread}"
            lines.append(table_row([task, DESCRIPTIONS[name], accuracy, str(summary["n"]), str(result["test_examples"]),
                                    f"{100 * entry['standard_error']:.1f}", f"{entry['prompt_tokens']['mean']:.0f}"]))
    lines += [
        "",
        f"![Test accuracy by prompt examples, mean ± std over orderings](figures/{path.name})",
        "",
        *table_head(["task", "distilled − random (points, paired by seed)", "distilled − zero-shot (points)",
                     "highest mean", "distilled vs random"], "lrrll"),
    ]
    for task, result in results["tasks"].items():
        lines.append(table_row([task, signed_points(result["distilled_minus_random"]),
                                signed_points(result["distilled_minus_none"]), DESCRIPTIONS[result["winner"]],
                                result["distilled_vs_random"]]))
    lines += [""]
    for task, result in results["tasks"].items():
        lines += [sentence(task, result), ""]
    shown = "sst2" if "sst2" in results["tasks"] else next(iter(results["tasks"]), None)
    if shown is not None:
        result = results["tasks"][shown]
        lines += [
            f"<details><summary>The distilled prompt of ordering 0 on {shown}, and the first test query after it"
            "</summary>",
            "",
            "```text",
            result["conditions"]["distilled"]["prompt"] + result["example_query"],
            "```",
            "",
            "</details>",
            "",
        ]
    return lines
