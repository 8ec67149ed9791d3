"""The seed's-table section of ``docs/results.md``, and the set names that key the seed-table results."""

from __future__ import annotations

from pathlib import Path

from condense.cache import atomic_savefig
from condense.report.plots import plt
from condense.report.tables import points, section_header, table_head, table_row

COLUMNS = {"ag_news": "AG News", "imdb": "IMDB", "sst2": "SST-2", "rotten_tomatoes": "Rotten Tomatoes"}
# "Fine-tuned on entire dataset" as the seed quotes it (its models, the tasks' full training sets).
SEED_ENTIRE = {
    "DistilBERT": (92.97, 87.32, 80.74, 78.71),
    "BERT-base": (94.46, 93.86, 91.86, 84.71),
    "RoBERTa": (94.98, 95.11, 93.35, 88.46),
}
# The bars, by k: the recipe on the best distilled text reaches this share of fine-tuning on the entire data, and
# beats the best real subset of the same k by REAL_MARGIN.
BARS = {1: 0.85, 10: 0.90}
REAL_MARGIN = 0.05
REAL_SUBSETS = ("random", "kcenters", "herding")


def method_text_set(method: str) -> str:
    """The name of the decoded text of a set distilled with the ``configs/distill/<method>.yaml`` preset."""
    return f"{method}-mode text"


def encoder_set(form: str, attention: str) -> str:
    """The name of a set distilled with every weight in the inner loop, in ``form``, with ``attention`` labels."""
    return f"all-weights {form} (attention labels: {attention})"


def column_task(tasks: dict, column: str) -> str | None:
    """The task shown in a column of the seed's layout: the column's own, or a stated subsample of it (sst2_2k)."""
    return next((t for t in tasks if t == column or t.startswith(f"{column}_")), None)


def runs_points(stat: dict) -> str:
    """An entire-dataset summary: mean ± std over its seeds, or the one run's accuracy and no spread."""
    return f"{100 * stat['mean']:.1f} (1 seed)" if stat["n"] == 1 else points(stat)


def _share(stat: dict | None, reference: float) -> str:
    return "—" if stat is None else f"{100 * stat['mean'] / reference:.1f}%"


def _best_under_recipe(sets: dict, keep) -> tuple[str, dict] | None:
    """(name, recipe summary) of the set among those ``keep(name)`` accepts with the highest recipe accuracy."""
    measured = {name: s["finetune"] for name, s in sets.items() if "finetune" in s and keep(name)}
    if not measured:
        return None
    name = max(measured, key=lambda n: measured[n]["mean"])
    return name, measured[name]


def best_text_set(sets: dict) -> tuple[str, dict] | None:
    """The distilled text set (not a real subset) with the highest recipe accuracy."""
    return _best_under_recipe(sets, lambda name: "text" in name)


def report(results: dict, figures: Path) -> list[str]:
    tasks, config = results["tasks"], results["config"]
    table, model = config["bench"]["seed_table"], config["model"]["name"]
    recipe = table["recipe"]
    lines = section_header(results, "The seed's table: fine-tuned on the entire dataset vs on the distilled dataset")
    lines += [
        f"Model: `{model}` ({config['model']['pooling']} pooling). The standard recipe: AdamW (lr {recipe['lr']}, head lr "
        f"{recipe['head_lr']}, weight decay {recipe['weight_decay']}) on every weight, {recipe['epochs']} epoch of batches "
        f"of {recipe['batch_size']}, {recipe['schedule']} schedule (warm-up {recipe['warmup_ratio']:.0%}), batches grouped "
        f"by length; a tiny set gets at least {recipe['min_steps']} steps. *Entire*: the recipe on every training row "
        f"condense loads, seeds {table['entire_seeds'] or '(none in this run: see the summary)'}, tested on the whole test split. *Distilled*: the recipe on "
        f"sets of k per class, {table['n_inits']} fresh models per distillation seed (seeds {config['bench']['seeds']}), "
        f"tested on a fixed sample of {config['eval']['encoder_test_examples'] or 'all'} test examples; the % columns "
        "divide by the entire-dataset runs' accuracy on that same sample. Cells: mean ± std over seeds × fresh models. "
        f"Training is in float32; the sets' test examples are encoded in {config['precision']} (`precision=bf16` "
        "autocasts the forwards that are not differentiated), the entire-dataset runs' in float32. Real subsets "
        + ("keep their own (hard) labels; k-centers and herding pick the same rows for every seed, so they are "
           f"measured once, with {table['n_inits'] * len(config['bench']['seeds'])} fresh models."
           if table.get("baseline_labels") == "hard" else
           "get soft labels and learning rates from the head-mode outer loop, as distilled sets do."),
        "",
    ]
    for task, result in tasks.items():
        lines += task_table(task, result)
    return lines + attention_ablation(tasks, config["bench"]["seeds"])


