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

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from condense.artifact import DistilledSet
from condense.attention import AttentionSpec, attention_spec, select, target_logits
from condense.attention import targets as attention_targets
from condense.checkpoint import OuterState, restore
from condense.decode import decode_texts, nearest_tokens, project, round_trip_vocabulary
from condense.features import trim_padding
from condense.inner import soft_cross_entropy, unrolled_train
from condense.models import Encoder, encode, encode_attending, encoder_param_names, encoder_params, init_head, linear_head
from condense.objective import set_loss
from condense.schema import DistillConfig

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


def initial_set(
    encoder: Encoder,
    texts: list[str],
    labels: torch.Tensor,
    label_names: list[str],
    ipc: int,
    seq_len: int,
    seed: int,
) -> DistilledSet:
    """k examples per class, each filled with the tokens of randomly drawn real examples of its class: the set
    distillation starts from: real tokens (its embeddings are theirs) with one-hot labels.

    Real texts are concatenated until ``seq_len`` is full, so every position starts as a real token in a
    plausible context instead of padding.
    """
    prefix, suffix = encoder.special_tokens()
    room = seq_len - len(prefix) - len(suffix)
    if room < 1:
        raise ValueError(f"distill.seq_len={seq_len} leaves no room for text between the special tokens")
    generator = torch.Generator().manual_seed(seed)
    pad = encoder.tokenizer.pad_token_id or 0
    rows, masks, row_labels = [], [], []
    labels = labels.cpu()
    for label in range(len(label_names)):
        members = torch.nonzero(labels == label).flatten()
        order = members[torch.randperm(len(members), generator=generator)].tolist()
        for example in range(ipc):
            content: list[int] = []
            # Start each example from a different real text, then keep drawing from the class's shuffled list.
            for index in order[example:] + order[:example]:
                content += encoder.tokenizer(texts[index], add_special_tokens=False)["input_ids"]
                if len(content) >= room:
                    break
            ids = prefix + content[:room] + suffix
            rows.append(ids + [pad] * (seq_len - len(ids)))
            masks.append([1] * len(ids) + [0] * (seq_len - len(ids)))
            row_labels.append(label)
    return token_set(encoder, torch.tensor(rows), torch.tensor(masks), torch.tensor(row_labels), label_names)


def real_examples_set(
    encoder: Encoder, texts: list[str], labels: torch.Tensor, label_names: list[str], max_length: int
) -> DistilledSet:
    """Real examples as a set to start from, for the label-only baselines (random and coreset subsets)."""
    tokens = encoder.tokenizer(texts, truncation=True, max_length=max_length, padding="longest", return_tensors="pt")
    return token_set(encoder, tokens["input_ids"], tokens["attention_mask"], labels.clone().cpu(), label_names, list(texts))


