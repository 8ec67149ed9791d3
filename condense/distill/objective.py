"""The loss a model minimises on a distilled set: soft-label cross-entropy, plus the attention-label KL term.

Distillation's inner loop (:mod:`condense.distill.loop`) and every learner that trains on a set through its learned
protocol (:mod:`condense.eval.protocols`) call :func:`set_loss`, so a set is trained on exactly as it was distilled.
"""

from __future__ import annotations

import torch

from condense.models.attention import AttentionSpec, kl_to_targets, select
from condense.models.heads import soft_cross_entropy
from condense.models.encoders import Encoder, classify, encode_attending, linear_head


def set_loss(
    encoder: Encoder,
    attention_mask: torch.Tensor,
    params: dict[str, torch.Tensor],
    soft_labels: torch.Tensor,
    attention: tuple[AttentionSpec, torch.Tensor, torch.Tensor | None] | None = None,
    **inputs: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy of the model ``params`` overrides against ``soft_labels``; with ``attention`` = (spec, target
    probabilities, per-example weights or None), plus ``spec.weight`` times the KL from the targets to its attention."""
    if attention is None:
        return soft_cross_entropy(classify(encoder, attention_mask, params, **inputs), soft_labels)
    spec, target, row_weights = attention
    features, maps = encode_attending(encoder, attention_mask, params=params, **inputs)
    kl = kl_to_targets(select(maps, spec), target, attention_mask.to(target.device), row_weights)
    return soft_cross_entropy(linear_head(features, params), soft_labels) + spec.weight * kl