def summary(runs: list[dict], figures: Path) -> list[str]:
    """The seed's layout and the bars over every seed-table run: a row pair per model. Runs of one model are
    merged task by task: the entire-dataset runs of the first run that has them, the sets of all of them (a later
    run adds sets, e.g. the encoder-mode ones of a task, beside the earlier run's)."""
    models = merged_models(runs)
    lines = ["## The seed's table, every model", "",
             "Merged from the seed-table runs above (" + ", ".join(f"`{r['name']}`" for r in runs) + "); where two runs "
             "measured the same set, the cell shown is the run's with hard-labelled real subsets (this protocol's).", ""]
    lines += seed_layout(models)
    for model, tasks in models.items():
        lines += budgets(model, tasks, figures)
        lines += bars(model, tasks)
    return lines


def merged_models(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """{model: {task: result}} over seed-table runs: the entire-dataset runs of the first run that has them, the sets
    of all of them (a later run's cell replaces an earlier one's of the same name; real subsets trained with their
    own hard labels keep a name of their own). Runs with hard-labelled subsets, the later protocol, are merged last,
    so theirs are the cells shown where both measured a set."""
    models: dict[str, dict[str, dict]] = {}
    for results in sorted(runs, key=_is_hard):
        merged = models.setdefault(results["config"]["model"]["name"], {})
        hard = _is_hard(results)
        for task, result in results["tasks"].items():
            into = merged.setdefault(task, {**result, "sets": {}})
            into["entire"] = into["entire"] or result["entire"]
            for k, sets in result["sets"].items():
                into["sets"].setdefault(k, {}).update({hard_labelled(n) if hard and n in REAL_SUBSETS else n: v for n, v in sets.items()})
    return models


def _is_hard(results: dict) -> bool:
    return results["config"].get("bench", {}).get("seed_table", {}).get("baseline_labels") == "hard"


def hard_labelled(subset: str) -> str:
    """The name of a real subset trained on with its own (hard) labels, beside the same subset with learned ones."""
    return f"{subset} (hard labels)"


def is_real(name: str) -> bool:
    return name.split(" (")[0] in REAL_SUBSETS


def best_real_subset(sets: dict) -> tuple[str, dict] | None:
    """The real subset (any selector, any label treatment) with the highest recipe accuracy."""
    return _best_under_recipe(sets, is_real)


def budgets(model: str, tasks: dict, figures: Path) -> list[str]:
    """Every budget k: the best distilled text and the best real subset under the recipe, as shares of fine-tuning
    on the entire data, and the plot of recipe accuracy against k per task."""
    lines = [f"**Every budget, {model}** (the recipe's test accuracy on the same test sample as the entire-data runs; "
             "% = share of the entire-data runs' accuracy there)", ""]
    lines += table_head(["task", "k", "best distilled text", "% of entire", "best real subset", "% of entire", "distilled − real"],
                        "lrlrlrr")
    for task, result in tasks.items():
        reference = result["entire"]["subsample"]["mean"] if result.get("entire") else None
        for k in sorted(result["sets"], key=int):
            best, real = best_text_set(result["sets"][k]), best_real_subset(result["sets"][k])
            if best is None and real is None:
                continue
            share = lambda found: "—" if reference is None else _share(None if found is None else found[1], reference)  # noqa: E731
            margin = "—" if best is None or real is None else f"{100 * (best[1]['mean'] - real[1]['mean']):+.1f}"
            lines.append(table_row([task, k, "—" if best is None else f"{points(best[1])} ({best[0]})", share(best),
                                    "—" if real is None else f"{points(real[1])} ({real[0]})", share(real), margin]))
    path = None if figures is None else figures / f"seed_table_budgets_{model}.png"
    if path is not None and budget_plot(tasks, path):
        lines += ["", f"![recipe accuracy against k, {model}](figures/{path.name})"]
    return lines + [""]


def budget_plot(tasks: dict, path: Path) -> bool:
    """A panel per task: recipe accuracy against k (log axis) for every set measured at two or more k, ± std, and
    the entire-data runs as a dashed line. False when no task has two budgets."""
    shown = {task: r for task, r in tasks.items() if len(r["sets"]) > 1}
    if not shown:
        return False
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    for ax, (task, result) in zip(axes[0], shown.items()):
        ks = sorted(result["sets"], key=int)
        names = sorted({n for k in ks for n, s in result["sets"][k].items() if "finetune" in s})
        for name in names:
            points_ = [(int(k), result["sets"][k][name]["finetune"]) for k in ks if "finetune" in result["sets"][k].get(name, {})]
            if len(points_) < 2:
                continue
            x = [p[0] for p in points_]
            mean = [100 * p[1]["mean"] for p in points_]
            std = [100 * p[1]["std"] for p in points_]
            ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=name, linestyle="--" if is_real(name) else "-")
        if result.get("entire"):
            ax.axhline(100 * result["entire"]["subsample"]["mean"], color="black", linestyle=":", label="entire dataset")
        ax.set_xscale("log")
        ax.set_xticks([int(k) for k in ks], [str(k) for k in ks])
        ax.set_title(task)
        ax.set_xlabel("examples per class (k)")
        ax.set_ylabel("test accuracy under the recipe (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return True


def attention_ablation(tasks: dict, seeds: list) -> list[str]:
    """With and without attention labels: the all-weights text set under its learned protocol and the recipe."""
    lines = []
    for task, result in tasks.items():
        sets = result["sets"].get("1", {})
        settings = [name.split("attention labels: ")[1].rstrip(")") for name in sets if name.startswith("all-weights text")]
        if len(settings) < 2:
            continue
        lines += [f"**Attention labels, {task}** (all-weights text sets, k = 1, distillation seeds {seeds}; the spread "
                  "of the seed means is in brackets)", ""]
        lines += table_head(["attention labels", "learned protocol", "recipe"], "lrr")
        for setting in settings:
            stats = sets[encoder_set("text", setting)]
            lines.append(table_row([setting, *(f"{points(stats[p])} [{100 * stats[p]['std_over_seeds']:.1f}]" for p in ("learned", "finetune"))]))
        lines.append("")
    return lines


def seed_layout(models: dict[str, dict]) -> list[str]:
    """The seed's own layout: rows model × {entire, distilled}, a column per task."""
    lines = ["**The seed's layout** (k = 1 per class; distilled = the best 1/class text set under the recipe; the "
             "seed's rows are quoted from it and use other models and the tasks' full training sets: AG News has "
             "120,000 training rows there, 12,000 here; IMDB 25,000 at up to 512 tokens there, 10,000 at 128 here).", ""]
    lines += table_head(["model", "fine-tuned on", *COLUMNS.values()], "ll" + "r" * len(COLUMNS))
    for model, tasks in models.items():
        entire_cells, distilled_cells = [], []
        for column in COLUMNS:
            task = column_task(tasks, column)
            result = tasks.get(task)
            sample = "" if task == column or result is None else f" ({result['train_examples']:,} training rows)"
            entire_cells.append("—" if result is None or result["entire"] is None else runs_points(result["entire"]["whole_test"]) + sample)
            best = None if result is None else best_text_set(result["sets"].get("1", {}))
            distilled_cells.append("—" if best is None else points(best[1]))
        lines.append(table_row([f"{model} (here)", "entire dataset", *entire_cells]))
        lines.append(table_row([f"{model} (here)", "distilled dataset (1/class)", *distilled_cells]))
    for name, values in SEED_ENTIRE.items():
        lines.append(table_row([f"{name} (seed)", "entire dataset", *[f"{v:.2f}" for v in values]]))
        lines.append(table_row([f"{name} (seed)", "distilled dataset", *["pending"] * len(COLUMNS)]))
    return lines + [""]


def task_table(task: str, result: dict) -> list[str]:
    entire = result["entire"]
    if entire is None:  # the full-data runs are in another run's file: the summary divides by them
        lines = [f"**{task}** ({result['train_examples']} training rows; the entire-dataset runs, and the % of them, "
                 "are in the summary below)", ""]
        lines += table_head(["k", "set", "recipe", "learned protocol"], "llrr")
        for k, sets in result["sets"].items():
            lines += [table_row([k, name, points(s.get("finetune")), points(s.get("learned"))]) for name, s in sets.items()]
        return lines + [""]
    reference = entire["subsample"]["mean"]
    lines = [
        f"**{task}**: entire dataset {runs_points(entire['whole_test'])} on the whole test split "
        f"({entire['test_examples']} examples), {runs_points(entire['subsample'])} on the {entire['subsample_examples']}-example "
        f"sample ({entire['train_examples']} training rows, {entire['seconds']['mean'] / 60:.1f} min a run).",
        "",
    ]
    lines += table_head(["k", "set", "recipe", "% of entire", "learned protocol", "% of entire"], "llrrrr")
    for k, sets in result["sets"].items():
        for name, stats in sets.items():
            recipe, learned = stats.get("finetune"), stats.get("learned")
            lines.append(table_row([k, name, points(recipe), _share(recipe, reference), points(learned), _share(learned, reference)]))
    return lines + [""]


def bars(model: str, tasks: dict) -> list[str]:
    """The bars at k = 1 and 10 on every task of the seed's table: the best distilled text's share of entire, and its
    margin over the best real subset."""
    lines = [f"**Bars, {model}** (shares of the entire-dataset runs on the same test sample)", ""]
    lines += table_head(["task", "k", "bar", "measured", "met"])
    for column in COLUMNS:
        task = column_task(tasks, column)
        if task is None or tasks[task]["entire"] is None:
            lines.append(table_row([column, "—", "every bar", "not run" if task is None else "no entire-dataset runs", "no"]))
            continue
        reference = tasks[task]["entire"]["subsample"]["mean"]
        for k, goal in BARS.items():
            sets = tasks[task]["sets"].get(str(k), {})
            best, real = best_text_set(sets), best_real_subset(sets)
            if best is None:
                lines.append(table_row([task, str(k), f"recipe on the best text set ≥ {goal:.0%} of entire", "not run", "no"]))
                continue
            share = best[1]["mean"] / reference
            lines.append(table_row([task, str(k), f"recipe on the best text set ≥ {goal:.0%} of entire", f"{share:.1%} ({best[0]})",
                                    "yes" if share >= goal else "no"]))
            if real is not None:
                margin = best[1]["mean"] - real[1]["mean"]
                lines.append(table_row([task, str(k), f"… ≥ the best real subset + {100 * REAL_MARGIN:.0f} points",
                                        f"{100 * margin:+.1f} points (vs {real[0]})", "yes" if margin >= REAL_MARGIN else "no"]))
    return lines + [""]


def ceiling_section(results: dict) -> list[str]:
    """``recipe_ceiling.json``: the best a head trained by the recipe's AdamW can do on frozen features."""
    lines = ["## What the recipe's head can learn on a frozen encoder", "",
             f"Regenerate: `{results['command']}` ({results['seconds'] / 60:.1f} min). The recipe's AdamW moves every weight "
             "of a fresh head by about the same amount, so with the encoder frozen a set only picks the sign of each "
             "weight's move: no set can take the head past the best sign-pattern classifier, and its bias barely moves "
             "from its small random start. Below: two natural sign patterns (the best one may do a little better), "
             "with a fitted scale and biases and with none. Test accuracy on the whole test split, frozen MiniLM "
             f"features of every training row; probes over seeds {results['seeds']} (mean ± std).", ""]
    lines += table_head(["task", "linear probe", "sign pattern of the probe (fitted scale and biases)",
                         "sign pattern of the class means (fitted)", "… with no bias"], "lrrrr")
    for task, r in results["tasks"].items():
        lines.append(table_row([task, points(r["linear_probe"]), points(r["probe_sign_pattern"]),
                                f"{100 * r['class_mean_sign_pattern']:.1f}",
                                f"{100 * r['class_mean_sign_pattern_no_bias']:.1f}" if "class_mean_sign_pattern_no_bias" in r else "—"]))
    return lines + [""]


def recipe_cost_section(results: dict) -> list[str]:
    """``recipe_cost.json``: distillation time per set, and the recipe's time on a set against the entire data."""
    lines = ["## Cost: distilling a set, and the recipe on it against the entire data", "",
             f"Regenerate: `{results['command']}`. Machine: {results['machine']['processor']}, "
             f"{results['machine']['cpu_count']} cores, {results['machine']['torch_threads']} torch thread. Distillation: "
             "seconds per set as recorded when the seed table made it (mean over seeds; the seed-table runs shared the "
             "two cores with another run). Recipe: one training run (no testing) on the set's decoded text, against the "
             "entire-data runs' training time.", ""]
    lines += table_head(["task", "preset", "k", "outer steps", "distillation per set (s)", "recipe on the set (s)",
                         "recipe on the entire data (s)", "entire / set"], "llrrrrrr")
    for row in results["rows"]:
        entire = row["entire_recipe_seconds"]
        lines.append(table_row([row["task"], row["method"], str(row["k"]), str(row["outer_steps"]),
                                f"{row['distill_seconds']:.0f} (max {row['distill_seconds_max']:.0f})", f"{row['recipe_seconds']:.1f}",
                                "—" if entire is None else f"{entire:.0f}",
                                "—" if entire is None else f"{entire / row['recipe_seconds']:.0f}×"]))
    return lines + [""]
