"""The transfer section of ``docs/results.md``, and the sets and recipes that key the transfer results."""

from __future__ import annotations

from pathlib import Path

from condense.cache import atomic_savefig
from condense.report.plots import plt
from condense.report.tables import figure_path, points, section_header, table_head, table_row

RECIPES = ("learned protocol, new heads", "head to convergence (Adam)", "top block + head (AdamW)",
           "all weights (AdamW)", "bag-of-words logistic regression")
SETS = ("decoded text", "random real", "continuous embeddings")
BAG_OF_WORDS = RECIPES[-1]


def plot(task: str, summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / len(SETS)
    for index, (set_name, colour) in enumerate(zip(SETS, ("C3", "C0", "C2"))):
        xs = [r + (index - 1) * width for r in range(len(RECIPES)) if RECIPES[r] in summary[set_name]]
        entries = [summary[set_name][name] for name in RECIPES if name in summary[set_name]]
        ax.bar(xs, [100 * e["mean"] for e in entries], width=width, yerr=[100 * e["std"] for e in entries],
               color=colour, capsize=2, label=set_name)
    ax.set_xticks(range(len(RECIPES)), [name.replace(" (", "\n(").replace("logistic", "\nlogistic") for name in RECIPES], fontsize=7)
    ax.set_xlabel("model and training recipe")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{task}: the same sets, other learners")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def report(results: dict, figures: Path) -> list[str]:
    bench = results["config"]["bench"]
    lines = section_header(results, "Transfer to other learners")
    lines += [
        f"Sets: the studied set's decoded text (k={bench['ipc']}, `distill=head`, {bench['outer_steps']} outer steps, seeds "
        f"{bench['seeds']}) with its soft labels; a random real subset of the same size with its hard labels; and the "
        "set distilled the same way but as continuous embeddings (`distill.projection=none`; no text, so no bag of words). "
        f"Learned protocol and converged head: {bench['n_inits']} fresh heads, whole test split. AdamW recipes "
        f"(`configs/eval/default.yaml` `finetune.recipe`): {bench['transfer']['finetune_inits']} fresh models each, on the "
        f"fixed {results['config']['eval']['encoder_test_examples']}-example test sample. Bag of words: word counts + "
        "scikit-learn logistic regression fitted to the soft labels; deterministic for a set, so the decoded text's spread is "
        f"over distillation seeds and the random subset's over {bench['n_inits']} random draws. Cells: mean ± std (n).",
        "",
    ]
    for task, result in results["tasks"].items():
        summary = result["summary"]
        path = figure_path(results, figures, f"_{task}")
        plot(task, summary, path)
        lines += [f"**{task}**", "", *table_head(["recipe", *SETS], "l" + "r" * len(SETS))]
        for recipe in RECIPES:
            cells = [f"{points(summary[s][recipe])} ({summary[s][recipe]['n']})" if recipe in summary[s] else "—" for s in SETS]
            lines.append(table_row([recipe, *cells]))
        gaps = [f"{recipe}: {100 * (summary['decoded text'][recipe]['mean'] - summary['random real'][recipe]['mean']):+.1f}"
                for recipe in RECIPES]
        lines += ["", f"![{task} transfer](figures/{path.name})", "",
                  "Decoded text minus random real, in points: " + "; ".join(gaps) + ".", ""]
    return lines
