"""Dataset distillation by back-propagation through time (the outer loop).

A synthetic set is k examples per class, each an (L, d) matrix of input embeddings with an attention mask, a
learnable soft label, and T learnable inner learning rates shared by the set. Every outer step draws a fresh
head, trains it (and, in the ``last_n_layers`` / ``all`` modes, encoder weights) for T unrolled steps on the
synthetic set, measures cross-entropy on a batch of real training data, and back-propagates that loss through
the unrolled steps to the embeddings, labels and learning rates.

With ``projection="straight_through"`` the forward pass always sees the nearest real token embeddings, so the
set that is trained is exactly its decoded text; the gradient still reaches the continuous embeddings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from condense import distributed
from condense.artifact.distilled_set import DistilledSet
from condense.config.device import autocast, clock
from condense.config.schema import DistillConfig
from condense.data.tasks import Task
from condense.distill.checkpoint import OuterState
from condense.distill.inner import unrolled_train
from condense.models.heads import at_least_fp32, soft_cross_entropy
from condense.distill.objective import set_loss
from condense.distill.synthetic import SyntheticSet
from condense.models.encoders import Encoder, encode, encoder_param_names, encoder_params, init_head, linear_head
from condense.models.features import tokenize, trim_padding

log = logging.getLogger(__name__)


@dataclass
class RealData:
    """The real training data the outer loss is measured on.

    ``features`` (frozen-encoder features) suffice when only the head trains; otherwise ``tokens`` are encoded
    by the inner-trained encoder at every outer step.
    """

    labels: torch.Tensor
    features: torch.Tensor | None = None
    tokens: dict[str, torch.Tensor] | None = None

    def batch(self, index: torch.Tensor) -> RealData:
        """The rows at ``index``, with token padding trimmed to the longest of them."""
        tokens = None
        if self.tokens is not None:
            mask, tokens = trim_padding(self.tokens["attention_mask"][index], input_ids=self.tokens["input_ids"][index])
            tokens["attention_mask"] = mask
        features = None if self.features is None else self.features[index]
        return RealData(labels=self.labels[index], features=features, tokens=tokens)


def real_data(encoder: Encoder, task: Task, labels: torch.Tensor, features: torch.Tensor | None, max_length: int,
              config: DistillConfig) -> RealData:
    """The task's training rows as the outer loss reads them: frozen features when only a head trains, else tokens."""
    if config.trains_encoder:
        return RealData(labels=labels, tokens=tokenize(encoder, task.train["text"], max_length))
    return RealData(labels=labels, features=features)


def learn_labels(encoder: Encoder, real: RealData, start: DistilledSet, config: DistillConfig) -> DistilledSet:
    """Soft labels and inner learning rates learned for the fixed inputs of ``start`` by the same outer loop: the
    label treatment real-example baselines get, so that a gap to a distilled set is its inputs'."""
    return distill(encoder, real, start, replace(config, learn_inputs=False), progress=False)


