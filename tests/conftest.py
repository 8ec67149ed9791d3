"""Tiny randomly initialised encoders (BERT, DistilBERT, RoBERTa code paths) and a tiny task, all offline."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

# condense first: importing it registers torchvision's op schemas, which transformers' model classes need.
from condense.models.encoders import load_encoder, resolve_model_path
from transformers import AutoModel, AutoTokenizer, BertConfig, DistilBertConfig, RobertaConfig

TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
CONFIGS = {
    "bert": lambda vocab: BertConfig(vocab_size=vocab, max_position_embeddings=64, **TINY),
    "distilbert": lambda vocab: DistilBertConfig(
        vocab_size=vocab, dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=64
    ),
    "roberta": lambda vocab: RobertaConfig(
        vocab_size=vocab, max_position_embeddings=66, pad_token_id=0, bos_token_id=101, eos_token_id=102, **TINY
    ),
}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Feature and reference caches per test session, never the user's."""
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """A saved tiny random model per architecture, loadable by path like a hub id."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    dirs = {}
    for arch, make_config in CONFIGS.items():
        torch.manual_seed(0)
        model = AutoModel.from_config(make_config(len(tokenizer)), attn_implementation="eager")
        folder = tmp_path_factory.mktemp(f"tiny-{arch}")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        dirs[arch] = folder
    return dirs


@pytest.fixture(scope="session")
def tiny_bert(tiny_model_dirs):
    return load_encoder(str(tiny_model_dirs["bert"]), pooling="mean")


@pytest.fixture(scope="session")
def tiny_task_dir(tmp_path_factory) -> Path:
    """A 3-class task in the shared-datasets format: {split}.csv.gz + info.json."""
    folder = tmp_path_factory.mktemp("tiny-task")
    words = {0: "stocks market profit bank", 1: "football match goal team", 2: "software chip internet phone"}
    generator = torch.Generator().manual_seed(0)
    for split, n in (("train", 24), ("test", 12)):
        lines = ["text,label"]
        for i in range(n):
            label = i % 3
            picks = torch.randint(0, 4, (5,), generator=generator).tolist()
            lines.append(" ".join(words[label].split()[p] for p in picks) + f",{label}")
        with gzip.open(folder / f"{split}.csv.gz", "wt") as f:
            f.write("\n".join(lines) + "\n")
    (folder / "info.json").write_text(json.dumps({"labels": ["business", "sports", "tech"]}))
    return folder


@pytest.fixture(scope="session")
def tiny_sentiment_dir(tmp_path_factory) -> Path:
    """A second, 2-class tiny task, so that a task sequence has tasks of different sizes."""
    folder = tmp_path_factory.mktemp("tiny-sentiment")
    words = {0: "awful dull boring bad", 1: "great lovely fun good"}
    generator = torch.Generator().manual_seed(1)
    for split, n in (("train", 20), ("test", 10)):
        lines = ["text,label"]
        for i in range(n):
            picks = torch.randint(0, 4, (4,), generator=generator).tolist()
            lines.append(" ".join(words[i % 2].split()[p] for p in picks) + f",{i % 2}")
        with gzip.open(folder / f"{split}.csv.gz", "wt") as f:
            f.write("\n".join(lines) + "\n")
    (folder / "info.json").write_text(json.dumps({"labels": ["negative", "positive"]}))
    return folder


@pytest.fixture(scope="session")
def tiny_sequence_overrides(tiny_model_dirs, tiny_task_dir, tiny_sentiment_dir):
    """The command line of a tiny two-task sequence (topics, then mood) that runs in seconds: ``(out, seeds)``."""

    def overrides(out, seeds: str = "[0,1]") -> list[str]:
        return [
            f"task_sequence.tasks=[{{name: topics, path: '{tiny_task_dir}'}},{{name: mood, path: '{tiny_sentiment_dir}'}}]",
            f"model.name={tiny_model_dirs['bert']}", "distill.outer_steps=2", "distill.seq_len=8",
            "distill.real_batch_size=8", "continual.memory_per_class=2", f"continual.seeds={seeds}",
            "continual.train_examples_per_task=12", "continual.test_examples_per_task=8",
            "continual.curve_examples_per_task=4", "continual.batch_size=4", "continual.replay_batch_size=2",
            "continual.curve_points_per_experience=2", "continual.mean_matched_replay.steps=3",
            "continual.super_dataset.outer_steps=2",
            "continual.refit.steps=3", "threads=1", f"out={out}",
        ]

    return overrides
