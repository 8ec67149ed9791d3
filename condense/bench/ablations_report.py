"""The ablations section of ``docs/results.md``, and the factors the ablations vary (which key their results)."""

from __future__ import annotations

from pathlib import Path

from condense.cache import atomic_savefig
from condense.report.plots import plt
from condense.report.tables import figure_path, points, section_header, table_head, table_row

BASE = "base"
HARD, DISTILLED_LABELS, OWN_LABELS = "hard labels", "the distilled set's learned labels", "labels learned for these inputs"
# factor -> choice -> distill overrides of the studied set's config (BASE: the studied set itself).
FACTORS: dict[str, dict[str, dict | str]] = {
    "labels": {"learned": BASE, "hard": {"labels": "hard"}},
    "inner steps T": {"1": {"inner_steps": 1}, "3": {"inner_steps": 3}, "10": BASE},
    "inner parameters": {"head": BASE, "last_n_layers": "last_layer", "all": "all"},
    # Momentum and Adam take larger effective steps than SGD from the same learning rate; the rates are learned.
    "inner optimiser": {"sgd": BASE, "momentum": {"inner_optimizer": "momentum", "inner_lr": 0.01},
                        "adam": {"inner_optimizer": "adam", "inner_lr": 0.01}},
    "initialisation": {"real text": BASE, "noise": {"init": "noise"}},
    "trained form": {"text (straight-through)": BASE, "continuous embeddings": {"projection": "none"}},
}


def plot(task: str, result: dict, path: Path) -> None:
    rows = [(factor, choice, entry) for factor, choices in result["factors"].items() for choice, entry in choices.items()]
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(rows) + 1.2))
    positions = list(range(len(rows)))[::-1]
    for offset, form, colour in ((-0.18, "distilled", "C3"), (0.18, "decoded", "C1")):
        ax.barh([p + offset for p in positions], [100 * e[form]["mean"] for _, _, e in rows], height=0.36,
                xerr=[100 * e[form]["std"] for _, _, e in rows], color=colour, capsize=2, label=form)
    ax.set_yticks(positions, [f"{factor}: {choice}" for factor, choice, _ in rows], fontsize=8)
    base = result["factors"]["labels"]["learned"]["distilled"]["mean"]
    ax.axvline(100 * base, color="black", linestyle=":", linewidth=1, label="studied set (distilled)")
    ax.set_xlabel("test accuracy (%)")
    ax.set_title(f"{task}: one factor at a time")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def report(results: dict, figures: Path) -> list[str]:
    bench = results["config"]["bench"]
    lines = section_header(results, "Ablations")
    lines += [
        f"The studied set: `distill=head`, k={bench['ipc']} per class, {bench['outer_steps']} outer steps, learned soft labels, "
        "T=10 unrolled SGD steps on a fresh linear head, initialised from real text, trained through the straight-through "
        f"text projection; distillation seeds {bench['seeds']}. Each factor changes one thing. `last_n_layers` and `all` "
        f"are `configs/distill/last_layer.yaml` (top block + head, T=3) and `all.yaml` (every weight, T=1) with "
        f"{bench['ablations']['encoder_outer_steps']} outer steps and {bench['ablations']['encoder_n_inits']} fresh models "
        f"(their models re-encode a fixed {results['config']['eval']['encoder_test_examples']}-example test sample), so "
        "their gap to `head` mixes the parameter subset with a smaller distillation budget; the "
        f"others use {bench['n_inits']} fresh heads and the whole test split. Cells: mean ± std over seeds × fresh models "
        "under each set's own learned protocol; `decoded` is the set's nearest-token text, re-tokenised."
        + (" With one distillation seed the spread is over fresh models only: it leaves out how much the set itself "
           "varies from seed to seed, so a difference of a point or two is not evidence (`bench=paper` runs three seeds)."
           if len(bench["seeds"]) == 1 else ""),
        "",
    ]
    for task, result in results["tasks"].items():
        path = figure_path(results, figures, f"_{task}")
        plot(task, result, path)
        lines += [f"**{task}**", "", *table_head(["factor", "choice", "distilled", "decoded", "distillation s"], "llrrr")]
        for factor, choices in result["factors"].items():
            for choice, entry in choices.items():
                seconds = sum(r["distill_seconds"] for r in entry["runs"]) / len(entry["runs"])
                marker = " (studied set)" if FACTORS[factor][choice] == BASE else ""
                lines.append(table_row([factor, choice + marker, points(entry["distilled"]), points(entry["decoded"]), f"{seconds:.0f}"]))
        labels = result["label_only"]
        studied = result["factors"]["labels"]
        lines += [
            "", f"![{task} ablations](figures/{path.name})", "",
            f"Label-only effect on {task}, distillation seeds {bench['seeds']} (inputs × labels; every row of real inputs uses the studied set's learned learning rates "
            "except the last, which uses its own):", "",
            *table_head(["inputs", "hard labels", "learned labels of the distilled set", "labels learned for these inputs"], "lrrr"),
            f"| distilled (hard: distilled with hard labels) | {points(studied['hard']['distilled'])} | "
            f"{points(studied['learned']['distilled'])} | {points(studied['learned']['distilled'])} |",
            f"| random real subset | {points(labels[HARD])} | {points(labels[DISTILLED_LABELS])} | {points(labels[OWN_LABELS])} |",
            "",
            _reading(result),
            "",
        ]
    return lines


def _reading(result: dict) -> str:
    """Where the studied set's accuracy comes from, in points, from the label-only table."""
    labels = result["label_only"]
    studied = result["factors"]["labels"]["learned"]["distilled"]["mean"]
    random_hard = labels[HARD]["mean"]
    random_learned = labels[OWN_LABELS]["mean"]
    return (f"Over a random real subset with hard labels ({100 * random_hard:.1f}%), learned labels alone add "
            f"{100 * (random_learned - random_hard):+.1f} points and learned inputs on top add "
            f"{100 * (studied - random_learned):+.1f} more ({100 * studied:.1f}%).")