def distill(
    encoder: Encoder,
    real: RealData,
    start: DistilledSet,
    config: DistillConfig,
    on_checkpoint: Callable[[OuterState], None] | None = None,
    progress: bool = True,
    resume: OuterState | None = None,
    checkpoint_seconds: float | None = None,
) -> DistilledSet:
    """Learn the embeddings, soft labels and inner learning rates of ``start`` by BPTT; returns the learned set.

    ``start`` is a set of tokens (:func:`condense.distill.start.initial_set`, ``real_examples_set``) or of
    embeddings; the result carries its inner protocol (``meta["inner"]``), its decoded text, and how far it got
    (``meta["progress"]``, ``meta["outer_loss"]``), ready to save or to train on (:meth:`DistilledSet.training_set`).

    ``on_checkpoint`` receives the whole outer-loop state every ``config.checkpoint_every`` steps and whenever
    ``checkpoint_seconds`` have passed since the last one; the same ``start`` and ``config`` with ``resume`` set to
    such a state continue from it and end with the tensors of a run that was never stopped."""
    _check_real_data(real, config)
    # Random draws come from a CPU generator and are then moved, so a run on any device draws the same numbers.
    generator = torch.Generator().manual_seed(config.seed)
    synthetic = SyntheticSet.from_start(encoder, start, config, generator)
    device = encoder.device
    optimizer = synthetic.optimizer()
    # Fixed inputs under a frozen encoder: their features never change, so they are encoded once.
    fixed_features = None
    if not config.trains_encoder and not config.learn_inputs:
        with torch.no_grad():
            fixed_features = encode(encoder, synthetic.mask, inputs_embeds=synthetic.inputs_embeds())
    history, first, seconds_before = [], 0, 0.0
    if resume is not None:  # every draw before the loop was replayed above; the generator now jumps ahead
        resume.restore(synthetic, optimizer, generator)
        history, first, seconds_before = list(resume.history), resume.step, resume.seconds
    started = last_checkpoint = clock(device)
    steps = tqdm(range(first, config.outer_steps), desc="distilling", leave=False, initial=first,
                 total=config.outer_steps, disable=not progress or not distributed.world().is_main)
    for step in steps:
        loss = outer_step(encoder, synthetic, real, generator, fixed_features)
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            # Each process measured its share of the real batch: the sums are the whole batch's gradients.
            distributed.sum_gradients(synthetic.learned_tensors())
            torch.nn.utils.clip_grad_norm_(synthetic.learned_tensors(), config.clip_norm)
            optimizer.step()
        history.append(distributed.total(loss).item())
        steps.set_postfix(outer_loss=f"{sum(history[-20:]) / len(history[-20:]):.3f}")
        due = (step + 1) % config.checkpoint_every == 0 or (
            checkpoint_seconds is not None and time.perf_counter() - last_checkpoint >= checkpoint_seconds)
        if on_checkpoint is not None and due and step + 1 < config.outer_steps:
            on_checkpoint(OuterState.of(step + 1, synthetic, optimizer, generator, history,
                                        seconds_before + time.perf_counter() - started))
            last_checkpoint = time.perf_counter()
    seconds = seconds_before + clock(device) - started
    log.info("distilled %d examples in %.0f s (%.2f outer steps/s), final outer loss %.3f", start.num_examples, seconds,
             (config.outer_steps - first) / max(seconds - seconds_before, 1e-9), sum(history[-20:]) / max(len(history[-20:]), 1))
    return synthetic.snapshot(encoder, config.outer_steps, seconds, history)


def _check_real_data(real: RealData, config: DistillConfig) -> None:
    processes = distributed.world().size
    if min(config.real_batch_size, len(real.labels)) < processes:
        raise ValueError(f"distill.real_batch_size={config.real_batch_size} ({len(real.labels)} real rows) cannot be "
                         f"shared by {processes} processes: each needs at least one row")
    if config.trains_encoder and real.tokens is None:
        raise ValueError(f"distill.params={config.params} trains the encoder and needs real tokens, not features")
    if not config.trains_encoder and real.features is None:
        raise ValueError("head-only distillation needs real frozen-encoder features")


def outer_step(encoder: Encoder, synthetic: SyntheticSet, real: RealData, generator: torch.Generator,
               fixed_features: torch.Tensor | None = None) -> torch.Tensor:
    """One outer step's loss: a fresh head (and the pretrained weights the config trains) trained for T unrolled
    steps on the synthetic set, then scored on a random batch of real rows."""
    config, device = synthetic.config, synthetic.table.device
    head = init_head(encoder.hidden_size, synthetic.start.num_classes, generator, synthetic.table.dtype, device)
    params = {**{k: v.requires_grad_(True) for k, v in head.items()},
              **encoder_params(encoder, encoder_param_names(encoder.model, config.params, config.n_layers))}
    batch = torch.randint(len(real.labels), (min(config.real_batch_size, len(real.labels)),), generator=generator)
    # Every process draws the same batch and measures its own share of it, divided by the whole batch's size.
    return outer_loss(encoder, params, synthetic.inputs_embeds() if fixed_features is None else None, synthetic.mask,
                      synthetic.soft_labels(), synthetic.lrs(), real.batch(distributed.shard(batch)), config.inner_optimizer,
                      synthetic_features=fixed_features, checkpoint=config.bptt == "checkpoint",
                      attention=synthetic.attention(), micro_batch=config.real_micro_batch, batch_rows=len(batch),
                      precision=config.precision)


