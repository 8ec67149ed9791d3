"""Figures of a continual run, drawn from its results dict (``results.json``) alone."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from condense.cache import atomic_savefig  # noqa: E402

log = logging.getLogger(__name__)


# The strategies trained on merged distilled sets only, and the line style of their final accuracy on the curves.
MERGED_LINES = {"super_dataset": ":", "merged_sets": "-."}


def _curves(runs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterations, and mean and std over seeds of each task's accuracy there (seeds share the schedule)."""
    iterations = np.array([p["iteration"] for p in runs[0]["curve"]])
    accuracy = np.array([[p["accuracy"] for p in run["curve"]] for run in runs if len(run["curve"]) == len(iterations)])
    return iterations, accuracy.mean(0), accuracy.std(0, ddof=1) if len(accuracy) > 1 else np.zeros_like(accuracy[0])


def forgetting_curves(results: dict, path: Path) -> bool:
    """Accuracy on each task over training: a row of panels per scenario, a panel per task, a line per strategy
    (mean over seeds, band ± std). Dotted lines mark the start of each new task."""
    names = results["sequence"]
    scenarios = list(results["summary"])
    strategies = list(next(iter(results["summary"].values())))
    colours = {s: plt.cm.tab10(i) for i, s in enumerate(strategies)}
    fig, axes = plt.subplots(len(scenarios), len(names), figsize=(4.2 * len(names), 3.4 * len(scenarios)), squeeze=False)
    for row, scenario in enumerate(scenarios):
        boundaries = None
        for strategy in strategies:
            runs = [r for r in results["runs"] if r["scenario"] == scenario and r["strategy"] == strategy]
            if not runs or not runs[0]["curve"]:
                continue
            iterations, mean, std = _curves(runs)
            if strategy in MERGED_LINES:
                # Trained once on a few examples on a schedule of its own: drawn as its final accuracy.
                for task in range(len(names)):
                    axes[row, task].axhline(100 * mean[-1, task], color=colours[strategy], ls=MERGED_LINES[strategy], lw=1.2,
                                            label=strategy)
                continue
            if strategy != "joint" and boundaries is None:
                boundaries = runs[0]["experience_starts"][1:]
            for task in range(len(names)):
                ax = axes[row, task]
                ax.plot(iterations, 100 * mean[:, task], color=colours[strategy], lw=1.5, label=strategy)
                ax.fill_between(iterations, 100 * (mean - std)[:, task], 100 * (mean + std)[:, task],
                                color=colours[strategy], alpha=0.15, lw=0)
        for task, name in enumerate(names):
            ax = axes[row, task]
            for boundary in boundaries or []:
                ax.axvline(boundary, color="grey", ls=":", lw=1)
            ax.set_title(f"{scenario}-incremental: accuracy on {name}")
            ax.set_xlabel("training iteration (mini-batches)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False)
    fig.tight_layout(rect=(0, 0.11, 1, 1))
    atomic_savefig(fig, path, dpi=120)  # a run killed while drawing keeps the previous figure
    plt.close(fig)
    log.info("wrote %s", path)
    return True


def accuracy_matrices(results: dict, path: Path) -> bool:
    """Heat maps of the mean accuracy matrix R[i][j] (after training on task i, accuracy on task j): a row per
    scenario, a column per sequential strategy; returns whether it drew one (not without a sequential strategy)."""
    names = results["sequence"]
    grid = {
        scenario: {strategy: s["accuracy_matrix"] for strategy, s in by_strategy.items() if len(s["accuracy_matrix"]) == len(names)}
        for scenario, by_strategy in results["summary"].items()
    }
    strategies = list(dict.fromkeys(strategy for row in grid.values() for strategy in row))
    if not strategies:
        return False
    size = 1.2 + 0.8 * len(names)
    fig, axes = plt.subplots(len(grid), len(strategies), figsize=(size * len(strategies) + 1.5, size * len(grid) + 0.6),
                             squeeze=False, layout="constrained")
    image = None
    for row, (scenario, matrices) in enumerate(grid.items()):
        for column, strategy in enumerate(strategies):
            ax = axes[row, column]
            if strategy not in matrices:
                ax.axis("off")
                continue
            mean = np.array([[100 * cell["mean"] for cell in r] for r in matrices[strategy]])
            image = ax.imshow(mean, vmin=0, vmax=100, cmap="viridis")
            for i in range(len(names)):
                for j in range(len(names)):
                    ax.text(j, i, f"{mean[i, j]:.0f}", ha="center", va="center", color="white" if mean[i, j] < 60 else "black")
            ax.set_title(f"{strategy}\n{scenario}-incremental", fontsize=9)
            ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
            ax.set_yticks(range(len(names)), [f"after {n}" for n in names] if column == 0 else [], fontsize=8)
            if row == len(grid) - 1:
                ax.set_xlabel("evaluated on", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="test accuracy (%), mean over seeds")
    atomic_savefig(fig, path, dpi=120)  # a run killed while drawing keeps the previous figure
    plt.close(fig)
    log.info("wrote %s", path)
    return True


def memory_sweep(by_memory: dict[int, dict], path: Path) -> None:
    """Final average accuracy and BWT (mean ± std over seeds) against memory per class, a line per replay strategy:
    a column per scenario. ``by_memory`` maps memory per class to one sequence's results at that memory."""
    memories = sorted(by_memory)
    scenarios = list(dict.fromkeys(s for results in by_memory.values() for s in results["summary"]))
    fig, axes = plt.subplots(2, len(scenarios), figsize=(5 * len(scenarios), 6.4), squeeze=False, sharex=True)
    names = next(iter(by_memory.values()))["sequence"]
    for column, scenario in enumerate(scenarios):
        strategies = list(dict.fromkeys(name for m in memories for name, s in by_memory[m]["summary"].get(scenario, {}).items()
                                        if s.get("memory_loss") is not None))  # the strategies that keep a memory
        for row, (metric, label) in enumerate((("average_accuracy", "final average accuracy (%)"),
                                               ("bwt", "BWT on earlier tasks (points)"))):
            ax = axes[row, column]
            for strategy in strategies:
                cells = [(m, by_memory[m]["summary"][scenario][strategy][metric]) for m in memories
                         if strategy in by_memory[m]["summary"].get(scenario, {})]
                x = [m for m, _ in cells]
                mean = np.array([100 * c["mean"] for _, c in cells])
                std = np.array([100 * c["std"] for _, c in cells])
                ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=strategy)
            ax.set_xscale("log", base=2)
            ax.set_xticks(memories, [str(m) for m in memories])
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{' → '.join(names)}, {scenario}-incremental", fontsize=10)
            else:
                ax.set_xlabel("memory: examples per class of each past task")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)
