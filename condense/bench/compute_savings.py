"""What a distilled set saves: when full-data training reaches the set's accuracy, and after how many trainings
on the set its one-off cost is paid back. Arithmetic on the curves of a results file, nothing run."""

from __future__ import annotations

import math
import statistics

from condense.report.tables import summarize_values

Curve = dict[str, list[float]]  # "examples", "seconds", "accuracy": one entry per evaluation, the first at 0 examples


def time_to_accuracy(curve: Curve, target: float) -> dict[str, float] | None:
    """Seconds and examples at which ``curve`` first reaches ``target``, linearly interpolated from the point
    before; None when it never does."""
    accuracy_, seconds, examples = curve["accuracy"], curve["seconds"], curve["examples"]
    for i, reached in enumerate(accuracy_):
        if reached >= target:
            if i == 0:
                return {"seconds": seconds[0], "examples": examples[0]}
            share = (target - accuracy_[i - 1]) / (reached - accuracy_[i - 1])
            return {
                "seconds": seconds[i - 1] + share * (seconds[i] - seconds[i - 1]),
                "examples": examples[i - 1] + share * (examples[i] - examples[i - 1]),
            }
    return None


def break_even(cost_seconds: float, full_seconds: float, distilled_seconds: float) -> int | None:
    """Trainings on the set after which its one-off cost is paid back; None when each saves nothing."""
    saved = full_seconds - distilled_seconds
    return math.ceil(cost_seconds / saved) if saved > 0 else None


def savings(curves: list[Curve], distilled: dict, cost_seconds: float) -> dict:
    """Full-data training (one curve per seed) against training on the set, to the set's mean accuracy.

    ``distilled`` has the set's ``accuracy`` and ``seconds`` summaries and its ``examples`` processed;
    ``cost_seconds`` is what making the set cost. When no curve reaches the set's accuracy, full-data training
    takes longer than its whole stream, which bounds the break-even from above.
    """
    target, seconds = distilled["accuracy"]["mean"], distilled["seconds"]["mean"]
    reached = [hit for curve in curves if (hit := time_to_accuracy(curve, target)) is not None]
    result: dict = {"target": target, "cost_seconds": cost_seconds, "seeds": len(curves), "reached": len(reached)}
    if not reached:
        stream = statistics.fmean(curve["seconds"][-1] for curve in curves)
        bound = break_even(cost_seconds, stream, seconds)
        return {**result, "seconds": None, "examples": None, "speedup": None, "examples_ratio": None,
                "break_even": None, "break_even_per_seed": [], "break_even_at_most": bound}
    full = [hit["seconds"] for hit in reached]
    return {
        **result,
        "seconds": summarize_values(full),
        "examples": summarize_values([hit["examples"] for hit in reached]),
        "speedup": summarize_values([s / seconds for s in full]),
        "examples_ratio": summarize_values([hit["examples"] / distilled["examples"] for hit in reached]),
        "break_even": break_even(cost_seconds, statistics.fmean(full), seconds),
        "break_even_per_seed": [break_even(cost_seconds, s, seconds) for s in full],
        "break_even_at_most": None,
    }
