"""The scaling section of ``docs/results.md``: a table and a plot of accuracy against k per task."""

from __future__ import annotations

from pathlib import Path

from condense.cache import atomic_savefig
from condense.report.plots import plt
from condense.report.tables import figure_path, points, section_header, table_head, table_row

SETS = ("distilled", "decoded", "random", "kcenters", "herding")
STYLE = {
    "distilled": dict(color="C3", marker="o", linestyle="-"),
    "decoded": dict(color="C1", marker="x", linestyle="--"),
    "random": dict(color="C0", marker="s", linestyle="-"),
    "kcenters": dict(color="C2", marker="^", linestyle="-"),
    "herding": dict(color="C4", marker="v", linestyle="-"),
}


def plot(task: str, result: dict, path: Path) -> None:
    ks = sorted(int(k) for k in result["ks"])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name in SETS:
        rows = [result["ks"][str(k)]["summary"].get(name) for k in ks]
        if any(row is None for row in rows):
            continue
        means = [100 * row["mean"] for row in rows]
        stds = [100 * row["std"] for row in rows]
        ax.errorbar(ks, means, yerr=stds, capsize=3, label=name, **STYLE[name])
    full = result["full"]
    ax.axhline(100 * full["mean"], color="black", linestyle=":", label="full data")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("examples per class k (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{task}: error bars = std over fresh heads", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def report(results: dict, figures: Path) -> list[str]:
    settings = results["config"]["bench"]["scaling"]
    lines = section_header(results, "Scaling with examples per class")
    lines += [
        f"Every task and k in {settings['ks']} is distilled with `distill=head` (frozen MiniLM, a fresh linear head trained "
        f"for 10 unrolled SGD steps, straight-through text projection) for {settings['outer_steps']} outer steps, "
        f"distillation seeds {settings['seeds']}. Each set is then trained on by "
        f"{results['config']['bench']['n_inits']} fresh heads per seed under its learned protocol; cells are mean ± std "
        "over all of them (seeds × fresh heads). `random`, `kcenters` and `herding` are real training examples of the "
        "same size, each given its own learned soft labels and learning rates by the same outer loop, so a gap to "
        "`distilled` is the inputs'. `decoded` is the distilled set's text, re-tokenised: the straight-through "
        "projection trains exactly that text, so it matches `distilled` by construction (the continuous-embedding "
        "form is in the ablations). The real subsets are one draw per distillation seed, so their spread is over fresh heads "
        "(the transfer section's bag-of-words rows spread over 20 random draws). `full`: a linear probe on all training "
        "features (mean ± std over fresh heads).",
        "",
    ]
    for task, result in results["tasks"].items():
        path = figure_path(results, figures, f"_{task}")
        plot(task, result, path)
        ks = sorted(int(k) for k in result["ks"])
        lines += [f"**{task}** ({len(result['label_names'])} classes, {result['train_examples']} training examples)", ""]
        lines += table_head(["k", *SETS, "distillation s"], "r" * (len(SETS) + 2))
        for k in ks:
            entry = result["ks"][str(k)]
            seconds = sum(r["distill_seconds"] for r in entry["runs"]) / len(entry["runs"])
            lines.append(table_row([str(k), *(points(entry["summary"].get(name)) for name in SETS), f"{seconds:.0f}"]))
        lines += ["", f"Full data (linear probe on every training example): {points(result['full'])}.", "",
                  f"![{task} scaling](figures/{path.name})", ""]
        lines.append(_reading(task, result, ks))
        lines.append("")
    return lines


def _reading(task: str, result: dict, ks: list[int]) -> str:
    """One data-driven sentence per task: where the distilled set beats the best real subset, and by how much."""
    parts = []
    for k in ks:
        summary = result["ks"][str(k)]["summary"]
        best = max(("random", "kcenters", "herding"), key=lambda name: summary[name]["mean"] if name in summary else -1)
        gap = 100 * (summary["distilled"]["mean"] - summary[best]["mean"])
        parts.append(f"k={k}: {gap:+.1f} vs {best}")
    full = result["full"]["mean"]
    share = [f"{100 * result['ks'][str(k)]['summary']['distilled']['mean'] / full:.0f}%" for k in ks]
    return (f"Distilled minus the best real subset, in points: {'; '.join(parts)}. Distilled as a share of full-data "
            f"accuracy: {', '.join(share)} for k = {', '.join(map(str, ks))}.")
