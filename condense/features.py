"""Tokenising real text and encoding it with a frozen encoder, cached on disk.

Encoding the training and test sets is the slowest thing a frozen-encoder run does on a CPU (minutes for
AG News), and every seed, variant and evaluation of a task needs the same features, so they are cached under
``$CONDENSE_CACHE`` (default ``~/.cache/condense``) keyed by model, pooling, max length and a hash of the texts.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from condense.models import Encoder, encode

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("CONDENSE_CACHE", Path.home() / ".cache" / "condense"))


def tokenize(encoder: Encoder, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Token ids and attention masks, padded to the longest text (at most ``max_length`` tokens)."""
    batch = encoder.tokenizer(
        list(texts), truncation=True, max_length=max_length, padding="longest", return_tensors="pt"
    )
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def trim_padding(attention_mask: torch.Tensor, **tensors: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The mask and ``tensors`` cut to the longest row: padding is on the right, so later columns are all padding."""
    width = int(attention_mask.sum(1).max())
    return attention_mask[:, :width], {name: tensor[:, :width] for name, tensor in tensors.items()}


def length_batches(attention_mask: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Index batches of similar length, so padding costs little when encoding thousands of texts."""
    order = torch.argsort(attention_mask.sum(1), descending=True)
    return list(order.split(batch_size))


@torch.no_grad()
def encode_tokens(
    encoder: Encoder,
    tokens: dict[str, torch.Tensor],
    params: dict[str, torch.Tensor] | None = None,
    batch_size: int = 64,
    progress: str | None = None,
) -> torch.Tensor:
    """Pooled features of tokenised text, optionally with trained encoder weights in ``params``."""
    mask = tokens["attention_mask"]
    features = torch.empty(len(mask), encoder.hidden_size, dtype=encoder.dtype)
    for index in tqdm(length_batches(mask, batch_size), desc=progress, disable=progress is None, leave=False):
        batch_mask, inputs = trim_padding(mask[index], input_ids=tokens["input_ids"][index])
        features[index] = encode(encoder, batch_mask, params=params, **inputs)
    return features


def text_features(encoder: Encoder, texts: list[str], max_length: int, name: str = "texts") -> torch.Tensor:
    """Frozen-encoder features of ``texts``, read from the cache when this exact input was encoded before."""
    digest = hashlib.sha256()
    for part in (encoder.name, encoder.pooling, str(max_length), str(encoder.dtype), *texts):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    path = cache_dir() / "features" / f"{digest.hexdigest()[:24]}.safetensors"
    if path.exists():
        return load_file(path)["features"]
    log.info("encoding %d %s with %s (cached at %s)", len(texts), name, encoder.name, path)
    features = encode_tokens(encoder, tokenize(encoder, texts, max_length), progress=f"encoding {name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    save_file({"features": features.contiguous()}, temporary)
    temporary.replace(path)
    return features
