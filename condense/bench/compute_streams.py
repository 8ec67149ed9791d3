"""The compute experiment's full-data streams: a fresh model trained on shuffled mini-batches of the training split,
timed step by step (test evaluations off the clock) and evaluated at log-spaced steps."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from condense.bench.common import TaskData
from condense.bench.compute_savings import Curve
from condense.eval.protocols import accuracy, finetune_start, shuffled_batches
from condense.models.features import tokenize
from condense.models.heads import fresh_head, head_accuracy, head_optimizer, head_step
from condense.models.encoders import classify, encode
from condense.config.schema import FinetuneRecipe
from condense.config.device import clock


def stream_batches(
    size: int, max_examples: int | None, batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Shuffled mini-batches of training indices, exactly ``max_examples`` of them in all (one epoch when None)."""
    total = size if max_examples is None else max_examples
    batches, taken = [], 0
    for index in shuffled_batches(size, batch_size, generator):
        if taken >= total:
            break
        batches.append(index[: total - taken])
        taken += len(batches[-1])
    return batches


def eval_steps(steps: int, count: int) -> set[int]:
    """About ``count`` log-spaced step numbers in [1, steps], the last always among them."""
    if count <= 1 or steps <= 1:
        return {steps}
    return {max(1, round(steps ** (i / (count - 1)))) for i in range(count)} | {steps}


def timed_curve(
    batches: list[torch.Tensor], train_step: Callable[[torch.Tensor], None], evaluate: Callable[[], float],
    start_accuracy: float, eval_count: int, desc: str, device: torch.device,
) -> Curve:
    """Run ``train_step`` on each batch with the clock on, and ``evaluate`` with it off at log-spaced steps."""
    at = eval_steps(len(batches), eval_count)
    curve: Curve = {"examples": [0], "seconds": [0.0], "accuracy": [start_accuracy]}
    seconds, examples = 0.0, 0
    for step, index in enumerate(tqdm(batches, desc=desc, leave=False), 1):
        started = clock(device)
        train_step(index)
        seconds += clock(device) - started
        examples += len(index)
        if step in at:
            curve["examples"].append(examples)
            curve["seconds"].append(seconds)
            curve["accuracy"].append(evaluate())
    return curve


def head_stream(
    data: TaskData, texts: list[str], seed: int, max_examples: int | None, batch_size: int, lr: float,
    eval_count: int, *, encode_on_the_clock: bool,
) -> dict:
    """A fresh linear head, one Adam step per shuffled mini-batch of the training split.

    With ``encode_on_the_clock`` each batch of raw text is tokenised and encoded by the frozen encoder inside the
    step; without, the step reads the cached training features. Tested on the whole test split's features.
    """
    encoder = data.encoder
    generator = torch.Generator().manual_seed(seed)
    head = fresh_head(encoder.hidden_size, data.task.num_classes, generator, device=encoder.device, dtype=encoder.dtype)
    optimizer = head_optimizer(head, "adam", lr=lr, weight_decay=0.0)

    def train_step(index: torch.Tensor) -> None:
        if encode_on_the_clock:
            tokens = tokenize(encoder, [texts[i] for i in index.tolist()], data.job.task.max_length)
            with torch.no_grad():
                features = encode(encoder, tokens["attention_mask"], input_ids=tokens["input_ids"])
        else:
            features = data.train_features[index]
        head_step(head, optimizer, features, data.train_labels[index])

    test = data.test
    curve = timed_curve(
        stream_batches(len(texts), max_examples, batch_size, generator), train_step,
        lambda: head_accuracy(head, test.features, test.labels), head_accuracy(head, test.features, test.labels),
        eval_count, f"{data.name}: head on the full data ({'raw text' if encode_on_the_clock else 'cached features'})", data.encoder.device,
    )
    return {**curve, "seed": seed}


def finetune_stream(
    data: TaskData, texts: list[str], seed: int, max_examples: int | None, recipe: FinetuneRecipe, eval_count: int,
    pretrained_test_features: torch.Tensor,
) -> dict:
    """The fine-tuning recipe (AdamW on its encoder weights and a fresh head) on streamed raw training text, tested
    on the encoder-test subsample re-encoded with the weights trained so far."""
    encoder = data.encoder
    generator = torch.Generator().manual_seed(seed)
    # The start condense.eval.protocols.finetune trains the distilled set from: the recipe's weights, a fresh head, AdamW.
    params, optimizer = finetune_start(encoder, recipe, data.task.num_classes, generator)
    head = {k: v for k, v in params.items() if k.startswith("head.")}

    def train_step(index: torch.Tensor) -> None:
        tokens = tokenize(encoder, [texts[i] for i in index.tolist()], data.job.task.max_length)
        logits = classify(encoder, tokens["attention_mask"], params, input_ids=tokens["input_ids"])
        loss = F.cross_entropy(logits, data.train_labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # Before any step the weights are the pretrained ones, whose test features need no re-encoding.
    start = head_accuracy(head, pretrained_test_features, data.test.token_labels)
    curve = timed_curve(
        stream_batches(len(texts), max_examples, recipe.batch_size, generator), train_step,
        lambda: accuracy(encoder, params, data.test, trains_encoder=True), start,
        eval_count, f"{data.name}: fine-tuning on the full data", encoder.device,
    )
    return {**curve, "seed": seed}