def outer_loss(
    encoder: Encoder,
    params: dict[str, torch.Tensor],
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor,
    targets: torch.Tensor,
    lrs: torch.Tensor,
    real_batch: RealData,
    inner_optimizer: str = "sgd",
    synthetic_features: torch.Tensor | None = None,
    checkpoint: bool = False,
    attention: tuple | None = None,
    micro_batch: int | None = None,
    batch_rows: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Cross-entropy on a real batch after ``len(lrs)`` unrolled inner steps on the synthetic set from ``params``.

    Differentiable with respect to ``inputs_embeds``, ``targets`` and ``lrs``: this is the quantity the outer loop
    minimises. ``params`` holds the head and whichever encoder weights the inner loop trains; with only a head,
    ``synthetic_features`` may stand in for the synthetic inputs when those are fixed. ``attention`` (spec,
    targets, weights) adds the attention-label term to the inner loss (:func:`condense.distill.objective.set_loss`).
    ``micro_batch`` and ``batch_rows`` are :func:`real_loss`'s; ``precision="bf16"`` autocasts the matrix
    multiplies of the inner steps and the real forward.
    """
    trains_encoder = any(not name.startswith("head.") for name in params)
    with autocast(encoder.device, precision):
        if trains_encoder:

            def inner_loss(p):
                return set_loss(encoder, attention_mask, p, targets, attention, inputs_embeds=inputs_embeds)

        else:
            features = synthetic_features
            if features is None:
                features = encode(encoder, attention_mask, inputs_embeds=inputs_embeds)

            def inner_loss(p):
                return soft_cross_entropy(linear_head(features, p), targets)

        trained = unrolled_train(params, inner_loss, lrs, inner_optimizer, checkpoint=checkpoint)
        return real_loss(encoder, trained, real_batch, micro_batch if trains_encoder else None, batch_rows)


def real_loss(encoder: Encoder, trained: dict[str, torch.Tensor], real_batch: RealData, micro_batch: int | None = None,
              batch_rows: int | None = None) -> torch.Tensor:
    """The summed cross-entropy of the model ``trained`` on ``real_batch``, divided by ``batch_rows`` (default: its
    rows, the mean; a process that holds a share of a batch divides by the whole batch's size).

    With ``micro_batch`` the rows go through the encoder that many at a time and each micro-batch's graph is freed
    at once: the gradient with respect to the trained weights is accumulated on detached copies of them, and the
    returned tensor carries it back into the unroll (its value is the loss; its first derivatives are exactly the
    whole batch's, its second are not). Activation memory is then one micro-batch's, not the batch's.
    """
    rows = len(real_batch.labels)
    batch_rows = batch_rows or rows
    if micro_batch is None or micro_batch >= rows:
        return _summed_cross_entropy(encoder, trained, real_batch) / batch_rows
    leaves = {name: weight.detach().requires_grad_(True) for name, weight in trained.items()}
    value = 0.0
    for index in torch.arange(rows, device=real_batch.labels.device).split(micro_batch):
        part = _summed_cross_entropy(encoder, leaves, real_batch.batch(index)) / batch_rows
        part.backward()
        value = value + part.detach()
    # d(surrogate)/d(trained) is the accumulated gradient: backward carries it through the unroll.
    surrogate = sum((trained[name] * leaf.grad).sum() for name, leaf in leaves.items() if leaf.grad is not None)
    return value + surrogate - surrogate.detach()


def _summed_cross_entropy(encoder: Encoder, params: dict[str, torch.Tensor], real_batch: RealData) -> torch.Tensor:
    if real_batch.tokens is not None and any(not name.startswith("head.") for name in params):
        tokens = real_batch.tokens
        features = encode(encoder, tokens["attention_mask"], input_ids=tokens["input_ids"], params=params)
    else:
        features = real_batch.features
    logits = linear_head(features.to(params["head.weight"].dtype), params)
    return F.cross_entropy(at_least_fp32(logits), real_batch.labels, reduction="sum")
