"""Ablations of the distillation recipe, one factor at a time from the studied set's configuration.

Each factor changes one thing of ``distill=head`` (learned soft labels, T=10 unrolled SGD steps on a fresh linear
head, initialisation from real text, straight-through text projection): hard labels; T in {1, 3}; the inner loop
training the last encoder block or every weight (``configs/distill/last_layer.yaml``, ``all.yaml``); momentum or
Adam inner steps; noise initialisation; continuous embeddings instead of text. Every variant is evaluated under its
own learned protocol. The label-only effect is separated on real inputs: a random real subset of the same size is
trained on with hard labels, with the learned labels of the distilled set, and with labels learned for it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from condense.bench.common import (
    TaskData,
    distill_settings,
    distilled,
    embedding_form,
    figure_path,
    learned_accuracy,
    points,
    pooled,
    section_header,
    studied_set,
    task_data,
    text_form,
)
from condense.coresets import select_coreset
from condense.distill import DistillConfig, learn_labels, real_examples_set
from condense.pipeline import CONFIG_DIR
from condense.plots import plt

log = logging.getLogger(__name__)
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


def variant_overrides(cfg: DictConfig, choice: dict | str, seed: int) -> tuple[dict, int]:
    """Distill overrides of one variant and how many fresh models evaluate it."""
    common = {"ipc": cfg.bench.ipc, "seed": seed}
    if choice == BASE:
        return {**common, "outer_steps": cfg.bench.outer_steps}, cfg.bench.n_inits
    if isinstance(choice, str):  # a distill preset whose inner loop trains encoder weights
        preset = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "distill" / f"{choice}.yaml"))
        return {**preset, **common, "outer_steps": cfg.bench.ablations.encoder_outer_steps}, cfg.bench.ablations.encoder_n_inits
    return {**common, "outer_steps": cfg.bench.outer_steps, **choice}, cfg.bench.n_inits


def evaluate_variant(data: TaskData, overrides: dict, n_inits: int) -> dict:
    distilled_set = distilled(data, **overrides)
    inner = distilled_set.meta["inner"]
    decoded = text_form(data, distilled_set.texts, distilled_set.soft_labels, distilled_set.embeddings.shape[1])
    return {
        "distilled": learned_accuracy(data, embedding_form(distilled_set), distilled_set.inner_lrs, inner, n_inits),
        "decoded": learned_accuracy(data, decoded, distilled_set.inner_lrs, inner, n_inits),
        "distill_seconds": distilled_set.meta["progress"]["seconds"],
    }


def label_only(cfg: DictConfig, data: TaskData, seed: int) -> dict:
    """A random real subset of the studied set's size under three label treatments, all with its learned lrs."""
    base = studied_set(cfg, data, seed)
    chosen = torch.from_numpy(select_coreset("random", data.train_features, data.train_labels, cfg.bench.ipc, seed))
    texts = [data.task.train["text"][i] for i in chosen.tolist()]
    labels = data.train_labels[chosen]
    # select_coreset groups its picks by class in class order, as the distilled set is: row i of either is the
    # same class, so the distilled set's learned labels transfer row by row.
    if not torch.equal(labels, base.labels):
        raise RuntimeError("the random subset and the distilled set order their classes differently")
    config = DistillConfig(**distill_settings(data, **variant_overrides(cfg, BASE, seed)[0]).distill)
    start = real_examples_set(data.encoder, texts, labels, data.cfg.task.max_length)
    own = learn_labels(data.encoder, data.real(config), start, data.task.num_classes, config)
    inner, n_inits = base.meta["inner"], cfg.bench.n_inits
    hard = F.one_hot(labels, data.task.num_classes).float()
    return {
        HARD: learned_accuracy(data, text_form(data, texts, hard), base.inner_lrs, inner, n_inits),
        DISTILLED_LABELS: learned_accuracy(data, text_form(data, texts, base.soft_labels), base.inner_lrs, inner, n_inits),
        OWN_LABELS: learned_accuracy(data, text_form(data, texts, own.soft_labels), own.inner_lrs, inner, n_inits),
    }


def run(cfg: DictConfig) -> dict:
    jobs = [(entry, factor, choice, seed) for entry in cfg.bench.tasks for factor, choices in FACTORS.items()
            for choice in choices for seed in cfg.bench.seeds]
    per_task: dict[str, dict] = {}
    evaluated: dict[tuple, dict] = {}  # the base appears under every factor; evaluate it once
    for entry, factor, choice, seed in tqdm(jobs, desc="ablations: (task, variant, seed)"):
        data = task_data(cfg, entry)
        overrides, n_inits = variant_overrides(cfg, FACTORS[factor][choice], seed)
        key = (data.name, str(sorted(overrides.items())))
        if key not in evaluated:
            evaluated[key] = evaluate_variant(data, overrides, n_inits)
            log.info("%s %s=%s seed %d: distilled %s, decoded %s", data.name, factor, choice, seed,
                     points(evaluated[key]["distilled"]), points(evaluated[key]["decoded"]))
        variants = per_task.setdefault(data.name, {"factors": {}, "label_only": {}})["factors"]
        variants.setdefault(factor, {}).setdefault(choice, {"overrides": overrides, "runs": []})["runs"].append(
            {"seed": seed, **evaluated[key]})
    for entry in cfg.bench.tasks:
        data = task_data(cfg, entry)
        runs = [label_only(cfg, data, seed) for seed in cfg.bench.seeds]
        per_task[data.name]["label_only"] = {name: pooled([r[name] for r in runs]) for name in runs[0]}
        for choices in per_task[data.name]["factors"].values():
            for result in choices.values():
                for form in ("distilled", "decoded"):
                    result[form] = pooled([r[form] for r in result["runs"]])
    return {"tasks": per_task}


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
    fig.savefig(path, dpi=120)
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
        lines += [f"**{task}**", "", "| factor | choice | distilled | decoded | distillation s |", "|---|---|---:|---:|---:|"]
        for factor, choices in result["factors"].items():
            for choice, entry in choices.items():
                seconds = sum(r["distill_seconds"] for r in entry["runs"]) / len(entry["runs"])
                marker = " (studied set)" if FACTORS[factor][choice] == BASE else ""
                lines.append(f"| {factor} | {choice}{marker} | {points(entry['distilled'])} | {points(entry['decoded'])} | {seconds:.0f} |")
        labels = result["label_only"]
        studied = result["factors"]["labels"]
        lines += [
            "", f"![{task} ablations](figures/{path.name})", "",
            "Label-only effect (inputs × labels; every row of real inputs uses the studied set's learned learning rates "
            "except the last, which uses its own):", "",
            "| inputs | hard labels | learned labels of the distilled set | labels learned for these inputs |", "|---|---:|---:|---:|",
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
