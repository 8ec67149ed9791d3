"""The super-dataset, every task's distilled set merged and re-distilled jointly: its start, its real data, its layouts,
and the cached, resumable set a sequence makes once."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from condense.distill import checkpoint
from condense.jobs import super_dataset
from condense.artifact.distilled_set import DistilledSet
from condense.cache import cache_dir
from condense.config.parsing import compose, task_config
from condense.continual.data import LabelLayout
from condense.models.features import text_features, tokenize
from condense.data.sampling import training_rows
from condense.jobs.super_dataset import joint_real_data, joint_start
from condense.artifact.merge import merge_distilled
from condense.jobs.distill_task import load_task_config
from condense.jobs.sequence import _super_dataset_examples, run_sequence
from test_merge import make  # tests/ is on sys.path (rootdir conftest)


def test_joint_start_is_a_plain_set_over_every_class_whose_labels_name_their_task():
    a, b = make("a", ["neg", "pos"], k=2, length=5, seed=1), make("b", ["x", "y", "z"], k=1, length=7, seed=2)
    start, merged = joint_start([a, b]), merge_distilled([a, b], label_space="class")
    assert start.task_ids is None and start.meta["label_names"] == ["a:neg", "a:pos", "b:x", "b:y", "b:z"]
    assert start.labels.tolist() == [0, 0, 1, 1, 2, 3, 4]
    assert LabelLayout("class", [2, 3]).task_of(start.labels).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert start.meta["merged_from"] == [{"name": "a", "label_names": ["neg", "pos"], "label_offset": 0},
                                         {"name": "b", "label_names": ["x", "y", "z"], "label_offset": 2}]
    assert start.embeddings.equal(merged.embeddings) and start.token_ids.equal(merged.token_ids)
    # Mass on the other task's classes: refused in a merged set, what re-distillation is free to learn here.
    spread = torch.full((7, 5), 0.2)
    assert dataclasses.replace(start, soft_labels=spread).soft_labels.equal(spread)
    with pytest.raises(ValueError):
        dataclasses.replace(merged, soft_labels=spread)


@pytest.fixture
def two_tasks(tiny_task_dir, tiny_sentiment_dir):
    cfgs = [task_config({"name": "topics", "path": str(tiny_task_dir)}), task_config({"name": "mood", "path": str(tiny_sentiment_dir)})]
    return [load_task_config(cfg) for cfg in cfgs], cfgs


def test_joint_real_data_is_every_tasks_training_sample_in_the_joint_label_space(tiny_bert, two_tasks):
    tasks, cfgs = two_tasks
    real = joint_real_data(tiny_bert, tasks, cfgs, rows_per_task=6, trains_encoder=True)
    # 6 stratified rows of each: 2 per class of the 3-class task, then 3 per class of the 2-class one, offset by 3.
    assert torch.bincount(real.labels).tolist() == [2, 2, 2, 3, 3]
    assert set(real.labels[:6].tolist()) == {0, 1, 2} and set(real.labels[6:].tolist()) == {3, 4}
    ids, mask = real.tokens["input_ids"], real.tokens["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 12
    for part, (task, cfg) in enumerate(zip(tasks, cfgs)):
        texts = [task.train["text"][i] for i in training_rows(task.train["label"], 6).tolist()]
        alone = tokenize(tiny_bert, texts, cfg.max_length)
        width = alone["input_ids"].shape[1]
        rows = slice(6 * part, 6 * part + 6)
        assert ids[rows, :width].equal(alone["input_ids"]) and mask[rows, :width].equal(alone["attention_mask"])
        assert not mask[rows, width:].any()  # padded to the longer task's width with masked columns
    frozen = joint_real_data(tiny_bert, tasks, cfgs, rows_per_task=6, trains_encoder=False)
    assert frozen.tokens is None and frozen.labels.equal(real.labels)
    texts = [tasks[1].train["text"][i] for i in training_rows(tasks[1].train["label"], 6).tolist()]
    torch.testing.assert_close(frozen.features[6:], text_features(tiny_bert, texts, cfgs[1].max_length))


def test_the_joint_set_keeps_its_soft_labels_with_one_head_and_each_tasks_share_with_a_head_per_task(tiny_bert):
    a = make("a", ["neg", "pos"], k=1, length=4, dim=tiny_bert.hidden_size, seed=1)
    b = make("b", ["x", "y", "z"], k=1, length=4, dim=tiny_bert.hidden_size, seed=2)
    soft = torch.tensor([[0.6, 0.2, 0.1, 0.05, 0.05], [0.1, 0.5, 0.1, 0.2, 0.1],
                         [0.1, 0.1, 0.4, 0.2, 0.2], [0.0, 0.2, 0.2, 0.4, 0.2], [0.1, 0.1, 0.2, 0.2, 0.4]])
    joint = dataclasses.replace(joint_start([a, b]), soft_labels=soft)
    one_head = _super_dataset_examples(tiny_bert, joint, 1, LabelLayout("class", [2, 3]))
    assert one_head.targets.equal(soft) and one_head.task_ids.tolist() == [0, 0, 1, 1, 1]
    per_task = _super_dataset_examples(tiny_bert, joint, 1, LabelLayout("task", [2, 3]))
    torch.testing.assert_close(per_task.targets, torch.tensor(
        [[0.75, 0.25, 0.0], [1 / 6, 5 / 6, 0.0], [0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]]))
    assert per_task.hidden_states.equal(one_head.hidden_states) and per_task.hidden_states.shape[:2] == (5, 4)


@pytest.fixture
def joint_config(tiny_sequence_overrides):
    def config(out, *overrides):
        return compose("run", [*tiny_sequence_overrides(out, seeds="[0]"), "continual.strategies=[super_dataset]",
                               "continual.scenarios=[task,class]",
                               "continual.super_dataset.outer_steps=3", "checkpoint_seconds=1e-6", *overrides])

    return config


def _set_folders(pattern: str) -> list:
    return sorted(f for f in (cache_dir() / "distilled").glob(pattern) if f.is_dir())  # not the lock files beside


def _joint_folder():
    folders = _set_folders("joint-topics_then_mood-*")
    assert len(folders) == 1, folders
    return folders[0]


def test_a_sequence_makes_its_super_dataset_once_and_a_stopped_re_distillation_resumes(joint_config, tmp_path, monkeypatch):
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path / "uninterrupted"))
    run_sequence(joint_config(tmp_path / "a"))
    uninterrupted = DistilledSet.load(_joint_folder())

    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path / "stopped"))
    save = checkpoint.save

    def save_then_stop(path, state, identity):
        save(path, state, identity)
        if "joint-" in str(path):
            raise KeyboardInterrupt("stopped after the joint set's first checkpoint")

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_sequence(joint_config(tmp_path / "b"))
    folder = _joint_folder()
    assert (folder / checkpoint.FILE).exists() and not (folder / "meta.json").exists()
    monkeypatch.setattr(checkpoint, "save", save)
    resumed_results = run_sequence(joint_config(tmp_path / "b"))
    resumed = DistilledSet.load(folder)
    assert not (folder / checkpoint.FILE).exists()
    for name in ("embeddings", "soft_labels", "inner_lrs", "labels", "attention_mask"):
        assert getattr(resumed, name).equal(getattr(uninterrupted, name)), name

    assert resumed.progress.outer_step == 3 and resumed.inner_lrs.shape == (3, 2)  # distill.inner_steps, head/encoder
    assert resumed.num_classes == 5 and resumed.task_ids is None
    blocks = LabelLayout("class", [3, 2]).task_of(resumed.labels)
    outside = torch.where(blocks[:, None] == 0, resumed.soft_labels[:, 3:].sum(1, keepdim=True),
                          resumed.soft_labels[:, :3].sum(1, keepdim=True))
    assert (outside > 0).all()  # every row carries some belief about the other task's classes
    start = joint_start([DistilledSet.load(f) for f in _set_folders("*-embedding-*")][::-1])  # topics, then mood
    assert not resumed.embeddings.equal(start.embeddings)  # the merged inputs moved
    runs = resumed_results["runs"]
    assert [(r["scenario"], r["strategy"], len(r["accuracy_matrix"])) for r in runs] == [
        ("task", "super_dataset", 1), ("class", "super_dataset", 1)]
    # One row per run and no sequential strategy: curves, but no accuracy matrices to draw (nor to link).
    assert (tmp_path / "b" / "forgetting_curves.png").exists() and not (tmp_path / "b" / "accuracy_matrices.png").exists()

    # Made once: a later job reads it back, for this sequence, model, distill config and training sample only.
    distill = super_dataset.distill
    monkeypatch.setattr(super_dataset, "distill", lambda *args, **kwargs: pytest.fail("re-distilled a cached set"))
    run_sequence(joint_config(tmp_path / "c"))
    monkeypatch.setattr(super_dataset, "distill", distill)
    run_sequence(joint_config(tmp_path / "d", "continual.train_examples_per_task=10"))
    assert len(_set_folders("joint-topics_then_mood-*")) == 2
