"""The continual model: the pretrained encoder's top ``trainable_layers`` blocks plus linear heads, on dict
mini-batches of hidden states (see :mod:`condense.continual.data`), and its loss and accuracy on examples.

The blocks below stay frozen, so examples enter as the hidden states those blocks produce, computed once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from condense.continual.data import ExampleRows, Examples, LabelLayout, collate
from condense.models.encoders import Encoder, pool, top_blocks

# Logit of a class outside the example's task (task scenario): the softmax gives it no mass, and, unlike -inf,
# a zero target times its log-probability is 0 rather than nan.
OUTSIDE_TASK = -1e4


class Pooling(nn.Module):
    """Token states to one vector per example; a module of its own so feature-based buffers can hook it."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool(hidden_states, attention_mask, self.mode)


class ContinualClassifier(nn.Module):
    """The encoder's top blocks, pooling and the layout's heads, called on a dict mini-batch; on the encoder's device."""

    def __init__(self, encoder: Encoder, trainable_layers: int, layout: LabelLayout):
        super().__init__()
        self.blocks = top_blocks(encoder, trainable_layers)
        self.pool = Pooling(encoder.pooling)
        sizes = layout.num_classes if layout.per_task_heads else [layout.width]
        # Initialised where the CPU generator draws them, then moved: a seed gives the same heads on every device.
        self.heads = nn.ModuleList(nn.Linear(encoder.hidden_size, size) for size in sizes).to(encoder.device)
        self.width = layout.width
        self.per_task = layout.per_task_heads

    def forward(self, batch) -> torch.Tensor:
        return self.classify(self.features(batch), batch["task_ids"])

    def features(self, batch) -> torch.Tensor:
        """The pooled output of the trained blocks: what the heads see."""
        mask = batch["attention_mask"]
        return self.pool(self.blocks(inputs_embeds=batch["hidden_states"], attention_mask=mask).last_hidden_state, mask)

    def classify(self, features: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """The heads' logits in the layout's width (a task's own head for each row when heads are per task)."""
        if not self.per_task:
            return self.heads[0](features)
        logits = features.new_full((len(features), self.width), OUTSIDE_TASK)
        for task, head in enumerate(self.heads):
            rows = task_ids == task
            if rows.any():
                logits[rows, : head.out_features] = head(features[rows])
        return logits


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, rows: Sequence, batch_size: int = 128) -> tuple[float, float]:
    """Mean cross-entropy against the target rows, and accuracy, of ``model`` on ``(inputs, target, task)`` rows."""
    training = model.training
    model.eval()
    device = model_device(model)
    loss, correct = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch, targets, _ = collate(rows[start : start + batch_size])
        batch, targets = batch.to(device), targets.to(device)
        logits = model(batch)
        loss += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(1) == targets.argmax(1)).sum())
    model.train(training)
    return loss / len(rows), correct / len(rows)


def accuracy(model: nn.Module, examples: Examples) -> float:
    dataset = ExampleRows(examples)
    return loss_and_accuracy(model, [(*dataset[i], 0) for i in range(len(dataset))])[1]
