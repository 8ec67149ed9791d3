"""Reporting: mean ± std summaries, number formatting and markdown tables, for run folders and docs alike.

Nothing here computes a measurement; every function turns results dicts into summaries or text.
"""

from __future__ import annotations

import os
import platform
import statistics

import torch


def summarize_values(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and count."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def _mean_std(values: list[float | None]) -> dict | None:
    """Mean, std and count of the values that exist; None when none does."""
    values = [v for v in values if v is not None]
    return summarize_values(values) if values else None


def summarize_runs(runs: list[dict]) -> dict:
    """Mean ± std over seeds of the final accuracies, average accuracy, BWT, forgetting and forward transfer.

    The transfer measures come from Avalanche's metrics; sequential strategies only (a joint or merged-only
    model is trained once, so it has no "before" to forget from).
    """
    finals = [run["accuracy_matrix"][-1] for run in runs]
    sequential = [run for run in runs if len(run["accuracy_matrix"]) > 1]

    def transfer(key: str) -> dict | None:
        return _mean_std([run["avalanche"][key] for run in sequential])

    return {
        "final_accuracy": [_mean_std([f[task] for f in finals]) for task in range(len(finals[0]))],
        "average_accuracy": _mean_std([statistics.fmean(f) for f in finals]),
        "bwt": transfer("bwt"),
        "forgetting": transfer("forgetting"),
        "forward_transfer": transfer("forward_transfer"),
        "accuracy_matrix": [[_mean_std([run["accuracy_matrix"][i][j] for run in runs]) for j in range(len(finals[0]))]
                            for i in range(len(runs[0]["accuracy_matrix"]))],
        "memory_loss": _mean_std([_memory_loss(run) for run in runs]),
        "seconds": _mean_std([run["seconds"] for run in runs]),
    }


def _memory_loss(run: dict) -> float | None:
    """The replay memory's mean cross-entropy when each next task starts (None without a memory)."""
    fits = (run.get("memory_fit") or [])[:-1]  # the memory after the last task is never replayed
    return statistics.fmean(fit["loss"] for fit in fits) if fits else None


def points(stat: dict | None) -> str:
    return "—" if stat is None else f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def one_line(summary: dict) -> str:
    return (f"average accuracy {points(summary['average_accuracy'])}, BWT {points(summary['bwt'])}, "
            f"{summary['seconds']['mean']:.0f} s per run")


def results_table(results: dict) -> str:
    """Markdown: one table per scenario, a row per strategy, accuracies and transfer in points, and the replay
    memory's cross-entropy under the model when the next task starts."""
    names = results["sequence"]
    lines = []
    for scenario, by_strategy in results["summary"].items():
        lines += [
            f"**{scenario}-incremental** ({', '.join(names)}; mean ± std over seeds, accuracy in %)",
            "",
            "| strategy | " + " | ".join(f"final {n}" for n in names) + " | average | BWT | forgetting | FWT | memory loss | s/run |",
            "|---|" + "---:|" * (len(names) + 6),
        ]
        for strategy, s in by_strategy.items():
            cells = [points(a) for a in s["final_accuracy"]]
            cells += [points(s["average_accuracy"]), points(s["bwt"]), points(s["forgetting"]), points(s["forward_transfer"])]
            loss = s.get("memory_loss")
            cells.append("—" if loss is None else f"{loss['mean']:.3f} ± {loss['std']:.3f}")
            lines.append(f"| {strategy} | " + " | ".join(cells) + f" | {s['seconds']['mean']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
