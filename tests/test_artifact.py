import json
import pickle
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import condense
from condense.artifact.distilled_set import FORMAT_VERSION, ArtifactError, DistilledSet, InnerProtocol, Progress, TrainingSet
from condense.cache import to_jsonable
from condense.artifact.merge import merge_distilled, split_merged

FILES = {"embeddings.safetensors", "meta.json", "text.jsonl", "metrics.json"}
LABEL_NAMES = ["negative", "positive", "neutral"]


def make_set(with_tokens=True, with_texts=True, n_per_class=2, length=5, dim=4, steps=3):
    g = torch.Generator().manual_seed(0)
    c = len(LABEL_NAMES)
    n = n_per_class * c
    labels = torch.arange(c).repeat_interleave(n_per_class)
    soft = torch.softmax(torch.randn(n, c, generator=g), dim=1)
    mask = torch.ones(n, length, dtype=torch.int64)
    mask[:, -1] = 0
    return DistilledSet(
        embeddings=torch.randn(n, length, dim, generator=g),
        attention_mask=mask,
        labels=labels,
        soft_labels=soft,
        inner_lrs=torch.rand(steps, generator=g),
        meta={
            "task": "toy",
            "label_names": LABEL_NAMES,
            "model": "tiny",
            "max_length": length,
            "inner": {"steps": steps, "lr_init": np.float32(0.01)},
            "config": {"seeds": (1, 2), "ratio": np.float64(0.5), "arr": np.arange(3)},
        },
        token_ids=torch.randint(0, 100, (n, length), generator=g) if with_tokens else None,
        texts=[f"example {i} ünïcode" for i in range(n)] if with_texts else None,
        metrics={"acc": 0.75, "per_seed": [0.7, 0.8]},
    )


def assert_bit_exact(a: torch.Tensor, b: torch.Tensor):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(a.view(torch.uint8) if a.is_floating_point() else a,
                       b.view(torch.uint8) if b.is_floating_point() else b)


def test_round_trip_bit_exact(tmp_path):
    ds = make_set()
    out = ds.save(tmp_path / "art")
    assert out == tmp_path / "art"
    assert {p.name for p in out.iterdir()} == FILES

    loaded = DistilledSet.load(out)
    for name in ("embeddings", "attention_mask", "labels", "soft_labels", "inner_lrs", "token_ids"):
        assert_bit_exact(getattr(ds, name), getattr(loaded, name))
    assert loaded.texts == ds.texts
    assert loaded.metrics == ds.metrics

    expected_meta = to_jsonable(ds.meta)
    assert {k: v for k, v in loaded.meta.items() if k not in ("format_version", "versions")} == expected_meta
    assert loaded.meta["format_version"] == FORMAT_VERSION
    versions = loaded.meta["versions"]
    assert versions["condense"] == condense.__version__
    assert versions["torch"] == torch.__version__
    assert versions["python"] == platform.python_version()
    assert versions["transformers"] == metadata.version("transformers")
    assert versions["datasets"] == metadata.version("datasets")
    assert loaded.num_examples == 6
    assert loaded.num_classes == 3
    assert loaded.label_names == LABEL_NAMES
    assert loaded.examples_per_class == 2


def test_round_trip_without_optional_fields(tmp_path):
    ds = make_set(with_tokens=False, with_texts=False)
    ds.metrics = {}
    loaded = DistilledSet.load(ds.save(tmp_path))
    assert loaded.token_ids is None
    assert loaded.texts is None
    assert loaded.metrics == {}
    assert "token_ids" not in load_file(str(tmp_path / "embeddings.safetensors"))


