"""Attention labels (Maekawa et al., ACL 2023): learned attention-probability targets per synthetic example.

Besides its soft label, each synthetic example carries, for chosen layers and heads, the attention distribution
the model should produce on it: the first token's row (what a [CLS] classifier reads) or every row. The inner
loss adds ``weight`` times the KL divergence from those targets to the model's attention, so a model trained on
the set learns how to attend as well as what to predict. The targets are learned by the outer loop like the soft
labels, start from the pretrained model's own attention on the initial set, and are saved in the artefact
(``attention_labels``, with their spec in ``meta["attention"]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # torch only at run time: the artefact module uses this one
    from condense.models.encoders import Encoder
    from condense.config.schema import DistillConfig

ROWS = ("first_token", "all_rows")


@dataclass(frozen=True)
class AttentionSpec:
    """Which attention maps the labels are for (absolute layer and head indices) and the KL term's weight."""

    rows: str  # first_token | all_rows
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    weight: float

    def to_meta(self) -> dict:
        return {**asdict(self), "layers": list(self.layers), "heads": list(self.heads)}

    @classmethod
    def from_meta(cls, meta: dict | None) -> AttentionSpec | None:
        if not meta:
            return None
        return cls(rows=meta["rows"], layers=tuple(meta["layers"]), heads=tuple(meta["heads"]), weight=float(meta["weight"]))


def attention_spec(encoder: Encoder, config: DistillConfig) -> AttentionSpec | None:
    """The config's attention labels on this encoder, or None when they are off; indices are checked here."""
    if config.attention_labels == "none":
        return None
    layers, heads = encoder.model.config.num_hidden_layers, encoder.model.config.num_attention_heads

    def absolute(indices: list[int] | None, count: int, key: str) -> tuple[int, ...]:
        chosen = list(range(count)) if indices is None else indices
        if not all(-count <= i < count for i in chosen):
            raise ValueError(f"distill.{key}={chosen}: {encoder.name} has {count} (indices -{count}..{count - 1})")
        return tuple(sorted({i % count for i in chosen}))

    return AttentionSpec(
        rows=config.attention_labels,
        layers=absolute(config.attention_layers, layers, "attention_layers"),
        heads=absolute(config.attention_heads, heads, "attention_heads"),
        weight=config.attention_weight,
    )


def select(attentions: tuple[torch.Tensor, ...], spec: AttentionSpec) -> torch.Tensor:
    """(N, layers, heads, rows, L) from a model's per-layer (N, H, L, L) attention probabilities."""
    chosen = torch.stack([attentions[layer][:, list(spec.heads)] for layer in spec.layers], dim=1)
    return chosen[..., :1, :] if spec.rows == "first_token" else chosen


def target_logits(initial: torch.Tensor) -> torch.Tensor:
    """Learnable logits whose softmax over keys is ``initial`` (masked keys stay at ~0 probability)."""
    return initial.clamp_min(1e-8).log()


def targets(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Attention-probability targets: a softmax over each row's real (unmasked) key positions."""
    keys = attention_mask.bool()[:, None, None, None, :]
    return torch.softmax(logits.masked_fill(~keys, float("-inf")), dim=-1)


def kl_to_targets(
    attention: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor, row_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean KL(target || attention) over examples, layers, heads and real query rows.

    ``row_weights`` (N,) leaves examples out (0) whose labels do not apply, e.g. a text form whose re-tokenised
    positions differ from the ones the labels were learned for."""
    attention = attention.to(torch.promote_types(attention.dtype, target.dtype))  # in fp32 under bf16 autocast
    kl = (torch.xlogy(target, target) - target * attention.clamp_min(1e-12).log()).sum(-1)  # (N, layers, heads, rows)
    rows = kl.shape[-1]
    queries = attention_mask[:, :rows].to(kl.dtype)[:, None, None, :] if rows > 1 else torch.ones_like(kl[..., :1])
    weights = queries.expand_as(kl)
    if row_weights is not None:
        weights = weights * row_weights.to(kl.dtype)[:, None, None, None]
    return (kl * weights).sum() / weights.sum().clamp_min(1.0)


def aligned(labels: torch.Tensor, trained_ids: torch.Tensor, trained_mask: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple:
    """The labels laid over re-tokenised text: cut or zero-padded to its width, and a (N,) weight that is 1 where a
    row's tokens are exactly the ones the labels were learned on, 0 elsewhere."""
    width = ids.shape[1]
    out = labels.new_zeros(*labels.shape[:-1], width)
    keep = min(width, labels.shape[-1])
    out[..., :keep] = labels[..., :keep]
    if labels.shape[-2] > 1:  # all rows: the query axis has the same width
        full = labels.new_zeros(*labels.shape[:-2], width, width)
        full[..., :keep, :keep] = labels[..., :keep, :keep]
        out = full
    same = torch.tensor([
        torch.equal(ids[i][mask[i].bool()].cpu(), trained_ids[i][trained_mask[i].bool()].cpu()) for i in range(len(ids))
    ], dtype=labels.dtype, device=labels.device)
    return out, same
