"""The full-data reference: one cached run per seed, exact accuracies on any test subsample; the recipe's schedule
and length-grouped batches."""

import dataclasses

import pytest
import torch

import condense.eval.reference
from condense.config.parsing import task_config
from condense.eval.protocols import grouped_batches, lr_factor
from condense.jobs.distill_task import load_task_config
from condense.eval.reference import entire_dataset_reference, subsample_accuracy, summarize_reference
from condense.config.schema import FinetuneRecipe
from condense.config.bench import SeedTableBench


def test_entire_runs_are_cached_per_seed_and_give_exact_subsample_accuracies(tiny_bert, tiny_task_dir, monkeypatch):
    config = task_config({"name": "tiny", "path": str(tiny_task_dir)}, "test")
    task = load_task_config(config)
    recipe = dataclasses.replace(SeedTableBench().recipe, min_steps=2)
    runs = entire_dataset_reference(tiny_bert, config, task, recipe, [0, 1])
    assert [run["seed"] for run in runs] == [0, 1]
    for run in runs:
        assert len(run["correct"]) == run["test_examples"] == 12 and run["train_examples"] == 24
        assert run["accuracy"] == run["correct"].count("1") / 12
    keep = torch.tensor([0, 3, 5])
    assert subsample_accuracy(runs[0], keep) == sum(runs[0]["correct"][i] == "1" for i in (0, 3, 5)) / 3
    summary = summarize_reference(runs, keep)
    assert summary["subsample_examples"] == 3 and summary["whole_test"]["n"] == 2

    def no_training(*args, **kwargs):
        raise AssertionError("a cached seed is not trained again")

    monkeypatch.setattr(condense.eval.reference, "finetune_entire", no_training)
    assert entire_dataset_reference(tiny_bert, config, task, recipe, [0, 1]) == runs
    with pytest.raises(AssertionError, match="not trained again"):
        entire_dataset_reference(tiny_bert, config, task, recipe, [2])


def test_linear_schedule_warms_up_then_decays_to_zero():
    factor = lr_factor(FinetuneRecipe(schedule="linear", warmup_ratio=0.1), steps=100)
    values = [factor(step) for step in range(100)]
    assert values[0] == pytest.approx(1 / 11) and values[9] == pytest.approx(10 / 11)
    assert values[10] == pytest.approx(1.0) and values[-1] == pytest.approx(1 / 90) and values == sorted(values[:10]) + values[10:]
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert lr_factor(FinetuneRecipe(schedule="constant"), steps=100)(57) == 1.0 and lr_factor(FinetuneRecipe(), steps=100)(100) == 0.0


def test_grouped_batches_cover_each_epoch_once_with_similar_lengths():
    lengths = torch.randint(1, 200, (1000,), generator=torch.Generator().manual_seed(0))
    batches = grouped_batches(lengths, 10, torch.Generator().manual_seed(1), chunk=5)
    epoch = [next(batches) for _ in range(100)]
    assert sorted(torch.cat(epoch).tolist()) == list(range(1000))
    spread = torch.stack([lengths[b].max() - lengths[b].min() for b in epoch]).float().mean()
    random_spread = torch.stack([lengths[b].max() - lengths[b].min() for b in torch.randperm(1000).split(10)]).float().mean()
    assert spread < random_spread / 3, "within-batch length spread drops with grouping"
