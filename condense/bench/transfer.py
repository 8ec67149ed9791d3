"""Transfer: distilled sets trained on by models and recipes other than the one they were distilled for.

The studied set's decoded text (the form anyone can use) and a random real subset of the same size are each
trained on by: the learned protocol from heads never seen in distillation; a linear head trained to convergence
(Adam, a different recipe for the same parameters); the top encoder block plus a head, and every weight, with the
AdamW fine-tuning recipe (different parameter subsets); and a bag-of-words logistic regression (scikit-learn), a
model with no encoder at all. The continuous-embedding form (the ablations' ``projection: none`` set) goes through
the same neural recipes, to see whether it transfers as well as text. Every set under every recipe, for one
distillation seed, is a cell: an interrupted run resumes after the last one it finished.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from condense.artifact.distilled_set import TrainingSet
from condense.bench.common import (
    TaskData,
    cell,
    distilled,
    learned_accuracy,
    studied_set,
    task_data,
    text_form,
    training_form,
)
from condense.bench.transfer_report import BAG_OF_WORDS, RECIPES
from condense.cache import to_jsonable
from condense.data.coresets import select_coreset
from condense.eval.protocols import finetune_protocol
from condense.models.heads import head_accuracy, train_head
from condense.models.encoders import encode
from condense.report.tables import points, pooled, summarize_values
from condense.config.bench import BenchJob

log = logging.getLogger(__name__)


def head_to_convergence(data: TaskData, train: TrainingSet, n_inits: int, seed: int, steps: int = 300) -> dict:
    """A fresh linear head on the set's frozen features, full-batch Adam on its soft labels until it converges."""
    with torch.no_grad():
        features = encode(data.encoder, train.attention_mask, **train.inputs())
    heads = [train_head(features, train.soft_labels, seed=seed + init, steps=steps, lr=1e-2, weight_decay=1e-4,
                        optimizer="adam") for init in range(n_inits)]
    return summarize_values([head_accuracy(head, data.test.features, data.test.labels) for head in heads])


def bag_of_words_accuracy(texts: list[str], soft_labels: torch.Tensor, test_texts: list[str], test_labels: np.ndarray) -> float:
    """Logistic regression on word counts, fitted to soft labels: each text appears once per class, weighted by
    that class's probability, which minimises exactly the soft-label cross-entropy."""
    vectorizer = CountVectorizer(lowercase=True)
    features = vectorizer.fit_transform(texts)
    classes = soft_labels.shape[1]
    rows = np.repeat(np.arange(len(texts)), classes)
    targets = np.tile(np.arange(classes), len(texts))
    weights = soft_labels.reshape(-1).cpu().numpy().astype(np.float64)
    model = LogisticRegression(max_iter=1000)
    model.fit(features[rows], targets, sample_weight=weights)
    predictions = model.classes_[model.predict_proba(vectorizer.transform(test_texts)).argmax(1)]
    return float((predictions == test_labels).mean())


def transfer_runs(job: BenchJob, data: TaskData, seed: int) -> dict[str, dict[str, dict]]:
    """Accuracy of every recipe on every set, for one distillation seed: {set: {recipe: summary}}."""
    n_inits, finetune_inits = job.bench.n_inits, job.bench.transfer.finetune_inits
    studied = studied_set(job, data, seed)
    embeddings = distilled(data, ipc=job.bench.ipc, outer_steps=job.bench.outer_steps, seed=seed, projection="none")
    chosen = select_coreset("random", data.train_features, data.train_labels, job.bench.ipc, seed).tolist()
    random_texts = [data.task.train["text"][i] for i in chosen]
    hard = F.one_hot(data.train_labels[chosen], data.task.num_classes).float()
    sets = {
        "decoded text": (training_form(data, studied, "text"), studied),
        "random real": (text_form(data, random_texts, hard), studied),
        "continuous embeddings": (training_form(data, embeddings, "embedding"), embeddings),
    }
    recipe = data.job.eval.finetune.recipe
    recipes = {
        RECIPES[0]: lambda train, source: learned_accuracy(data, train, source.inner, n_inits),
        RECIPES[1]: lambda train, source: head_to_convergence(data, train, n_inits, data.job.eval.seed),
        RECIPES[2]: lambda train, source: finetune_protocol(
            data.encoder, train, data.test, dataclasses.replace(recipe, params="last_n_layers", n_layers=1),
            n_inits=finetune_inits, seed=data.job.eval.seed),
        RECIPES[3]: lambda train, source: finetune_protocol(
            data.encoder, train, data.test, recipe, n_inits=finetune_inits, seed=data.job.eval.seed),
    }
    # What every cell of this seed depends on besides its set and recipe.
    key = {"experiment": "transfer", "studied": studied.meta["config"]["distill"], "n_inits": n_inits,
           "finetune_inits": finetune_inits, "finetune_recipe": to_jsonable(recipe)}
    results: dict[str, dict[str, dict]] = {name: {} for name in sets}
    for set_name, (train, source) in sets.items():
        for recipe_name, train_with in recipes.items():
            results[set_name][recipe_name] = cell(data, {**key, "set": set_name, "recipe": recipe_name},
                                                  lambda: train_with(train, source))
            log.info("%s seed %d: %s with %s: %s", data.name, seed, set_name, recipe_name, points(results[set_name][recipe_name]))

    test_texts, test_labels = data.task.test["text"], np.asarray(data.task.test["label"])
    results["decoded text"][BAG_OF_WORDS] = cell(data, {**key, "set": "decoded text", "recipe": BAG_OF_WORDS}, lambda: summarize_values(
        [bag_of_words_accuracy(studied.texts, studied.soft_labels, test_texts, test_labels)]))

    def random_bag_of_words() -> dict:
        # One random subset per fresh model: a bag-of-words fit is deterministic, so its spread is the subsets'.
        draws = [select_coreset("random", data.train_features, data.train_labels, job.bench.ipc, seed * 1000 + draw).tolist()
                 for draw in range(n_inits)]
        return summarize_values([
            bag_of_words_accuracy([data.task.train["text"][i] for i in draw],
                                  F.one_hot(data.train_labels[draw], data.task.num_classes).float(), test_texts, test_labels)
            for draw in draws
        ])

    results["random real"][BAG_OF_WORDS] = cell(data, {**key, "set": "random real", "recipe": BAG_OF_WORDS}, random_bag_of_words)
    return results


def run(job: BenchJob) -> dict:
    per_task: dict[str, dict] = {}
    jobs = [(entry, seed) for entry in job.bench.tasks for seed in job.bench.seeds]
    runs: dict[str, list[dict]] = {}
    for entry, seed in tqdm(jobs, desc="transfer: (task, seed)"):
        data = task_data(job, entry)
        runs.setdefault(data.name, []).append(transfer_runs(job, data, seed))
    for task, task_runs in runs.items():
        per_task[task] = {
            "runs": task_runs,
            "summary": {set_name: {recipe: pooled([r[set_name][recipe] for r in task_runs]) for recipe in task_runs[0][set_name]}
                        for set_name in task_runs[0]},
        }
    return {"tasks": per_task}

