"""From learned input embeddings back to tokens and text, by nearest-neighbour search over the token table.

Only tokens that survive a text round trip are candidates: a token that decodes to text which the tokenizer
splits differently (WordPiece ``##`` pieces glued to their neighbour, unused slots, special tokens) would make
the decoded text a different input than the one the embeddings stood for.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import torch
import torch.nn.functional as F

from condense.models.encoders import Encoder

log = logging.getLogger(__name__)
DISTANCES = ("cosine", "l2")


def round_trip_vocabulary(encoder: Encoder) -> torch.Tensor:
    """Ids of the non-special tokens whose decoded text tokenizes back to exactly that one token, on the encoder's
    device."""
    return _round_trip_vocabulary(encoder.tokenizer).to(encoder.device)


@lru_cache(maxsize=8)
def _round_trip_vocabulary(tokenizer) -> torch.Tensor:
    special = set(tokenizer.all_special_ids)
    candidates = [i for i in range(len(tokenizer)) if i not in special]
    texts = [tokenizer.decode([i]) for i in candidates]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    kept = [i for i, text, ids in zip(candidates, texts, encoded) if ids == [i] and text.strip()]
    log.info("%d of %d tokens survive a text round trip and are decoding candidates", len(kept), len(tokenizer))
    return torch.tensor(kept, dtype=torch.long)


def nearest_tokens(
    embeddings: torch.Tensor, table: torch.Tensor, candidates: torch.Tensor | None = None, distance: str = "cosine"
) -> torch.Tensor:
    """Id of the nearest row of ``table`` (among ``candidates``) to each vector of ``embeddings`` (..., d)."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    rows = table if candidates is None else table[candidates]
    flat = embeddings.detach().reshape(-1, embeddings.shape[-1]).to(rows.dtype)
    if distance == "cosine":
        scores = F.normalize(flat, dim=-1) @ F.normalize(rows, dim=-1).T
    else:
        # argmin |x - e|^2 = argmax (2 x.e - |e|^2); |x|^2 is the same for every candidate.
        scores = 2 * flat @ rows.T - (rows * rows).sum(-1)
    best = scores.argmax(-1)
    ids = best if candidates is None else candidates[best]
    return ids.reshape(embeddings.shape[:-1])


def project(
    embeddings: torch.Tensor, table: torch.Tensor, candidates: torch.Tensor | None = None, distance: str = "cosine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest token embeddings with a straight-through gradient, and their ids.

    The forward pass sees real token embeddings, so what is trained is what the decoded text will be; the
    gradient passes to the continuous embeddings unchanged (as in PEZ, Wen et al. 2023), so they keep moving
    until a different token becomes nearest.
    """
    ids = nearest_tokens(embeddings, table, candidates, distance)
    snapped = table[ids].to(embeddings.dtype)
    return embeddings + (snapped - embeddings).detach(), ids


def decode_texts(encoder: Encoder, token_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
    """Readable text of each row of ids; special tokens and padding are left out."""
    return [
        encoder.tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=True).strip()
        for ids, mask in zip(token_ids, attention_mask)
    ]
