import json
import re

import pytest
import torch
from datasets import ClassLabel, Value

import condense
from condense.artifact.distilled_set import MERGED_FORMAT_VERSION, ArtifactError, DistilledSet
from condense.cache import to_jsonable
from condense.artifact.label_space import label_blocks, shared_settings
from condense.artifact.merge import MergeError, merge_distilled, split_merged

TENSORS = ("embeddings", "attention_mask", "labels", "soft_labels", "inner_lrs", "token_ids", "task_ids")


def make(task, names, k, length, dim=8, seed=0, model="tiny", tokenizer="tiny-tok", tokens=True, texts=True, lr_shape=(3,)):
    g = torch.Generator().manual_seed(seed)
    c = len(names)
    n = c * k
    mask = torch.ones(n, length, dtype=torch.int64)
    mask[:, -1] = 0  # the originals have their own padding too
    return DistilledSet(
        embeddings=torch.randn(n, length, dim, generator=g),
        attention_mask=mask,
        labels=torch.arange(c).repeat_interleave(k),
        soft_labels=torch.softmax(torch.randn(n, c, generator=g), dim=1),
        inner_lrs=torch.rand(*lr_shape, generator=g),
        meta={
            "task": task,
            "label_names": list(names),
            "model": model,
            "tokenizer": tokenizer,
            "hidden_size": dim,
            "pooling": "mean",
            "max_length": length,
            "inner": {"steps": lr_shape[0]},
            "config": {"seed": seed, "ipc": k},
        },
        token_ids=torch.randint(1, 100, (n, length), generator=g) if tokens else None,
        texts=[f"{task} text {i}" for i in range(n)] if texts else None,
        metrics={"acc": 0.5 + seed / 10},
    )


@pytest.fixture
def abc():
    a = make("a", ["neg", "pos"], k=2, length=5, seed=1)
    b = make("b", ["x", "y", "z"], k=1, length=7, seed=2)
    c = make("c", ["no", "yes"], k=2, length=4, seed=3)
    return a, b, c


def assert_same(x: DistilledSet, y: DistilledSet, jsonable_meta=False):
    for name in TENSORS:
        u, v = getattr(x, name), getattr(y, name)
        if u is None or v is None:
            assert u is None and v is None, name
            continue
        assert u.dtype == v.dtype and u.shape == v.shape, name
        assert torch.equal(u, v), name
    assert x.texts == y.texts
    assert x.metrics == y.metrics
    if jsonable_meta:
        strip = lambda m: {k: v for k, v in to_jsonable(m).items() if k not in ("format_version", "versions")}
        assert strip(x.meta) == strip(y.meta)
    else:
        assert x.meta == y.meta


def test_task_space_layout(abc):
    a, b, _ = abc
    m = merge_distilled([a, b])
    assert m.is_merged and m.meta["label_space"] == "task" and m.meta["form"] == "embedding"
    assert m.task_ids.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert m.labels.tolist() == [0, 0, 1, 1, 0, 1, 2]  # local ids
    assert m.joint_labels.tolist() == [0, 0, 1, 1, 2, 3, 4]
    assert torch.equal(m.local_labels, m.labels)
    assert m.soft_labels.shape == (7, 3)  # widest task
    assert torch.equal(m.soft_labels[:4, :2], a.soft_labels)
    assert (m.soft_labels[:4, 2] == 0).all()
    assert torch.equal(m.soft_labels[4:], b.soft_labels)
    assert m.label_names == ["a:neg", "a:pos", "b:x", "b:y", "b:z"]
    assert m.num_classes == 5 and m.class_counts == [2, 2, 1, 1, 1]
    assert m.task_names == ["a", "b"]
    assert [t["label_offset"] for t in m.meta["tasks"]] == [0, 2]
    assert [t["num_examples"] for t in m.meta["tasks"]] == [4, 3]
    assert [t["seq_len"] for t in m.meta["tasks"]] == [5, 7]
    assert m.meta["tasks"][1]["label_names"] == ["x", "y", "z"]
    assert m.meta["tasks"][0]["meta"] == a.meta and m.meta["tasks"][0]["metrics"] == a.metrics
    assert m.meta["task"] == "a+b"
    assert (m.meta["model"], m.meta["tokenizer"], m.meta["hidden_size"], m.meta["pooling"]) == ("tiny", "tiny-tok", 8, "mean")
    assert m.meta["max_length"] == 7
    assert m.metrics == {}
    assert torch.equal(m.inner_lrs, (a.inner_lrs + b.inner_lrs) / 2)
    with pytest.raises(ValueError, match="unbalanced"):
        _ = m.examples_per_class  # k=2 for a, k=1 for b


