"""``docs/results/experimental.md``: every method that has left the product, what it was, what it measured, and the
commit and command that reproduce each number (:mod:`condense.bench.legacy_report` reads the files)."""

from __future__ import annotations

from condense.bench.continual_report import task_bwt
from condense.bench.legacy_report import (
    LEGACY_COMMIT,
    _pick,
    _rows,
    _section,
    against,
    bwt_table,
    merged_table,
    refit_table,
    renamed,
)
from condense.bench.peers_report import difference
from condense.report.tables import NOISE_RULE, points, signed_points, summarize_values, table_head, table_row, verdict

# The commit that last had the recipe-mode distillation (configs/distill/recipe.yaml and the AdamW inner loop).
RECIPE_COMMIT = "cef300f"

INTRO = [
    "# Methods that left the product",
    "",
    "Each of these was measured against what the product keeps in its place, and nowhere came out ahead on what the",
    "place is for (the section says where it tied), so its code and its config keys were removed. The numbers come",
    f"from the files named under each table, written at commit `{LEGACY_COMMIT}` or earlier; checking out that commit",
    "and running each file's command gives the file back. BWT is the change in accuracy on the first task between",
    f"right after learning it and the end of the sequence, in points; {NOISE_RULE}.",
    "",
]


def _cross(first: dict, a: str, second: dict, b: str, scenario: str = "class") -> dict:
    """``a``'s BWT on the first task in one file minus ``b``'s in another, paired by seed."""
    x, y = task_bwt(first["runs"], scenario, a), task_bwt(second["runs"], scenario, b)
    return summarize_values([x[s] - y[s] for s in sorted(x) if s in y])


def _memory_section(files: dict[str, dict], picked: dict[str, str], title: str, what: str, shown: tuple[str, ...],
                    removed: str, kept: str) -> list[str]:
    """A removed memory's section: the BWT of the ``shown`` memories in each ``picked`` file, then ``removed`` read
    against ``kept``, the memory that took or keeps its place."""
    rows = _rows(files, picked)
    return _section(title, what, lambda: bwt_table(rows, shown) + against(rows, removed, kept), {n: files[n] for n in picked})


