"""A fresh linear head trained on fixed features, and its accuracy: the one head trainer of the library.

Every head that learns from frozen-encoder features (the full-data linear probe, a head trained to convergence on a
distilled set, a head streamed over mini-batches) starts as :func:`fresh_head` and takes :func:`head_step`s; only
how many and on what differ. Targets are hard integer labels (cross-entropy) or soft-label rows (cross-entropy
against the probability vectors).

Heads are drawn from a CPU ``torch.Generator`` and then moved to the features' device, so a seed gives the same
initial head on every device, and the CPU numbers do not depend on whether a GPU exists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from condense.models.encoders import init_head, linear_head

Head = dict[str, torch.Tensor]
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in fp32 when it is in a lower precision (bf16 autocast), else as it is (fp32, fp64)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against probability vectors (soft labels); equals F.cross_entropy for one-hot targets.
    Computed in fp32 at least, whatever precision the logits come in."""
    logits = at_least_fp32(logits)
    return -(targets.to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def fresh_head(
    num_inputs: int, num_classes: int, generator: torch.Generator, *, device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Head:
    """A trainable head drawn like ``nn.Linear`` (:func:`condense.models.encoders.init_head`) from ``generator``, on ``device``."""
    head = init_head(num_inputs, num_classes, generator, dtype, device)
    return {name: tensor.requires_grad_(True) for name, tensor in head.items()}


def head_optimizer(head: Head, optimizer: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"head optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    return OPTIMIZERS[optimizer](list(head.values()), lr=lr, weight_decay=weight_decay)


def head_loss(head: Head, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the head's logits: against integer labels, or against rows of class probabilities."""
    logits = linear_head(features, head)
    if targets.is_floating_point():
        return soft_cross_entropy(logits, targets)
    return F.cross_entropy(logits, targets)


def head_step(head: Head, optimizer: torch.optim.Optimizer, features: torch.Tensor, targets: torch.Tensor) -> None:
    """One optimiser step of the head on a batch of ``features`` and their ``targets``."""
    loss = head_loss(head, features, targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def num_classes_of(targets: torch.Tensor) -> int:
    """Classes that ``targets`` speak of: the width of soft-label rows, else the largest label + 1."""
    return targets.shape[1] if targets.is_floating_point() else int(targets.max()) + 1


def train_head(
    features: torch.Tensor,
    targets: torch.Tensor,
    *,
    seed: int,
    steps: int,
    lr: float,
    weight_decay: float,
    optimizer: str = "adamw",
) -> Head:
    """A fresh head (drawn with ``seed``) trained full-batch for ``steps`` on ``features``; returns it detached.

    With AdamW and integer labels this is :func:`condense.eval.protocols.probe_head`, number for number.
    """
    head = fresh_head(features.shape[1], num_classes_of(targets), torch.Generator().manual_seed(seed),
                      device=features.device, dtype=features.dtype)
    step_with = head_optimizer(head, optimizer, lr, weight_decay)
    for _ in range(steps):
        head_step(head, step_with, features, targets)
    return {name: tensor.detach() for name, tensor in head.items()}


def head_accuracy(head: Head, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``features`` whose highest logit is their label."""
    with torch.no_grad():
        return (linear_head(features, head).argmax(-1) == labels).float().mean().item()