def test_class_space_layout(abc):
    a, b, _ = abc
    m = merge_distilled([a, b], label_space="class")
    assert m.labels.tolist() == [0, 0, 1, 1, 2, 3, 4]
    assert torch.equal(m.joint_labels, m.labels)
    assert m.local_labels.tolist() == [0, 0, 1, 1, 0, 1, 2]
    assert m.soft_labels.shape == (7, 5)
    assert torch.equal(m.soft_labels[:4, :2], a.soft_labels) and (m.soft_labels[:4, 2:] == 0).all()
    assert torch.equal(m.soft_labels[4:, 2:], b.soft_labels) and (m.soft_labels[4:, :2] == 0).all()
    assert m.label_names == ["a:neg", "a:pos", "b:x", "b:y", "b:z"]
    assert m.class_counts == [2, 2, 1, 1, 1]


def test_sequence_padding_and_masks(abc):
    a, b, _ = abc
    m = merge_distilled([a, b])
    assert m.embeddings.shape == (7, 7, 8) and m.attention_mask.shape == (7, 7) and m.token_ids.shape == (7, 7)
    assert torch.equal(m.embeddings[:4, :5], a.embeddings) and (m.embeddings[:4, 5:] == 0).all()
    assert torch.equal(m.attention_mask[:4, :5], a.attention_mask) and (m.attention_mask[:4, 5:] == 0).all()
    assert torch.equal(m.token_ids[:4, :5], a.token_ids) and (m.token_ids[:4, 5:] == 0).all()
    assert torch.equal(m.embeddings[4:], b.embeddings) and torch.equal(m.attention_mask[4:], b.attention_mask)
    assert m.attention_mask.sum(1).tolist() == [4] * 4 + [6] * 3
    assert m.texts == a.texts + b.texts


def test_optional_fields_kept_only_when_all_have_them(abc):
    a, b, _ = abc
    bare = make("d", ["p", "q"], k=1, length=5, tokens=False, texts=False)
    m = merge_distilled([a, bare])
    assert m.token_ids is None and m.texts is None
    assert [t["has_token_ids"] for t in m.meta["tasks"]] == [True, False]
    parts = split_merged(m)
    assert parts[0].token_ids is None and parts[0].texts is None


def test_inner_lrs_of_different_shapes(abc):
    a, _, _ = abc
    d = make("d", ["p", "q"], k=1, length=5, lr_shape=(4, 2))
    m = merge_distilled([a, d])
    assert m.inner_lrs.shape == (0,) and m.inner_lrs.dtype == torch.float32
    assert torch.equal(split_merged(m)[1].inner_lrs, d.inner_lrs)


def test_empty():
    with pytest.raises(MergeError, match="at least one distilled set"):
        merge_distilled([])


def test_unknown_options(abc):
    a, b, _ = abc
    with pytest.raises(MergeError, match="unknown label_space 'joint'"):
        merge_distilled([a, b], label_space="joint")
    with pytest.raises(MergeError, match="unknown form 'tokens'"):
        merge_distilled([a, b], form="tokens")
    with pytest.raises(MergeError, match="set 1 is a str"):
        merge_distilled([a, "b"])
    assert issubclass(MergeError, ValueError)


def test_duplicate_task_names(abc):
    a, b, _ = abc
    again = make("a", ["neg", "pos"], k=1, length=5, seed=9)
    with pytest.raises(MergeError, match=r"duplicate task name 'a': set 0 \(task 'a'\) and set 2 \(task 'a'\)"):
        merge_distilled([a, b, again])
    with pytest.raises(MergeError, match=r"set 0 \(task 'a', inside a merged set\) and set 1"):
        merge_distilled([merge_distilled([a, b]), again])


