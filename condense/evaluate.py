"""Honest evaluation: train fresh models on a set, test on held-out real data, over many fresh initialisations.

Two ways to train on a set:

* the *learned protocol*: the inner loop the set was distilled for (same parameter subset, optimiser, steps and
  learned learning rates, soft labels), from a fresh head each time;
* a standard *fine-tuning recipe*: AdamW on all parameters for a few epochs, a protocol the set was never
  optimised for.

Every figure is a mean and standard deviation over ``n_inits`` fresh heads (and fresh data order).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from condense.artifact import InnerProtocol, TrainingSet
from condense.features import encode_tokens, trim_padding
from condense.heads import head_accuracy, train_head
from condense.inner import soft_cross_entropy, unrolled_train
from condense.models import Encoder, classify, encode, encoder_param_names, encoder_params, init_head, linear_head
from condense.report import summarize_values as summarize
from condense.schema import FinetuneRecipe

log = logging.getLogger(__name__)


@dataclass
class HeldOutData:
    """Held-out data: frozen-encoder features for head-only models, tokens for models whose encoder trained."""

    labels: torch.Tensor
    features: torch.Tensor | None = None
    tokens: dict[str, torch.Tensor] | None = None
    token_labels: torch.Tensor | None = None  # labels of ``tokens``, which may be a subsample


def accuracy(encoder: Encoder, params: dict[str, torch.Tensor], test: HeldOutData, trains_encoder: bool) -> float:
    if trains_encoder:
        features = encode_tokens(encoder, test.tokens, params={k: v.detach() for k, v in params.items()})
        return head_accuracy(params, features, test.token_labels)
    return head_accuracy(params, test.features, test.labels)


def learned_protocol(
    encoder: Encoder,
    train: TrainingSet,
    test: HeldOutData,
    inner: InnerProtocol,
    *,
    n_inits: int = 20,
    seed: int = 0,
    desc: str | None = None,
) -> dict[str, float]:
    """Test accuracy after the set's inner protocol (the loop it was distilled for), from ``n_inits`` fresh heads."""
    names = encoder_param_names(encoder.model, inner.params, inner.n_layers)
    num_classes = train.soft_labels.shape[1]
    train, lrs = train.to(encoder.device), inner.lrs.to(encoder.device)
    frozen_features = None
    if not names:
        with torch.no_grad():
            frozen_features = encode(encoder, train.attention_mask, **train.inputs())
    accuracies = []
    for init in tqdm(range(n_inits), desc=desc, disable=desc is None, leave=False):
        generator = torch.Generator().manual_seed(seed + init)
        head = init_head(encoder.hidden_size, num_classes, generator, encoder.dtype, encoder.device)
        start = {**{k: v.requires_grad_(True) for k, v in head.items()}, **encoder_params(encoder, names)}

        def loss_fn(p):
            if frozen_features is not None:
                logits = linear_head(frozen_features, p)
            else:
                logits = classify(encoder, train.attention_mask, p, **train.inputs())
            return soft_cross_entropy(logits, train.soft_labels)

        trained = unrolled_train(start, loss_fn, lrs, inner.optimizer, create_graph=False)
        accuracies.append(accuracy(encoder, trained, test, trains_encoder=bool(names)))
    return summarize(accuracies)


def finetune_start(
    encoder: Encoder, recipe: FinetuneRecipe, num_classes: int, generator: torch.Generator
) -> tuple[dict[str, torch.Tensor], torch.optim.Optimizer]:
    """The recipe's encoder weights and a fresh head (drawn from ``generator``), and the AdamW that trains them."""
    if recipe.params == "head":
        raise ValueError("the fine-tuning recipe trains encoder weights: params must be all or last_n_layers")
    head = init_head(encoder.hidden_size, num_classes, generator, encoder.dtype, encoder.device)
    head = {k: v.requires_grad_(True) for k, v in head.items()}
    weights = encoder_params(encoder, encoder_param_names(encoder.model, recipe.params, recipe.n_layers))
    optimizer = torch.optim.AdamW(
        [{"params": list(weights.values()), "lr": recipe.lr}, {"params": list(head.values()), "lr": recipe.head_lr}],
        weight_decay=recipe.weight_decay,
    )
    return {**weights, **head}, optimizer


def finetune(
    encoder: Encoder, train: TrainingSet, recipe: FinetuneRecipe, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """The recipe's encoder weights and a fresh head trained with AdamW on ``train``; returns the trained parameters."""
    params, optimizer = finetune_start(encoder, recipe, train.soft_labels.shape[1], generator)
    train = train.to(encoder.device)
    steps = max(recipe.min_steps, recipe.epochs * math.ceil(len(train) / recipe.batch_size))
    for index in itertools.islice(shuffled_batches(len(train), recipe.batch_size, generator), steps):
        mask, inputs = trim_padding(train.attention_mask[index], **train.inputs(index))
        loss = soft_cross_entropy(classify(encoder, mask, params, **inputs), train.soft_labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach() for k, v in params.items()}


def shuffled_batches(size: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches of a fresh permutation every epoch, endlessly."""
    while True:
        yield from torch.randperm(size, generator=generator).split(batch_size)


def finetune_protocol(
    encoder: Encoder,
    train: TrainingSet,
    test: HeldOutData,
    recipe: FinetuneRecipe,
    *,
    n_inits: int = 5,
    seed: int = 0,
    desc: str | None = None,
) -> dict[str, float]:
    """Test accuracy after the standard fine-tuning recipe, from ``n_inits`` fresh heads and data orders."""
    accuracies = []
    for init in tqdm(range(n_inits), desc=desc, disable=desc is None, leave=False):
        trained = finetune(encoder, train, recipe, torch.Generator().manual_seed(seed + init))
        accuracies.append(accuracy(encoder, trained, test, trains_encoder=True))
    return summarize(accuracies)


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test: HeldOutData,
    *,
    n_inits: int = 5,
    seed: int = 0,
    steps: int = 500,
    lr: float = 0.01,
    weight_decay: float = 1e-4,
) -> dict[str, float]:
    """A linear head trained to convergence (full-batch AdamW) on all training features: the head-mode reference."""
    accuracies = []
    for init in range(n_inits):
        params = probe_head(train_features, train_labels, seed + init, steps=steps, lr=lr, weight_decay=weight_decay)
        accuracies.append(head_accuracy(params, test.features, test.labels))
    return summarize(accuracies)


def probe_head(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    seed: int,
    *,
    steps: int = 500,
    lr: float = 0.01,
    weight_decay: float = 1e-4,
) -> dict[str, torch.Tensor]:
    """One head of :func:`linear_probe`, from the fresh init drawn with ``seed``; returns its trained parameters."""
    return train_head(train_features, train_labels, seed=seed, steps=steps, lr=lr, weight_decay=weight_decay)