def experimental_page(files: dict[str, dict]) -> list[str]:
    lines = list(INTRO)
    plain = {**_pick(files, "continual_full_{sequence}", "{sequence}, 1/class")}
    for m in (2, 4, 8, 16):
        plain.update(_pick(files, f"continual_full_mem{m}_{{sequence}}", f"{{sequence}}, {m}/class"))
    if plain:
        lines += _memory_section(
            files, plain, "distilled_replay: each task's distilled set as continuous embeddings",
            "The per-task sets replayed in embedding form, beside their decoded text (`distilled_text_replay`, kept).",
            ("random_replay", "herding_replay", "distilled_replay", "distilled_text_replay"), "distilled_replay",
            "distilled_text_replay")
        condensed = {n: l for n, l in plain.items() if "condensed_replay" in files[n]["summary"]["class"]}
        lines += _memory_section(
            files, condensed, "condensed_replay: a memory condensed against the learner while each task trains",
            "Gradient matching on the memory's hidden states after every training iteration (one step, Adam lr 0.01).",
            ("random_replay", "condensed_replay"), "condensed_replay", "random_replay")
    learner = {**_pick(files, "continual_full_refit_{sequence}", "{sequence}, refit.steps=100"),
               **_pick(files, "continual_full_ace_{sequence}", "{sequence}, asymmetric_loss=true")}
    if learner:
        lines += _memory_section(
            files, learner, "learner_distilled_replay: a memory distilled by BPTT for a fresh head on the learner's blocks",
            "When each task ends, random real rows distilled (200 outer steps) so that a linear head trained on them "
            "by unrolled SGD classifies the task's real features; bilevel, soft labels.",
            ("random_replay", "herding_replay", "learner_distilled_replay"), "learner_distilled_replay", "random_replay")
    bilevel = {**_pick(files, "continual_full_hd_{sequence}", "{sequence}, 200 steps"),
               **_pick(files, "continual_full_hd_mem2_{sequence}", "{sequence}, 200 steps, 2/class"),
               **_pick(files, "continual_full_hd_steps1_{sequence}", "{sequence}, 1 step"),
               **_pick(files, "continual_full_hd_steps20_{sequence}", "{sequence}, 20 steps")}
    if bilevel:
        lines += _memory_section(
            files, bilevel, "The bilevel objective for herding's rows (learner_distill.objective=bilevel)",
            "The same distillation started from the rows herding keeps (`herding_distilled_replay`); mean matching, "
            "the other objective, is today's `mean_matched_replay`.",
            ("random_replay", "herding_replay", "herding_distilled_replay"), "herding_distilled_replay", "herding_replay")
    noise = _pick(files, "continual_full_mm_noise_{sequence}")
    if noise:
        def noise_body() -> list[str]:
            rows = table_head(["sequence", "with weight noise − without, BWT on the first task", "reading"], "lrl")
            for name, label in noise.items():
                plain_file = files.get(name.replace("_mm_noise_", "_mm_"))
                if plain_file:
                    d = _cross(files[name], "herding_distilled_replay", renamed(plain_file), "mean_matched_replay")
                    rows.append(table_row([label, f"{signed_points(d)} (n = {d['n']})", verdict(d, "better", "worse", "no different")]))
            return [*rows, ""]
        used = {**{n: files[n] for n in noise}, **{n.replace("_mm_noise_", "_mm_"): files[n.replace("_mm_noise_", "_mm_")]
                                                   for n in noise if n.replace("_mm_noise_", "_mm_") in files}}
        lines += _section(
            "Weight noise in mean matching (learner_distill.weight_noise=0.08)",
            "The class means matched under Gaussian-perturbed block weights (0.08 × each tensor's RMS, the drift "
            "block_drift.py measured over the next experience, below), against plain mean matching.",
            noise_body, used)
    merged = _pick(files, "continual_full_merged_{sequence}")
    if merged:
        lines += _section(
            "merged_only: the merged per-task sets, trained by the harness's optimiser",
            "A fresh model trained on the merge of every task's set for 60 passes of the harness's Adam, beside the same "
            "merge trained by the sets' own learned loop (`merged_sets`, kept) and the merge re-distilled jointly "
            "(`super_dataset`, kept). Cells: final accuracy over joint training's, per task.",
            lambda: merged_table(_rows(files, merged), ("merged_only", "merged_sets", "super_dataset")),
            {n: files[n] for n in merged})
    refits = {name: f"{name.removeprefix('refit_validation_')}" for name in sorted(files) if name.startswith("refit_validation_")}
    if refits:
        lines += _section(
            "Re-fit variants: fresh heads, soft targets, a feature anchor",
            "Validation accuracy (training rows no strategy trains on) of the final model after each re-fit of the "
            "heads on the memory; `anchor10` runs added LUCIR's less-forget term (continual.feature_anchor.weight=10). "
            "Today's re-fit keeps the heads as they are and fits each row's class (`continual.refit`, off by default).",
            lambda: refit_table([(label, files[name]) for name, label in refits.items()]), {n: files[n] for n in refits})
    recipe_mode = {name: r for name, r in files.items() if name.startswith("bench_seed_table") and _recipe_cells(r)}
    if recipe_mode:
        lines += recipe_mode_section(recipe_mode)
    if "block_drift" in files:
        drift = files["block_drift"]
        def drift_body() -> list[str]:
            rows = table_head(["sequence", *(f"experience {i + 1}" for i in range(2))], "lrr")
            for sequence, values in drift["sequences"].items():
                rows.append(table_row([sequence, *(f"{m:.3f} ± {s:.3f}" for m, s in zip(values["mean"], values["std"]))]))
            return [*rows, ""]
        lines += _section(
            "Block drift (the measurement that sized the weight noise)",
            "Median over the trained block's tensors of the RMS change over an experience divided by the RMS before it "
            f"({drift['strategy']}, {drift['scenario']}-incremental, seeds {drift['seeds']}).", drift_body, {"block_drift": drift})
    return lines


def _recipe_cells(results: dict) -> list[tuple[str, str, dict, dict]]:
    """(task, k, head-mode text, recipe-mode text) under the recipe, wherever a seed-table run measured both."""
    return [(task, k, sets["head-mode text"]["finetune"], sets["recipe-mode text"]["finetune"])
            for task, result in results.get("tasks", {}).items() for k, sets in result["sets"].items()
            if "finetune" in sets.get("head-mode text", {}) and "finetune" in sets.get("recipe-mode text", {})]


def recipe_mode_section(files: dict[str, dict]) -> list[str]:
    """Distilling through the recipe's own head update (distill=recipe), against the head mode it would replace."""
    lines = ["## Recipe mode: distilling through the standard recipe's head update (distill=recipe)", "",
             "The inner loop was the recipe's head update: AdamW at its head learning rate (2e-3), weight decay, linear "
             "warm-up and decay, for its 30 steps over mini-batches of 32, from a fresh head, the encoder frozen; the "
             "learning rates were the recipe's, not learned, and the hypergradient went through AdamW with its "
             "preconditioner held constant. Both sets' decoded text trained by the standard recipe (all weights), the "
             "same fresh models, the same test examples; cells: mean ± std over distillation seeds × fresh models.", ""]
    lines += table_head(["task", "k", "head mode (kept)", "recipe mode", "recipe − head", "reading"], "lrrrrl")
    for results in files.values():
        for task, k, head, recipe in _recipe_cells(results):
            d = difference(recipe, head)
            lines.append(table_row([task, k, points(head), points(recipe), signed_points(d), verdict(d, "better", "worse", "no different")]))
    lines += ["", f"Reproduce at commit `{RECIPE_COMMIT}` (`git checkout {RECIPE_COMMIT}`):", ""]
    lines += [f"- `benchmarks/results/{name}.json`: `{results['command']}`" for name, results in files.items()]
    return [*lines, ""]