@pytest.mark.parametrize(
    "change, key, values",
    [
        (dict(model="other"), "model", "'tiny' but .* has model='other'"),
        (dict(tokenizer="other-tok"), "tokenizer", "'tiny-tok' but .* has tokenizer='other-tok'"),
        (dict(dim=16), "hidden_size", "8 but .* has hidden_size=16"),
    ],
)
def test_embedding_form_incompatible(abc, change, key, values):
    a, b, _ = abc
    other = make("c", ["no", "yes"], k=1, length=5, **change)
    with pytest.raises(MergeError) as info:
        merge_distilled([a, b, other])
    message = str(info.value)
    assert f"different {key}s" in message
    assert "set 0 (task 'a')" in message and "set 2 (task 'c')" in message
    assert re.search(values, message)
    assert "form='text'" in message


def test_embedding_form_rejects_text_only_sets(abc):
    a, b, c = abc
    text_merged = merge_distilled([a, b], form="text")
    with pytest.raises(MergeError, match=r"set 0 \(task 'a', inside a merged set\) has no embeddings.*form='text'"):
        merge_distilled([text_merged, c])


def test_text_form_across_models(abc):
    a, _, _ = abc
    other = make("c", ["no", "yes", "maybe"], k=1, length=9, dim=16, model="big", tokenizer="big-tok")
    m = merge_distilled([a, other], label_space="class", form="text")
    assert m.meta["form"] == "text" and not m.has_embeddings
    assert m.embeddings.shape == (7, 0, 0) and m.embeddings.dtype == torch.float32
    assert m.attention_mask.shape == (7, 0) and m.attention_mask.dtype == torch.int64
    assert m.token_ids is None
    assert m.texts == a.texts + other.texts
    assert m.meta["model"] is None and m.meta["tokenizer"] is None and m.meta["hidden_size"] is None
    assert m.meta["pooling"] == "mean" and m.meta["max_length"] == 9
    assert [t["meta"]["model"] for t in m.meta["tasks"]] == ["tiny", "big"]
    assert [t["seq_len"] for t in m.meta["tasks"]] == [5, 9]
    assert m.labels.tolist() == [0, 0, 1, 1, 2, 3, 4]

    parts = split_merged(m)
    for part, original in zip(parts, (a, other)):
        assert part.embeddings.shape == (original.num_examples, 0, 0) and not part.has_embeddings
        assert part.token_ids is None
        assert part.texts == original.texts and part.meta == original.meta
        assert torch.equal(part.labels, original.labels) and torch.equal(part.soft_labels, original.soft_labels)
        assert torch.equal(part.inner_lrs, original.inner_lrs)


def test_text_form_needs_texts(abc):
    a, b, _ = abc
    silent = make("d", ["p", "q"], k=1, length=5, texts=False)
    with pytest.raises(MergeError, match=r"set 2 \(task 'd'\) has no texts"):
        merge_distilled([a, b, silent], form="text")


def test_order_stable(abc):
    a, b, c = abc
    m = merge_distilled([c, a, b])
    assert m.task_names == ["c", "a", "b"]
    assert m.task_ids.tolist() == [0] * 4 + [1] * 4 + [2] * 3
    assert m.texts == c.texts + a.texts + b.texts
    assert torch.equal(m.embeddings[4:8, :5], a.embeddings)
    assert [t["label_offset"] for t in m.meta["tasks"]] == [0, 2, 4]
    assert m.label_names[:2] == ["c:no", "c:yes"]


@pytest.mark.parametrize("space", ["task", "class"])
@pytest.mark.parametrize("inner", ["task", "class"])
def test_associative(abc, space, inner):
    a, b, c = abc
    flat = merge_distilled([a, b, c], label_space=space)
    left = merge_distilled([merge_distilled([a, b], label_space=inner), c], label_space=space)
    right = merge_distilled([a, merge_distilled([b, c], label_space=inner)], label_space=space)
    nested = merge_distilled([merge_distilled([a], label_space=inner), merge_distilled([b, c])], label_space=space)
    for other in (left, right, nested):
        assert_same(other, flat)


