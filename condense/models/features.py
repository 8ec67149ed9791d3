"""Tokenising real text and encoding it with a frozen encoder, cached on disk.

Encoding the training and test sets is the slowest thing a frozen-encoder run does on a CPU (minutes for
AG News), and every seed, variant and evaluation of a task needs the same features, so they are cached under
``$CONDENSE_CACHE`` (default ``~/.cache/condense``) keyed by model, pooling, max length and a hash of the texts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from condense.cache import atomic_save_tensors, cache_dir, cached, digest
from condense.models.encoders import Encoder, encode, hidden_states_below

log = logging.getLogger(__name__)


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
    """Pooled features of tokenised text on the encoder's device, optionally with trained encoder weights in
    ``params``; in the encoder's ``precision`` (bf16 autocast), stored in its dtype."""
    mask = tokens["attention_mask"]
    device = encoder.device
    features = torch.empty(len(mask), encoder.hidden_size, dtype=encoder.dtype, device=device)
    for index in tqdm(length_batches(mask, batch_size), desc=progress, disable=progress is None, leave=False):
        batch_mask, inputs = trim_padding(mask[index].to(device), input_ids=tokens["input_ids"][index].to(device))
        with encoder.autocast():
            features[index.to(device)] = encode(encoder, batch_mask, params=params, **inputs).to(features.dtype)
    return features


def text_features(encoder: Encoder, texts: list[str], max_length: int, name: str = "texts") -> torch.Tensor:
    """Frozen-encoder features of ``texts``, read from the cache when this exact input was encoded before."""
    return cached_tensors(
        (encoder.name, encoder.pooling, str(max_length), *_numerics(encoder), *texts),
        lambda: {"features": encode_tokens(encoder, tokenize(encoder, texts, max_length), progress=f"encoding {name}")},
        f"{len(texts)} {name}",
    )["features"].to(encoder.device)


def _numerics(encoder: Encoder) -> tuple[str, ...]:
    """What the numbers of a cached encoding depend on besides the model and text: its dtype, and bf16 autocast
    (fp32 adds nothing, so the keys made before precisions existed stay valid)."""
    return (str(encoder.dtype),) if encoder.precision == "fp32" else (str(encoder.dtype), encoder.precision)


def text_hidden_states(
    encoder: Encoder, texts: list[str], max_length: int, n_layers: int, name: str = "texts"
) -> dict[str, torch.Tensor]:
    """Hidden states entering the last ``n_layers`` blocks, with the attention mask, cached like :func:`text_features`."""

    def compute() -> dict[str, torch.Tensor]:
        tokens = tokenize(encoder, texts, max_length)
        mask = tokens["attention_mask"]
        hidden = torch.zeros(*mask.shape, encoder.hidden_size, dtype=encoder.dtype)
        device = encoder.device
        for index in tqdm(length_batches(mask, 64), desc=f"encoding {name}", leave=False):
            batch_mask, inputs = trim_padding(mask[index].to(device), input_ids=tokens["input_ids"][index].to(device))
            with encoder.autocast():
                states = hidden_states_below(encoder, n_layers, batch_mask, **inputs)
            hidden[index, : batch_mask.shape[1]] = states.to(hidden.dtype).cpu()  # cached on disk, so kept on the host
        return {"hidden_states": hidden, "attention_mask": mask}

    key = ("hidden states", encoder.name, str(max_length), str(n_layers), *_numerics(encoder), *texts)
    return cached_tensors(key, compute, f"{len(texts)} {name}")


def cached_tensors(
    key: tuple[str, ...], compute: Callable[[], dict[str, torch.Tensor]], what: str, folder: str = "features"
) -> dict[str, torch.Tensor]:
    """``compute()``'s tensors, read from ``cache_dir()/folder`` when ``key`` was computed before, else computed and
    written there (atomically, so an interrupted run never leaves a half-written entry; locked, so parallel jobs of a
    sweep that need the same features wait for the first one's instead of encoding them again)."""
    path = cache_dir() / folder / f"{digest(key)}.safetensors"

    def compute_and_say() -> dict[str, torch.Tensor]:
        log.info("computing %s (cached at %s)", what, path)
        return compute()

    return cached(path, compute_and_say, load_file, atomic_save_tensors, lock=True)
