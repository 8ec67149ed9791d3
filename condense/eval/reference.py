"""The full-data reference: the standard fine-tuning recipe on every training row a task loads.

"Fine-tuned on entire dataset" is what every distilled set is measured against, so it is computed honestly (all
training rows, the whole test split) and once: each seed's result is cached under ``$CONDENSE_CACHE/references``,
keyed by model, task config, recipe and seed, so an interrupted run keeps the seeds it finished. Each result keeps
which test examples it got right, so its accuracy on any fixed test subsample (the one the distilled sets are
tested on) is exact, not re-estimated.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn.functional as F

import condense
from condense.artifact.distilled_set import TrainingSet
from condense.cache import atomic_write_json, cache_dir, cached, digest, read_json, to_jsonable
from condense.data.tasks import Task
from condense.eval.protocols import finetune
from condense.models.features import encode_tokens, tokenize
from condense.models.encoders import Encoder, linear_head
from condense.report.tables import summarize_values
from condense.config.schema import FinetuneRecipe, TaskConfig
from condense.config.device import clock, without_tf32

log = logging.getLogger(__name__)


def finetune_entire(encoder: Encoder, task: Task, max_length: int, recipe: FinetuneRecipe, seed: int) -> dict:
    """One fine-tuning run on all of ``task.train`` from the fresh head and data order of ``seed``, tested on the
    whole test split: ``{"accuracy", "correct" (a 0/1 string per test example), "seconds", "steps", ...}``."""
    tokens = tokenize(encoder, task.train["text"], max_length)
    labels = torch.tensor(task.train["label"])
    train = TrainingSet(tokens["attention_mask"], F.one_hot(labels, task.num_classes).float(), input_ids=tokens["input_ids"])
    started = clock(encoder.device)
    trained = finetune(encoder, train, recipe, torch.Generator().manual_seed(seed), desc=f"fine-tuning on all of {task.name}")
    seconds = clock(encoder.device) - started
    features = encode_tokens(encoder, tokenize(encoder, task.test["text"], max_length), params=trained, progress="testing")
    correct = (linear_head(features, trained).argmax(1).cpu() == torch.tensor(task.test["label"])).tolist()
    log.info("%s, all %d training rows, seed %d: %.2f%% in %.0f s", task.name, len(labels), seed, 100 * sum(correct) / len(correct), seconds)
    return {
        "accuracy": sum(correct) / len(correct),
        "correct": "".join("1" if c else "0" for c in correct),
        "seconds": seconds,
        "train_examples": len(labels),
        "test_examples": len(correct),
    }


def entire_dataset_reference(
    encoder: Encoder, task_config: TaskConfig, task: Task, recipe: FinetuneRecipe, seeds: list[int]
) -> list[dict]:
    """:func:`finetune_entire` for every seed, each computed once and cached (locked: parallel runs wait).

    Always in float32 (no TF32), test encodes too, whatever the job's ``precision``: the reference is computed once
    for all."""
    encoder = dataclasses.replace(encoder, precision="fp32")
    results = []
    for seed in seeds:
        key = {"kind": "finetune-entire", "model": encoder.name, "pooling": encoder.pooling, "dtype": str(encoder.dtype),
               "task": to_jsonable(task_config), "recipe": to_jsonable(recipe), "seed": seed, "version": condense.__version__}
        path = cache_dir() / "references" / f"entire-{task.name}-{digest(key)}.json"

        def compute(seed=seed):
            with without_tf32():
                return {**finetune_entire(encoder, task, task_config.max_length, recipe, seed), "seed": seed}

        results.append(cached(path, compute, read_json, atomic_write_json, lock=True))
    return results


def subsample_accuracy(run: dict, keep: torch.Tensor | None) -> float:
    """A reference run's accuracy on the test rows ``keep`` (all of them when None)."""
    correct = [c == "1" for c in run["correct"]]
    if keep is not None:
        correct = [correct[i] for i in keep.tolist()]
    return sum(correct) / len(correct)


def summarize_reference(runs: list[dict], keep: torch.Tensor | None = None) -> dict:
    """Mean ± std over seeds, on the whole test split and on the subsample ``keep``."""
    return {
        "whole_test": summarize_values([run["accuracy"] for run in runs]),
        "subsample": summarize_values([subsample_accuracy(run, keep) for run in runs]),
        "seeds": [run["seed"] for run in runs],
        "seconds": summarize_values([run["seconds"] for run in runs]),
        "train_examples": runs[0]["train_examples"],
        "test_examples": runs[0]["test_examples"],
        "subsample_examples": runs[0]["test_examples"] if keep is None else len(keep),
    }