def test_associative_text_form_and_dropped_token_ids(abc):
    a, b, _ = abc
    c = make("c", ["no", "yes"], k=2, length=4, seed=3, tokens=False, model="big")
    flat = merge_distilled([a, b, c], form="text")
    assert_same(merge_distilled([merge_distilled([a, b], form="text"), c], form="text"), flat)
    assert_same(merge_distilled([merge_distilled([a, b]), c], form="text"), flat)
    assert [t["seq_len"] for t in flat.meta["tasks"]] == [5, 7, 4]

    c.meta["model"] = "tiny"
    flat = merge_distilled([a, b, c])
    right = merge_distilled([a, merge_distilled([b, c])])  # the inner merge drops b's token ids
    assert_same(right, flat)
    assert [t["has_token_ids"] for t in right.meta["tasks"]] == [True, True, False]


@pytest.mark.parametrize("space", ["task", "class"])
def test_split_round_trip(abc, space):
    originals = abc
    parts = split_merged(merge_distilled(list(originals), label_space=space))
    assert len(parts) == 3
    for part, original in zip(parts, originals):
        assert not part.is_merged
        assert_same(part, original)


def test_split_plain_set(abc):
    a, _, _ = abc
    assert split_merged(a) == [a]
    assert not a.is_merged and a.task_names == ["a"] and torch.equal(a.joint_labels, a.labels)


@pytest.mark.parametrize("space, form", [("task", "embedding"), ("class", "embedding"), ("task", "text"), ("class", "text")])
def test_save_load_round_trip(tmp_path, abc, space, form):
    m = merge_distilled(list(abc), label_space=space, form=form)
    loaded = DistilledSet.load(m.save(tmp_path))
    assert loaded.meta["format_version"] == MERGED_FORMAT_VERSION == 2
    assert_same(loaded, m, jsonable_meta=True)
    for part, original in zip(split_merged(loaded), abc):
        if form == "embedding":
            assert_same(part, original, jsonable_meta=True)
        else:
            assert part.texts == original.texts and torch.equal(part.soft_labels, original.soft_labels)
    # Reloaded merged sets merge like the originals.
    assert_same(merge_distilled([loaded], label_space=space, form=form), loaded, jsonable_meta=True)

    rows = [json.loads(line) for line in (tmp_path / "text.jsonl").read_text("utf-8").splitlines()]
    assert rows[4]["task"] == "b" and rows[4]["label_name"] == "b:x"
    assert rows[4]["label"] == (0 if space == "task" else 2)


def test_format_versions(tmp_path, abc):
    a, b, _ = abc
    a.save(tmp_path / "plain")
    meta = json.loads((tmp_path / "plain" / "meta.json").read_text())
    assert meta["format_version"] == 1
    merge_distilled([a, b]).save(tmp_path / "merged")

    meta["format_version"] = 2
    (tmp_path / "plain" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="marks a merged set but the file has no task_ids"):
        DistilledSet.load(tmp_path / "plain")
    path = tmp_path / "merged" / "meta.json"
    merged_meta = json.loads(path.read_text())
    merged_meta["format_version"] = 1
    path.write_text(json.dumps(merged_meta))
    with pytest.raises(ArtifactError, match="is for plain sets but the file has task_ids"):
        DistilledSet.load(tmp_path / "merged")


def test_to_dataset_columns(abc):
    a, b, _ = abc
    task_hf = merge_distilled([a, b]).to_dataset()
    assert set(task_hf.column_names) == {
        "text", "label", "soft_label", "attention_mask", "inputs_embeds", "token_ids", "task_id"
    }
    assert task_hf.features["label"] == Value("int64") and task_hf.features["task_id"] == Value("int64")
    assert task_hf["label"] == [0, 0, 1, 1, 0, 1, 2] and task_hf["task_id"] == [0, 0, 0, 0, 1, 1, 1]

    class_hf = merge_distilled([a, b], label_space="class", form="text").to_dataset()
    assert isinstance(class_hf.features["label"], ClassLabel)
    assert class_hf.features["label"].names == ["a:neg", "a:pos", "b:x", "b:y", "b:z"]
    assert class_hf["label"] == [0, 0, 1, 1, 2, 3, 4] and "token_ids" not in class_hf.column_names
    assert class_hf["text"] == a.texts + b.texts

    assert "task_id" not in a.to_dataset().column_names