def token_set(
    encoder: Encoder,
    token_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    label_names: list[str],
    texts: list[str] | None = None,
) -> DistilledSet:
    """Real tokens with one-hot labels, the set before any distillation: its embeddings are its tokens' (no
    ``meta["progress"]`` and no inner protocol yet)."""
    table = encoder.token_embeddings.detach()
    return DistilledSet(
        embeddings=table[token_ids.to(table.device)].float().cpu(),
        attention_mask=attention_mask.long(),
        labels=labels.long(),
        soft_labels=F.one_hot(labels.long(), len(label_names)).float(),
        inner_lrs=torch.zeros(0),
        meta={"label_names": list(label_names)},
        token_ids=token_ids.long(),
        texts=texts,
    )


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

    ``start`` is a set of tokens (:func:`initial_set`, :func:`real_examples_set`) or of embeddings; the result
    carries its inner protocol (``meta["inner"]``), its decoded text, and how far it got (``meta["progress"]``,
    ``meta["outer_loss"]``), ready to save or to train on (:meth:`DistilledSet.training_set`).

    ``on_checkpoint`` receives the whole outer-loop state every ``config.checkpoint_every`` steps and whenever
    ``checkpoint_seconds`` have passed since the last one; the same ``start`` and ``config`` with ``resume`` set to
    such a state continue from it and end with the tensors of a run that was never stopped."""
    if config.trains_encoder and real.tokens is None:
        raise ValueError(f"distill.params={config.params} trains the encoder and needs real tokens, not features")
    if not config.trains_encoder and real.features is None:
        raise ValueError("head-only distillation needs real frozen-encoder features")
    # Random draws come from a CPU generator and are then moved, so a run on any device draws the same numbers.
    generator = torch.Generator().manual_seed(config.seed)
    table = encoder.token_embeddings.detach()
    device = table.device
    start_ids, mask, labels = start.token_ids.to(device), start.attention_mask.to(device), start.labels.to(device)
    num_classes = start.num_classes
    untouched = start.progress.outer_step is None  # a set of real tokens, which noise init may replace
    candidates = round_trip_vocabulary(encoder)
    special = torch.tensor(encoder.tokenizer.all_special_ids, device=device)
    learnable = mask.bool() & ~torch.isin(start_ids, special)

    fixed = table[start_ids].clone()
    inputs = start.embeddings.to(device).detach().clone()
    if config.init == "noise" and untouched:
        noise = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype).to(device) * table.std() + table.mean(0)
        inputs = torch.where(learnable.unsqueeze(-1), noise, inputs)
    inputs.requires_grad_(config.learn_inputs)

    one_hot = F.one_hot(labels, num_classes).to(table.dtype)
    label_logits = (one_hot * math.log(9 * max(num_classes - 1, 1))).requires_grad_(config.labels == "learned")
    groups = 2 if config.trains_encoder else 1
    initial_lrs = torch.tensor([config.inner_lr, config.inner_encoder_lr][:groups], dtype=table.dtype, device=device)
    log_lrs = initial_lrs.log().repeat(config.inner_steps, 1).requires_grad_(config.learn_lrs)

    def targets() -> torch.Tensor:
        return F.softmax(label_logits, dim=-1) if config.labels == "learned" else one_hot

    def forward_inputs() -> torch.Tensor:
        if config.projection == "straight_through" and config.learn_inputs:
            snapped, _ = project(inputs, table, candidates, config.distance)
        else:
            snapped = inputs
        return torch.where(learnable.unsqueeze(-1), snapped, fixed)

    spec = attention_spec(encoder, config)
    attention_logits = None if spec is None else initial_attention(encoder, start, spec, mask, forward_inputs)

    groups_to_learn = [
        {"params": [inputs], "lr": config.lr_inputs, "on": config.learn_inputs},
        {"params": [label_logits], "lr": config.lr_labels, "on": config.labels == "learned"},
        {"params": [log_lrs], "lr": config.lr_lrs, "on": config.learn_lrs},
        {"params": [attention_logits], "lr": config.lr_attention, "on": spec is not None},
    ]
    learned = [{"params": g["params"], "lr": g["lr"]} for g in groups_to_learn if g["on"]]
    optimizer = torch.optim.Adam(learned) if learned else None
    encoder_names = encoder_param_names(encoder.model, config.params, config.n_layers)

    def attention() -> tuple | None:
        return None if spec is None else (spec, attention_targets(attention_logits, mask), None)

    frozen_features = None
    if not config.trains_encoder and not config.learn_inputs:
        with torch.no_grad():
            frozen_features = encode(encoder, mask, inputs_embeds=forward_inputs())

    def snapshot(outer_step: int, seconds: float | None = None) -> DistilledSet:
        """The current state as a set: what the model trains on, its nearest tokens and their text, labels, lrs."""
        with torch.no_grad():
            token_ids = start_ids.clone()
            if config.learn_inputs:
                token_ids[learnable] = nearest_tokens(inputs[learnable], table, candidates, config.distance)
            lrs = log_lrs.exp().detach().clone()
            # Fixed inputs keep the text they were made from: decoding real tokens need not give it back exactly.
            texts = start.texts if not config.learn_inputs and start.texts is not None else decode_texts(encoder, token_ids, mask)
            return replace(
                start,
                embeddings=forward_inputs().detach().float(),
                attention_mask=mask.clone(),
                labels=labels.clone(),
                soft_labels=targets().detach().float(),
                inner_lrs=(lrs.squeeze(-1) if groups == 1 else lrs).float(),
                token_ids=token_ids,
                texts=texts,
                attention_labels=None if spec is None else attention()[1].detach().float(),
                meta={
                    **start.meta,
                    "inner": {"params": config.params, "n_layers": config.n_layers, "optimizer": config.inner_optimizer,
                              "steps": config.inner_steps, "attention": None if spec is None else spec.to_meta()},
                    "progress": {"outer_step": outer_step, "seconds": seconds},
                    "outer_loss": list(history),
                },
                metrics={},
            )

    history: list[float] = []
    first, seconds_before = 0, 0.0
    if resume is not None:  # every draw before the loop was replayed above; the generator now jumps ahead
        restore(resume, (inputs, label_logits, log_lrs, attention_logits), optimizer, generator)
        history, first, seconds_before = list(resume.history), resume.step, resume.seconds

    def state(done: int) -> OuterState:  # copies: the live tensors move on after the checkpoint
        optimizer_state = None if optimizer is None else copy.deepcopy(optimizer.state_dict())
        attention_state = None if attention_logits is None else attention_logits.detach().clone()
        return OuterState(done, inputs.detach().clone(), label_logits.detach().clone(), log_lrs.detach().clone(),
                          attention_state, optimizer_state, generator.get_state(), list(history),
                          seconds_before + time.perf_counter() - started)

    started = last_checkpoint = time.perf_counter()
    steps = tqdm(range(first, config.outer_steps), desc="distilling", disable=not progress, leave=False,
                 initial=first, total=config.outer_steps)
    for step in steps:
        head = init_head(encoder.hidden_size, num_classes, generator, table.dtype, device)
        params = {**{k: v.requires_grad_(True) for k, v in head.items()}, **encoder_params(encoder, encoder_names)}
        batch = torch.randint(len(real.labels), (min(config.real_batch_size, len(real.labels)),), generator=generator)
        loss = outer_loss(encoder, params, forward_inputs() if frozen_features is None else None, mask, targets(),
                          log_lrs.exp(), real.batch(batch), config.inner_optimizer, synthetic_features=frozen_features,
                          checkpoint=config.bptt == "checkpoint", attention=attention())
        history.append(loss.item())
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in learned for p in g["params"]], config.clip_norm)
            optimizer.step()
        steps.set_postfix(outer_loss=f"{sum(history[-20:]) / len(history[-20:]):.3f}")
        due = (step + 1) % config.checkpoint_every == 0 or (
            checkpoint_seconds is not None and time.perf_counter() - last_checkpoint >= checkpoint_seconds)
        if on_checkpoint is not None and due and step + 1 < config.outer_steps:
            on_checkpoint(state(step + 1))
            last_checkpoint = time.perf_counter()
    seconds = seconds_before + time.perf_counter() - started
    result = snapshot(config.outer_steps, seconds)
    log.info(
        "distilled %d examples in %.0f s (%.2f outer steps/s), final outer loss %.3f",
        len(labels), seconds, (config.outer_steps - first) / max(seconds - seconds_before, 1e-9),
        sum(history[-20:]) / max(len(history[-20:]), 1),
    )
    return result


def initial_attention(encoder: Encoder, start: DistilledSet, spec: AttentionSpec, mask: torch.Tensor, forward_inputs) -> torch.Tensor:
    """Learnable attention-label logits: the start set's own labels when it has them for this spec (a resumed
    run), else the pretrained model's attention on the initial inputs."""
    if start.attention_labels is not None and start.inner.attention == spec:
        initial = start.attention_labels.to(mask.device)
    else:
        with torch.no_grad():
            _, maps = encode_attending(encoder, mask, inputs_embeds=forward_inputs())
        initial = select(maps, spec)
    return target_logits(initial).requires_grad_(True)


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
) -> torch.Tensor:
    """Cross-entropy on a real batch after ``len(lrs)`` unrolled inner steps on the synthetic set from ``params``.

    Differentiable with respect to ``inputs_embeds``, ``targets`` and ``lrs``: this is the quantity the outer loop
    minimises. ``params`` holds the head and whichever encoder weights the inner loop trains; with only a head,
    ``synthetic_features`` may stand in for the synthetic inputs when those are fixed. ``attention`` (spec,
    targets, weights) adds the attention-label term to the inner loss (:func:`condense.objective.set_loss`).
    """
    trains_encoder = any(not name.startswith("head.") for name in params)
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
    if trains_encoder:
        tokens = real_batch.tokens
        real_features = encode(encoder, tokens["attention_mask"], input_ids=tokens["input_ids"], params=trained)
    else:
        real_features = real_batch.features
    return F.cross_entropy(linear_head(real_features, trained), real_batch.labels)
