"""Transfer: distilled sets trained on by models and recipes other than the one they were distilled for.

The studied set's decoded text (the form anyone can use) and a random real subset of the same size are each
trained on by: the learned protocol from heads never seen in distillation; a linear head trained to convergence
(Adam, a different recipe for the same parameters); the top encoder block plus a head, and every weight, with the
AdamW fine-tuning recipe (different parameter subsets); and a bag-of-words logistic regression (scikit-learn), a
model with no encoder at all. The continuous-embedding form (the ablations' ``projection: none`` set) goes through
the same neural recipes, to see whether it transfers as well as text.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from condense.bench.common import (
    TaskData,
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
from condense.evaluate import FinetuneRecipe, TrainingSet, finetune_protocol, summarize
from condense.inner import soft_cross_entropy
from condense.models import encode, init_head, linear_head
from condense.plots import plt

log = logging.getLogger(__name__)
RECIPES = ("learned protocol, new heads", "head to convergence (Adam)", "top block + head (AdamW)",
           "all weights (AdamW)", "bag-of-words logistic regression")
SETS = ("decoded text", "random real", "continuous embeddings")
BAG_OF_WORDS = RECIPES[-1]


def head_to_convergence(data: TaskData, train: TrainingSet, n_inits: int, seed: int, steps: int = 300) -> dict:
    """A fresh linear head on the set's frozen features, full-batch Adam on its soft labels until it converges."""
    with torch.no_grad():
        features = encode(data.encoder, train.attention_mask, **train.inputs())
    accuracies = []
    for init in range(n_inits):
        head = init_head(data.encoder.hidden_size, train.soft_labels.shape[1], torch.Generator().manual_seed(seed + init))
        head = {k: v.requires_grad_(True) for k, v in head.items()}
        optimizer = torch.optim.Adam(list(head.values()), lr=1e-2, weight_decay=1e-4)
        for _ in range(steps):
            loss = soft_cross_entropy(linear_head(features, head), train.soft_labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracies.append((linear_head(data.test.features, head).argmax(-1) == data.test.labels).float().mean().item())
    return summarize(accuracies)


def bag_of_words_accuracy(texts: list[str], soft_labels: torch.Tensor, test_texts: list[str], test_labels: np.ndarray) -> float:
    """Logistic regression on word counts, fitted to soft labels: each text appears once per class, weighted by
    that class's probability, which minimises exactly the soft-label cross-entropy."""
    vectorizer = CountVectorizer(lowercase=True)
    features = vectorizer.fit_transform(texts)
    classes = soft_labels.shape[1]
    rows = np.repeat(np.arange(len(texts)), classes)
    targets = np.tile(np.arange(classes), len(texts))
    weights = soft_labels.reshape(-1).numpy().astype(np.float64)
    model = LogisticRegression(max_iter=1000)
    model.fit(features[rows], targets, sample_weight=weights)
    predictions = model.classes_[model.predict_proba(vectorizer.transform(test_texts)).argmax(1)]
    return float((predictions == test_labels).mean())


def transfer_runs(cfg: DictConfig, data: TaskData, seed: int) -> dict[str, dict[str, dict]]:
    """Accuracy of every recipe on every set, for one distillation seed: {set: {recipe: summary}}."""
    n_inits, finetune_inits = cfg.bench.n_inits, cfg.bench.transfer.finetune_inits
    studied = studied_set(cfg, data, seed)
    embeddings = distilled(data, ipc=cfg.bench.ipc, outer_steps=cfg.bench.outer_steps, seed=seed, projection="none")
    chosen = select_coreset("random", data.train_features, data.train_labels, cfg.bench.ipc, seed).tolist()
    random_texts = [data.task.train["text"][i] for i in chosen]
    hard = F.one_hot(data.train_labels[chosen], data.task.num_classes).float()
    seq_len = studied.embeddings.shape[1]
    sets = {
        "decoded text": (text_form(data, studied.texts, studied.soft_labels, seq_len), studied),
        "random real": (text_form(data, random_texts, hard), studied),
        "continuous embeddings": (embedding_form(embeddings), embeddings),
    }
    recipe = FinetuneRecipe(**data.cfg.eval.finetune.recipe)
    recipes = {
        RECIPES[0]: lambda train, source: learned_accuracy(data, train, source.inner_lrs, source.meta["inner"], n_inits),
        RECIPES[1]: lambda train, source: head_to_convergence(data, train, n_inits, data.cfg.eval.seed),
        RECIPES[2]: lambda train, source: finetune_protocol(
            data.encoder, train, data.test, dataclasses.replace(recipe, params="last_n_layers", n_layers=1),
            n_inits=finetune_inits, seed=data.cfg.eval.seed),
        RECIPES[3]: lambda train, source: finetune_protocol(
            data.encoder, train, data.test, recipe, n_inits=finetune_inits, seed=data.cfg.eval.seed),
    }
    results: dict[str, dict[str, dict]] = {name: {} for name in sets}
    for set_name, (train, source) in sets.items():
        for recipe_name, train_with in recipes.items():
            results[set_name][recipe_name] = train_with(train, source)
            log.info("%s seed %d: %s with %s: %s", data.name, seed, set_name, recipe_name, points(results[set_name][recipe_name]))

    test_texts, test_labels = data.task.test["text"], np.asarray(data.task.test["label"])
    results["decoded text"][BAG_OF_WORDS] = summarize([bag_of_words_accuracy(studied.texts, studied.soft_labels, test_texts, test_labels)])
    # One random subset per fresh model: a bag-of-words fit is deterministic, so its spread is the subsets'.
    random_draws = [select_coreset("random", data.train_features, data.train_labels, cfg.bench.ipc, seed * 1000 + draw).tolist()
                    for draw in range(n_inits)]
    results["random real"][BAG_OF_WORDS] = summarize([
        bag_of_words_accuracy([data.task.train["text"][i] for i in draw],
                              F.one_hot(data.train_labels[draw], data.task.num_classes).float(), test_texts, test_labels)
        for draw in random_draws
    ])
    return results


def run(cfg: DictConfig) -> dict:
    per_task: dict[str, dict] = {}
    jobs = [(entry, seed) for entry in cfg.bench.tasks for seed in cfg.bench.seeds]
    runs: dict[str, list[dict]] = {}
    for entry, seed in tqdm(jobs, desc="transfer: (task, seed)"):
        data = task_data(cfg, entry)
        runs.setdefault(data.name, []).append(transfer_runs(cfg, data, seed))
    for task, task_runs in runs.items():
        per_task[task] = {
            "runs": task_runs,
            "summary": {set_name: {recipe: pooled([r[set_name][recipe] for r in task_runs]) for recipe in task_runs[0][set_name]}
                        for set_name in task_runs[0]},
        }
    return {"tasks": per_task}


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
    fig.savefig(path, dpi=120)
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
        lines += [f"**{task}**", "", "| recipe | " + " | ".join(SETS) + " |", "|---|" + "---:|" * len(SETS)]
        for recipe in RECIPES:
            cells = [f"{points(summary[s][recipe])} ({summary[s][recipe]['n']})" if recipe in summary[s] else "—" for s in SETS]
            lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
        gaps = [f"{recipe}: {100 * (summary['decoded text'][recipe]['mean'] - summary['random real'][recipe]['mean']):+.1f}"
                for recipe in RECIPES]
        lines += ["", f"![{task} transfer](figures/{path.name})", "",
                  "Decoded text minus random real, in points: " + "; ".join(gaps) + ".", ""]
    return lines