def _fields(ds):
    return {f: getattr(ds, f) for f in ds.__dataclass_fields__}


@pytest.mark.parametrize(
    "space, change, message",
    [
        ("task", lambda f: f.update(labels=torch.tensor([0, 0, 1, 1, 0, 1, 3])), r"row 6: label 3 is not a class of its task 1 \('b'\)"),
        ("class", lambda f: f.update(labels=torch.tensor([0, 0, 1, 2, 2, 3, 4])), r"row 3: label 2 .*task 0 \('a'\), expected \[0, 2\)"),
        ("task", lambda f: f.update(task_ids=torch.tensor([0, 0, 0, 0, 1, 1, 2])), r"task_ids must be in \[0, 2\)"),
        ("task", lambda f: f.update(task_ids=torch.zeros(6, dtype=torch.int64)), "task_ids has 6 entries"),
        ("task", lambda f: f.update(soft_labels=torch.full((7, 5), 0.2)), r"soft_labels shape .*largest task class count"),
        ("class", lambda f: f.update(soft_labels=torch.full((7, 3), 1 / 3)), r"soft_labels shape .*len\(label_names\)"),
        ("task", lambda f: f["meta"].update(label_space="joint"), "label_space"),
        ("task", lambda f: f["meta"].update(tasks=[]), "non-empty list"),
        ("task", lambda f: f["meta"]["tasks"][1].update(label_offset=3), r"\('b'\) has label_offset 3, expected 2"),
    ],
)
def test_merged_validation(abc, space, change, message):
    a, b, _ = abc
    fields = _fields(merge_distilled([a, b], label_space=space))
    change(fields)
    with pytest.raises(ValueError, match=message):
        DistilledSet(**fields)


@pytest.mark.parametrize("space", ["task", "class"])
def test_soft_mass_outside_task_block(abc, space):
    a, b, _ = abc
    fields = _fields(merge_distilled([a, b], label_space=space))
    soft = fields["soft_labels"].clone()
    soft[1] = 0
    soft[1, 2] = 1.0  # a's row 1 on a column a does not own
    fields["soft_labels"] = soft
    with pytest.raises(ValueError, match=r"row 1: soft label puts mass 1\.0+ outside the classes of its task 0 \('a'\)"):
        DistilledSet(**fields)


def test_lazy_exports():
    assert condense.merge_distilled is merge_distilled
    assert condense.split_merged is split_merged


@pytest.mark.parametrize(
    "space, low, high", [("task", [0] * 7, [2] * 4 + [3] * 3), ("class", [0] * 4 + [2] * 3, [2] * 4 + [5] * 3)]
)
def test_label_blocks(abc, space, low, high):
    a, b, _ = abc
    m = merge_distilled([a, b], label_space=space)
    blocks = label_blocks(m.meta, m.task_ids)
    assert [block.tolist() for block in blocks] == [low, high]


def test_merged_inner_protocol_is_the_one_its_tasks_share(abc):
    a, b, _ = abc
    for part in (a, b):
        part.meta["inner"] = {"params": "last_n_layers", "n_layers": 2, "optimizer": "adam", "steps": 3}
    m = merge_distilled([a, b])
    assert "inner" not in m.meta  # a view: the merged meta on disk is as before
    assert (m.inner.params, m.inner.n_layers, m.inner.optimizer, m.inner.steps) == ("last_n_layers", 2, "adam", 3)
    assert torch.equal(m.inner.lrs, m.inner_lrs)
    assert (m.progress.outer_step, m.progress.seconds) == (None, None)
    b.meta["inner"]["optimizer"] = "sgd"
    with pytest.raises(ValueError, match=r"different inner protocols, 'a' for .*'adam'.* and 'b' for .*'sgd'"):
        _ = merge_distilled([a, b]).inner
    assert shared_settings({"tasks": [{"name": "x", "meta": {}}]}, ["params"]) == {}