def test_text_jsonl_contents(tmp_path):
    ds = make_set()
    ds.save(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "text.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == ds.num_examples
    assert rows[2] == {
        "index": 2,
        "label": 1,
        "label_name": "positive",
        "soft_label": ds.soft_labels[2].tolist(),
        "text": ds.texts[2],
    }


def test_load_never_unpickles(tmp_path, monkeypatch):
    make_set().save(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    DistilledSet.load(tmp_path)


def test_meta_json_is_plain_json(tmp_path):
    from omegaconf import OmegaConf

    ds = make_set()
    ds.meta["config"] = OmegaConf.create({"a": {"b": [1, 2]}, "c": "${a.b}", "nan": float("nan")})
    ds.meta["tensor"] = torch.tensor([1.5, 2.5])
    ds.meta["path"] = tmp_path
    ds.save(tmp_path)
    text = (tmp_path / "meta.json").read_text()
    meta = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert meta["config"] == {"a": {"b": [1, 2]}, "c": [1, 2], "nan": None}
    assert meta["tensor"] == [1.5, 2.5]
    assert meta["path"] == str(tmp_path)


def test_to_jsonable_rejects_unknown_types():
    with pytest.raises(TypeError, match=r"object at \$\.x\.y"):
        to_jsonable({"x": {"y": object()}})


def test_missing_folder(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        DistilledSet.load(tmp_path / "nope")


@pytest.mark.parametrize("name", sorted(FILES))
def test_missing_file_named(tmp_path, name):
    make_set().save(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(ArtifactError, match=f"missing artefact file .*{name}"):
        DistilledSet.load(tmp_path)


@pytest.mark.parametrize("version", [3, None, "1"])
def test_unknown_format_version(tmp_path, version):
    make_set().save(tmp_path)
    meta_path = tmp_path / "meta.json"
    meta = json.loads(meta_path.read_text())
    if version is None:
        del meta["format_version"]
    else:
        meta["format_version"] = version
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=rf"meta\.json: unknown format_version {version!r}"):
        DistilledSet.load(tmp_path)


def _rewrite_tensors(path, **changes):
    file = path / "embeddings.safetensors"
    tensors = load_file(str(file))
    tensors.update(changes)
    save_file({k: v for k, v in tensors.items() if v is not None}, str(file))


def test_mismatched_n(tmp_path):
    make_set().save(tmp_path)
    _rewrite_tensors(tmp_path, labels=torch.zeros(4, dtype=torch.int64))
    # The constructor finds it; load names the file it came from.
    message = r"embeddings\.safetensors: invalid distilled set .*labels has 4 entries, embeddings has N=6"
    with pytest.raises(ArtifactError, match=message):
        DistilledSet.load(tmp_path)


def test_soft_label_columns_vs_label_names(tmp_path):
    make_set().save(tmp_path)
    meta_path = tmp_path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["label_names"] = ["a", "b"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(
        ArtifactError,
        match=r"embeddings\.safetensors: invalid distilled set \(read with meta\.json .*soft_labels shape \(6, 3\) "
        r"does not match \(N, len\(label_names\)\) = \(6, 2\)",
    ) as info:
        DistilledSet.load(tmp_path)
    assert isinstance(info.value.__cause__, ValueError) and not isinstance(info.value.__cause__, ArtifactError)


def test_missing_tensor(tmp_path):
    make_set().save(tmp_path)
    _rewrite_tensors(tmp_path, inner_lrs=None)
    with pytest.raises(ArtifactError, match=r"embeddings\.safetensors: missing tensor 'inner_lrs'"):
        DistilledSet.load(tmp_path)


def test_bad_dtype_on_disk(tmp_path):
    make_set().save(tmp_path)
    _rewrite_tensors(tmp_path, attention_mask=torch.ones(6, 5, dtype=torch.bool))
    with pytest.raises(ArtifactError, match=r"embeddings\.safetensors: .*attention_mask must have dtype"):
        DistilledSet.load(tmp_path)


def test_text_jsonl_count_mismatch(tmp_path):
    make_set().save(tmp_path)
    path = tmp_path / "text.jsonl"
    path.write_text("".join(path.read_text("utf-8").splitlines(keepends=True)[:-1]), "utf-8")
    with pytest.raises(ArtifactError, match=r"text\.jsonl: has 5 examples"):
        DistilledSet.load(tmp_path)


def test_corrupt_meta_json(tmp_path):
    make_set().save(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"meta\.json: cannot parse JSON"):
        DistilledSet.load(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(embeddings=torch.zeros(6, 5, 4, dtype=torch.float64)), "embeddings must have dtype"),
        (dict(embeddings=torch.zeros(6, 20)), "embeddings must be 3-D"),
        (dict(attention_mask=torch.ones(6, 4, dtype=torch.int64)), "attention_mask shape"),
        (dict(attention_mask=torch.ones(6, 5, dtype=torch.int32)), "attention_mask must have dtype"),
        (dict(labels=torch.zeros(5, dtype=torch.int64)), "labels has 5 entries"),
        (dict(labels=torch.full((6,), 3, dtype=torch.int64)), r"labels must be in \[0, 3\)"),
        (dict(soft_labels=torch.full((6, 3), 0.5)), "row 0 sums to 1.5"),
        (dict(soft_labels=torch.full((6, 2), 0.5)), "soft_labels shape"),
        (dict(inner_lrs=torch.zeros(2, 2, 2)), r"inner_lrs must be 1-D \(steps,\) or 2-D"),
        (dict(token_ids=torch.zeros(6, 4, dtype=torch.int64)), "token_ids shape"),
        (dict(texts=["a"] * 5), "texts has 5 entries"),
        (dict(meta={"task": "x"}), "label_names"),
    ],
)
def test_post_init_validation(change, message):
    ds = make_set()
    fields = {f: getattr(ds, f) for f in ds.__dataclass_fields__}
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        DistilledSet(**fields)


def test_soft_label_tolerance_accepts_small_error():
    ds = make_set()
    soft = ds.soft_labels.clone()
    soft[:, 0] += 5e-5
    ds.soft_labels = soft
    ds.__post_init__()


def test_to_dataset():
    from datasets import ClassLabel

    ds = make_set()
    hf = ds.to_dataset()
    assert len(hf) == ds.num_examples
    assert set(hf.column_names) == {
        "text", "label", "soft_label", "attention_mask", "inputs_embeds", "token_ids"
    }
    assert isinstance(hf.features["label"], ClassLabel)
    assert hf.features["label"].names == LABEL_NAMES
    assert hf["label"] == ds.labels.tolist()
    assert hf["text"] == ds.texts
    row = hf[3]
    assert len(row["inputs_embeds"]) == 5 and len(row["inputs_embeds"][0]) == 4
    assert row["attention_mask"] == ds.attention_mask[3].tolist()
    assert row["token_ids"] == ds.token_ids[3].tolist()
    np.testing.assert_array_equal(np.asarray(row["inputs_embeds"], dtype=np.float32), ds.embeddings[3].numpy())
    np.testing.assert_allclose(row["soft_label"], ds.soft_labels[3].numpy(), rtol=0, atol=0)

    bare = make_set(with_tokens=False, with_texts=False).to_dataset()
    assert "token_ids" not in bare.column_names
    assert bare["text"] == [None] * 6


def test_atomic_save_leaves_no_temp_files(tmp_path):
    ds = make_set()
    ds.save(tmp_path)
    ds.save(tmp_path)  # overwrite in place
    assert {p.name for p in tmp_path.iterdir()} == FILES


def test_crash_mid_save_keeps_previous_artefact(tmp_path, monkeypatch):
    old = make_set()
    old.save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    new = make_set(n_per_class=3)
    written = []
    write_text = Path.write_text

    def disk_full_at_meta(path, text, *args, **kwargs):
        if path.name.startswith(".meta.json."):  # embeddings, text.jsonl and metrics.json already written
            raise OSError("disk full")
        written.append(path.name)
        return write_text(path, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full_at_meta)
    with pytest.raises(OSError, match="disk full"):
        new.save(tmp_path)
    assert [name.split(".")[1] for name in written] == ["text", "metrics"]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "no file replaced, no temporary left"
    assert DistilledSet.load(tmp_path).num_examples == old.num_examples


def test_unbalanced_examples_per_class():
    ds = make_set()
    ds.labels = torch.tensor([0, 0, 0, 1, 1, 2])
    assert ds.class_counts == [3, 2, 1]
    with pytest.raises(ValueError, match="unbalanced"):
        _ = ds.examples_per_class


def test_inner_protocol_and_progress_read_meta(tmp_path):
    ds = make_set(steps=4)
    ds.meta["inner"] = {"params": "last_n_layers", "n_layers": 2, "optimizer": "adam", "steps": 4}
    ds.meta["progress"] = {"outer_step": 30, "seconds": 12.5}
    loaded = DistilledSet.load(ds.save(tmp_path))
    inner = loaded.inner
    assert (inner.params, inner.n_layers, inner.optimizer, inner.steps) == ("last_n_layers", 2, "adam", 4)
    assert torch.equal(inner.lrs, ds.inner_lrs)
    assert loaded.progress == Progress(outer_step=30, seconds=12.5)
    with pytest.raises(AttributeError):
        inner.params = "all"  # a read-only view: the artefact's fields are the truth


def test_inner_protocol_defaults_where_meta_is_silent():
    ds = make_set(steps=3)  # meta["inner"] has only steps; a checkpoint has no seconds yet
    ds.meta["progress"] = {"outer_step": 2}
    assert (ds.inner.params, ds.inner.n_layers, ds.inner.optimizer, ds.inner.steps) == ("head", 1, "sgd", 3)
    assert ds.progress == Progress(outer_step=2, seconds=None)
    del ds.meta["progress"]
    assert ds.progress == Progress(None, None)
    assert InnerProtocol().steps == 0 and InnerProtocol(lrs=torch.ones(5, 2)).steps == 5


def test_training_set_embedding_form():
    ds = make_set()
    train = ds.training_set("embedding")
    assert isinstance(train, TrainingSet) and len(train) == 6 and train.input_ids is None
    assert train.inputs_embeds is ds.embeddings and train.attention_mask is ds.attention_mask
    assert train.soft_labels is ds.soft_labels
    assert train.inputs(torch.tensor([1, 3]))["inputs_embeds"].shape == (2, 5, 4)


def test_training_set_text_form_retokenises(tiny_bert):
    ds = make_set(length=5)
    ds.texts = ["word " * 20] + ["short"] * 5
    train = ds.training_set("text", tiny_bert.tokenizer, max_length=8)
    expected = tiny_bert.tokenizer(ds.texts, truncation=True, max_length=8, padding="longest", return_tensors="pt")
    assert train.inputs_embeds is None and train.soft_labels is ds.soft_labels
    assert torch.equal(train.input_ids, expected["input_ids"]) and train.input_ids.shape == (6, 8)
    assert torch.equal(train.attention_mask, expected["attention_mask"])
    # At least the set's own length L, so a text as long as the distilled example is never cut.
    assert ds.training_set("text", tiny_bert.tokenizer, max_length=2).input_ids.shape == (6, 5)


def test_training_set_rejects_what_the_set_cannot_give():
    ds = make_set()
    with pytest.raises(ValueError, match="form must be one of"):
        ds.training_set("tokens")
    with pytest.raises(ValueError, match="needs decoded texts, a tokenizer"):
        ds.training_set("text")
    with pytest.raises(ValueError, match="needs decoded texts, a tokenizer"):
        make_set(with_texts=False).training_set("text", tokenizer=object())
    text_only = split_merged(merge_distilled([ds], form="text"))[0]
    with pytest.raises(ValueError, match="text-only"):
        text_only.training_set("embedding")
    with pytest.raises(ValueError, match="max_length"):
        text_only.training_set("text", tokenizer=object())  # L is 0, so only max_length can bound the tokens
