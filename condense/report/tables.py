"""Reporting: mean ± std summaries, number formatting and markdown tables, for run folders and docs alike.

Nothing here computes a measurement; every function turns results dicts into summaries or text. The one place
where an accuracy becomes text (:func:`points`), a Markdown table starts (:func:`table_head`), and an analysis
suite section gets its header and figure paths (:func:`section_header`, :func:`figure_path`).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

from condense.config.schema import BASELINES

# Every set ``python -m condense.distill`` evaluates, in the order its tables list them.
SETS = ("distilled", "decoded", *BASELINES, "full")


def summarize_values(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and count."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def pooled(summaries: list[dict]) -> dict:
    """Mean ± std over every fresh model of every seed, from per-seed summaries; also the std of the seed means."""
    counts = [s["n"] for s in summaries]
    total = sum(counts)
    mean = sum(s["mean"] * n for s, n in zip(summaries, counts)) / total
    within = sum((n - 1) * s["std"] ** 2 for s, n in zip(summaries, counts))
    between = sum(n * (s["mean"] - mean) ** 2 for s, n in zip(summaries, counts))
    seed_means = [s["mean"] for s in summaries]
    return {
        "mean": mean,
        "std": math.sqrt((within + between) / max(total - 1, 1)),
        "n": total,
        "seeds": len(summaries),
        "std_over_seeds": statistics.stdev(seed_means) if len(seed_means) > 1 else 0.0,
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


# The one noise rule of every generated sentence that compares two numbers.
NOISE_RULE = ("a difference between two methods is paired by seed, and counts only beyond one standard error of its "
              "mean (std / √n); within it, two methods are called no different")


def standard_error(summary: dict) -> float:
    """std / √n of a summary; infinite for one value, which says nothing about noise."""
    return summary["std"] / math.sqrt(summary["n"]) if summary["n"] > 1 else math.inf


def verdict(difference: dict, more: str, less: str, same: str = "no different from") -> str:
    """``more`` or ``less`` by the sign of a paired difference's mean, or ``same`` within one standard error of it
    (:data:`NOISE_RULE`)."""
    if abs(difference["mean"]) <= standard_error(difference):
        return same
    return more if difference["mean"] > 0 else less


def points(stat: dict | None, spread: str = "std") -> str:
    """``mean ± spread`` of a summary of shares (accuracies), in percentage points; "—" when there is none."""
    return "—" if stat is None else f"{100 * stat['mean']:.1f} ± {100 * stat[spread]:.1f}"


def metrics_table(metrics: dict) -> str:
    """``metrics.json`` of one distilled set as Markdown: a row per evaluated set, a column per protocol."""
    protocols = [p for p in ("learned", "finetune") if metrics.get(p)]
    lines = table_head(["set", *protocols])
    for name in SETS:
        entries = [metrics[protocol].get(name) for protocol in protocols]
        lines.append(table_row([name, *("—" if e is None else f"{points(e)} (n={e['n']})" for e in entries)]))
    full = (metrics.get("finetune") or {}).get("full") or (metrics.get("learned") or {}).get("full") or {}
    if "train_rows" in full:  # the fine-tuning reference says what it trained on: all rows, or a sample
        rows = full["train_rows"]
        lines.append("")
        lines.append(f"full (fine-tuning): the recipe on all {rows:,} training rows" if full["train_examples"] == rows else
                     f"full (fine-tuning): the recipe on a sample of {full['train_examples']:,} of the {rows:,} training "
                     "rows (eval.full_finetune_examples), not the entire split")
    return "\n".join(lines)


def signed_points(stat: dict) -> str:
    """A difference of shares in points, its sign always written: ``+1.2 ± 3.4``."""
    return f"{100 * stat['mean']:+.1f} ± {100 * stat['std']:.1f}"


_RULES = {"l": "---", "r": "---:"}


def table_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_head(columns: Sequence[str], align: str | None = None) -> list[str]:
    """A Markdown table's header row and rule; ``align`` has a letter per column, ``l`` or ``r`` (all ``l``)."""
    align = "l" * len(columns) if align is None else align
    if len(align) != len(columns) or set(align) - set(_RULES):
        raise ValueError(f"align needs one of l/r per column ({len(columns)}), got {align!r}")
    return [table_row(columns), "|" + "".join(_RULES[a] + "|" for a in align)]


def figure_path(results: dict, figures: Path, suffix: str = "") -> Path:
    """Where a results file's plot goes: named after the file, so a variant run's plots do not overwrite the
    preset's (files written before results carried their name are ``bench_<experiment>``)."""
    return figures / f"{results.get('name', 'bench_' + results['experiment'])}{suffix}.png"


def section_header(results: dict, title: str) -> list[str]:
    """The opening lines of an experiment's section: title, the command that regenerates it, machine and time."""
    m = results["machine"]
    if results.get("name", f"bench_{results['experiment']}") != f"bench_{results['experiment']}":
        title += f" (variant run: `{results['name']}`)"
    return [
        f"## {title}",
        "",
        f"Regenerate: `{results['command']}` (preset `{results['preset']}`, {results['seconds'] / 60:.1f} min). "
        f"Machine: {m['processor']}, {m['cpu_count']} cores, {m['torch_threads']} torch threads, torch {m['torch']}"
        f"{gpu_note(m)}.",
        "",
    ]


def one_line(summary: dict) -> str:
    return (f"average accuracy {points(summary['average_accuracy'])}, BWT {points(summary['bwt'])}, "
            f"{summary['seconds']['mean']:.0f} s per run")


def results_table(results: dict, settings: str = "") -> str:
    """Markdown: one table per scenario, a row per strategy, accuracies and transfer in points, and the replay
    memory's cross-entropy under the model when the next task starts; ``settings`` names what the run changed."""
    names = results["sequence"]
    lines = []
    for scenario, by_strategy in results["summary"].items():
        columns = ["strategy", *(f"final {n}" for n in names), "average", "BWT", "forgetting", "FWT", "memory loss", "s/run"]
        lines += [
            f"**{scenario}-incremental{', ' + settings if settings else ''}** ({', '.join(names)}; mean ± std over seeds, accuracy in %)",
            "",
            *table_head(columns, "l" + "r" * (len(columns) - 1)),
        ]
        for strategy, s in by_strategy.items():
            cells = [points(a) for a in s["final_accuracy"]]
            cells += [points(s["average_accuracy"]), points(s["bwt"]), points(s["forgetting"]), points(s["forward_transfer"])]
            loss = s.get("memory_loss")
            cells.append("—" if loss is None else f"{loss['mean']:.3f} ± {loss['std']:.3f}")
            lines.append(table_row([strategy, *cells, f"{s['seconds']['mean']:.0f}"]))
        lines.append("")
    return "\n".join(lines)


def gpu_note(machine_record: dict) -> str:
    """", on <GPU names>" when the record names GPUs (records made before they were recorded name none)."""
    gpus = machine_record.get("gpus") or []
    return f", on {' + '.join(gpus)}" if gpus else ""


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # The GPUs this process sees (CUDA_VISIBLE_DEVICES applied), by name; none on a CPU machine.
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [],
        "cuda": torch.version.cuda,
    }
