"""The synthetic set while it is being learned: the tensors the outer loop optimises, in one object.

Like Maekawa et al.'s ``DistilledData``, :class:`SyntheticSet` holds every learned tensor (the continuous input
embeddings, the soft labels' logits, the log inner learning rates and, with attention labels, their logits) and what
fixes their meaning (which positions are learned, the token table they project onto). Its :meth:`state` is exactly
what a checkpoint saves of them, and :meth:`snapshot` turns it into the :class:`DistilledSet` an artefact holds.

With ``projection="straight_through"`` the model always sees the nearest real token embeddings, so the set that is
trained is exactly its decoded text; the gradient still reaches the continuous embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from condense.artifact.distilled_set import DistilledSet
from condense.config.schema import DistillConfig
from condense.distill.decode import decode_texts, nearest_tokens, project, round_trip_vocabulary
from condense.models.attention import AttentionSpec, attention_spec, select, target_logits, targets
from condense.models.encoders import Encoder, encode_attending

LEARNED = ("inputs", "label_logits", "log_lrs", "attention_logits")  # the tensors a checkpoint holds, by name


@dataclass
class SyntheticSet:
    """The learned tensors of a set being distilled from ``start``, and the fixed context they are read in."""

    inputs: torch.Tensor  # (N, L, d) continuous embeddings: what the optimiser moves
    label_logits: torch.Tensor  # (N, C): the soft labels are their softmax
    log_lrs: torch.Tensor  # (T, 1) or (T, 2): log inner learning rates per step (head, encoder)
    attention_logits: torch.Tensor | None  # (N, layers, heads, rows, L) when the set has attention labels
    start: DistilledSet
    config: DistillConfig
    mask: torch.Tensor  # (N, L) attention mask, on the encoder's device
    labels: torch.Tensor  # (N,) the class each example is made for
    learnable: torch.Tensor  # (N, L) bool: positions the outer loop learns (not special tokens, not padding)
    fixed: torch.Tensor  # (N, L, d): the start's token embeddings, kept where a position is not learned
    table: torch.Tensor  # the encoder's token embeddings, the vocabulary inputs project onto
    candidates: torch.Tensor  # token ids whose text tokenises back to themselves
    spec: AttentionSpec | None

    @classmethod
    def from_start(cls, encoder: Encoder, start: DistilledSet, config: DistillConfig,
                   generator: torch.Generator) -> SyntheticSet:
        """The tensors at step 0: ``start``'s embeddings (or noise, for ``init=noise`` on a set of real tokens),
        labels confident in each example's class, every inner learning rate at its initial value."""
        table = encoder.token_embeddings.detach()
        device = table.device
        ids, mask = start.token_ids.to(device), start.attention_mask.to(device)
        special = torch.tensor(encoder.tokenizer.all_special_ids, device=device)
        learnable = mask.bool() & ~torch.isin(ids, special)
        inputs = start.embeddings.to(device).detach().clone()
        if config.init == "noise" and start.progress.outer_step is None:  # a set of real tokens, not a resumed one
            noise = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype).to(device) * table.std() + table.mean(0)
            inputs = torch.where(learnable.unsqueeze(-1), noise, inputs)
        one_hot = F.one_hot(start.labels.to(device), start.num_classes).to(table.dtype)
        groups = [config.inner_lr, config.inner_encoder_lr][: 2 if config.trains_encoder else 1]
        log_lrs = torch.tensor(groups, dtype=table.dtype, device=device).log().repeat(config.inner_steps, 1)
        synthetic = cls(
            inputs=inputs.requires_grad_(config.learn_inputs),
            # Softmax 0.9 on the example's own class: confident, but free to learn either way.
            label_logits=(one_hot * math.log(9 * max(start.num_classes - 1, 1))).requires_grad_(config.labels == "learned"),
            log_lrs=log_lrs.requires_grad_(config.learn_lrs),
            attention_logits=None, start=start, config=config, mask=mask, labels=start.labels.to(device),
            learnable=learnable, fixed=table[ids].clone(),
            table=table, candidates=round_trip_vocabulary(encoder), spec=attention_spec(encoder, config),
        )
        if synthetic.spec is not None:
            synthetic.attention_logits = synthetic._initial_attention(encoder)
        return synthetic

    def inputs_embeds(self) -> torch.Tensor:
        """What the model is fed: the nearest tokens' embeddings (straight through) where positions are learned."""
        inputs = self.inputs
        if self.config.projection == "straight_through" and self.config.learn_inputs:
            inputs, _ = project(inputs, self.table, self.candidates, self.config.distance)
        return torch.where(self.learnable.unsqueeze(-1), inputs, self.fixed)

    def soft_labels(self) -> torch.Tensor:
        if self.config.labels == "learned":
            return F.softmax(self.label_logits, dim=-1)
        return F.one_hot(self.labels, self.start.num_classes).to(self.table.dtype)

    def lrs(self) -> torch.Tensor:
        return self.log_lrs.exp()

    def attention(self) -> tuple | None:
        """(spec, attention targets, per-example weights) for the inner loss, None without attention labels."""
        if self.spec is None:
            return None
        return self.spec, targets(self.attention_logits, self.mask), None

    def optimizer(self) -> torch.optim.Optimizer | None:
        """Adam over the tensors the config learns, each at its own rate; None when it learns none."""
        config = self.config
        groups = [(self.inputs, config.lr_inputs, config.learn_inputs),
                  (self.label_logits, config.lr_labels, config.labels == "learned"),
                  (self.log_lrs, config.lr_lrs, config.learn_lrs),
                  (self.attention_logits, config.lr_attention, self.spec is not None)]
        learned = [{"params": [tensor], "lr": lr} for tensor, lr, on in groups if on]
        return torch.optim.Adam(learned) if learned else None

    def learned_tensors(self) -> list[torch.Tensor]:
        return [tensor for tensor in (self.inputs, self.label_logits, self.log_lrs, self.attention_logits)
                if tensor is not None and tensor.requires_grad]

    def state(self) -> dict[str, torch.Tensor]:
        """Copies of the learned tensors, by name (:data:`LEARNED`): what a checkpoint saves."""
        return {name: getattr(self, name).detach().clone() for name in LEARNED if getattr(self, name) is not None}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put a :meth:`state` back into the live tensors."""
        with torch.no_grad():
            for name, value in state.items():
                getattr(self, name).copy_(value.to(self.table.device))

    def snapshot(self, encoder: Encoder, outer_step: int, seconds: float | None, history: list[float]) -> DistilledSet:
        """The set as it stands: what the model trains on, its nearest tokens and their text, labels, lrs, inner
        protocol and progress."""
        config, start = self.config, self.start
        with torch.no_grad():
            token_ids = start.token_ids.to(self.table.device).clone()
            if config.learn_inputs:
                token_ids[self.learnable] = nearest_tokens(self.inputs[self.learnable], self.table, self.candidates,
                                                           config.distance)
            # Fixed inputs keep the text they were made from: decoding real tokens need not give it back exactly.
            keep_texts = not config.learn_inputs and start.texts is not None
            lrs = self.lrs().detach().clone()
            attention = self.attention()
            return replace(
                start,
                embeddings=self.inputs_embeds().detach().float(),
                attention_mask=self.mask.clone(),
                labels=self.labels.clone(),
                soft_labels=self.soft_labels().detach().float(),
                inner_lrs=(lrs.squeeze(-1) if lrs.shape[1] == 1 else lrs).float(),
                token_ids=token_ids,
                texts=start.texts if keep_texts else decode_texts(encoder, token_ids, self.mask),
                attention_labels=None if attention is None else attention[1].detach().float(),
                meta={
                    **start.meta,
                    "inner": {"params": config.params, "n_layers": config.n_layers, "optimizer": config.inner_optimizer,
                              "steps": config.inner_steps, "attention": None if self.spec is None else self.spec.to_meta()},
                    "progress": {"outer_step": outer_step, "seconds": seconds},
                    "outer_loss": list(history),
                },
                metrics={},
            )

    def _initial_attention(self, encoder: Encoder) -> torch.Tensor:
        """Learnable attention-label logits: the start set's own labels when it has them for this spec (a resumed
        run), else the pretrained model's attention on the initial inputs."""
        start = self.start
        if start.attention_labels is not None and start.inner.attention == self.spec:
            initial = start.attention_labels.to(self.table.device)
        else:
            with torch.no_grad():
                _, maps = encode_attending(encoder, self.mask, inputs_embeds=self.inputs_embeds())
            initial = select(maps, self.spec)
        return target_logits(initial).requires_grad_(True)
