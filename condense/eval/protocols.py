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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from condense.artifact.distilled_set import InnerProtocol, TrainingSet
from condense.models.features import encode_tokens, trim_padding
from condense.models.heads import head_accuracy, train_head
from condense.distill.inner import unrolled_train
from condense.models.heads import soft_cross_entropy
from condense.models.encoders import Encoder, classify, encode, encoder_param_names, encoder_params, init_head, linear_head
from condense.distill.objective import set_loss
from condense.report.tables import summarize_values as summarize
from condense.config.schema import FinetuneRecipe

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
    # The attention-label term goes with the set's labels: a text form whose tokens changed keeps only the rows
    # that still match (``train.attention_weights``).
    attention = None
    if inner.attention is not None and train.attention_labels is not None and names:
        attention = (inner.attention, train.attention_labels, train.attention_weights)
    accuracies = []
    for init in tqdm(range(n_inits), desc=desc, disable=desc is None, leave=False):
        generator = torch.Generator().manual_seed(seed + init)
        head = init_head(encoder.hidden_size, num_classes, generator, encoder.dtype, encoder.device)
        start = {**{k: v.requires_grad_(True) for k, v in head.items()}, **encoder_params(encoder, names)}

        def loss_fn(p):
            if frozen_features is not None:
                return soft_cross_entropy(linear_head(frozen_features, p), train.soft_labels)
            return set_loss(encoder, train.attention_mask, p, train.soft_labels, attention, **train.inputs())

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
        fused=True,  # one kernel over every tensor rather than a Python loop per tensor: the recipe's costliest step on a CPU
    )
    return {**weights, **head}, optimizer


def finetune(
    encoder: Encoder,
    train: TrainingSet,
    recipe: FinetuneRecipe,
    generator: torch.Generator,
    desc: str | None = None,
) -> dict[str, torch.Tensor]:
    """The recipe's encoder weights and a fresh head trained with AdamW on ``train``; returns the trained parameters."""
    params, optimizer = finetune_start(encoder, recipe, train.soft_labels.shape[1], generator)
    train = train.to(encoder.device)
    steps = max(recipe.min_steps, recipe.epochs * math.ceil(len(train) / recipe.batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(recipe, steps))
    if recipe.group_by_length:
        batches = grouped_batches(train.attention_mask.sum(1).cpu(), recipe.batch_size, generator)
    else:
        batches = shuffled_batches(len(train), recipe.batch_size, generator)
    for index in tqdm(itertools.islice(batches, steps), total=steps, desc=desc, disable=desc is None, leave=False):
        mask, inputs = trim_padding(train.attention_mask[index], **train.inputs(index))
        loss = soft_cross_entropy(classify(encoder, mask, params, **inputs), train.soft_labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return {k: v.detach() for k, v in params.items()}


def lr_factor(recipe: FinetuneRecipe, steps: int) -> Callable[[int], float]:
    """The multiplier of the recipe's learning rates at each step: 1, or linear warm-up then linear decay to 0."""
    if recipe.schedule == "constant":
        return lambda step: 1.0
    warmup = int(recipe.warmup_ratio * steps)
    return lambda step: (step + 1) / (warmup + 1) if step < warmup else max(0.0, (steps - step) / max(1, steps - warmup))


def shuffled_batches(size: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches of a fresh permutation every epoch, endlessly."""
    while True:
        yield from torch.randperm(size, generator=generator).split(batch_size)


def grouped_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator, chunk: int = 50) -> Iterator[torch.Tensor]:
    """Index batches of similar length, endlessly: each epoch shuffles, sorts each chunk of ``chunk`` batches by
    length, and shuffles the order of the resulting batches (as Hugging Face's ``group_by_length``)."""
    while True:
        order = torch.randperm(len(lengths), generator=generator)
        batches = []
        for group in order.split(batch_size * chunk):
            batches += group[torch.argsort(lengths[group], descending=True, stable=True)].split(batch_size)
        yield from (batches[i] for i in torch.randperm(len(batches), generator=generator).tolist())


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
