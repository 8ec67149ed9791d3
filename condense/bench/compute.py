"""Compute saved: training on the distilled set against training on the full data, and when distilling pays off.

Two training regimes, each measured in wall seconds (``time.perf_counter``; test evaluations are off the clock)
and in examples processed (an example through one training step's forward pass, repeats counted):

* ``head``, the studied set's own regime: a frozen encoder and a fresh linear head. The distilled set is encoded
  (embedding form, ``inputs_embeds``; or its decoded text, tokenised) and trained on with its learned inner
  protocol. The full data is streamed as raw text in shuffled mini-batches, each tokenised and encoded on the
  clock, which is what an example costs when nothing is cached, for one Adam step of a fresh head. Distillation
  itself needs the features of the whole training split, and once those are cached a head trains on all of them
  in seconds: that variant is measured too, and the savings against it are reported apart.
* ``finetune``: the standard fine-tuning recipe (AdamW on the recipe's encoder weights, all by default) on the
  distilled set, against the same recipe on the streamed full data.

From the full-data curves (one per seed of ``bench.compute.seeds``) follow the time full-data training takes to
reach the distilled set's accuracy, the speed-up, and the number of trainings on the set (reuses) after which its
distillation cost is paid back (:func:`condense.bench.compute_savings.savings`). This module trains on the distilled
sets; ``compute_streams`` trains on the full data, ``compute_report`` writes the section of ``docs/results.md``.

Every measurement (a set's models in one form, a stream of one seed, the encoding sample) is a cell keyed by this
machine (:func:`condense.report.tables.machine`) as well: an interrupted run resumes with the timings it had measured,
and timings are never reused from another machine or thread count.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math

import torch
from tqdm.auto import tqdm

from condense.artifact.distilled_set import DistilledSet
from condense.bench.common import TaskData, cell, studied_set, task_data, training_form
from condense.bench.compute_savings import savings
from condense.bench.compute_streams import finetune_stream, head_stream
from condense.cache import to_jsonable
from condense.eval.protocols import accuracy, finetune
from condense.models.features import encode_tokens, tokenize
from condense.models.heads import fresh_head
from condense.distill.inner import unrolled_train
from condense.models.heads import soft_cross_entropy
from condense.models.encoders import encode, linear_head
from condense.report.tables import machine, summarize_values
from condense.config.schema import FinetuneRecipe
from condense.config.bench import BenchJob, ComputeBench
from condense.config.device import clock

log = logging.getLogger(__name__)


def run(job: BenchJob) -> dict:
    """Both regimes on every task of ``job.bench.tasks``, for the studied set of each seed of ``job.bench.seeds``."""
    tasks = {}
    for entry in job.bench.tasks:
        data = task_data(job, entry)
        tasks[data.name] = task_compute(job, data)
    return {"tasks": tasks}


def task_compute(job: BenchJob, data: TaskData) -> dict:
    compute = job.bench.compute
    sets = [studied_set(job, data, seed) for seed in job.bench.seeds]
    for distilled in sets:
        if distilled.inner.params != "head":
            raise ValueError(
                f"the compute experiment measures the frozen-encoder regime; the studied set of {data.name} trains "
                f"{distilled.meta['inner']['params']!r} (run it with distill=head)"
            )
    texts = list(data.task.train["text"])
    recipe = data.job.eval.finetune.recipe
    eval_seed = data.job.eval.seed
    log.info("%s: head regime", data.name)
    head = {
        "distilled": distilled_head(data, sets, "embedding", job.bench.n_inits, eval_seed),
        "decoded": distilled_head(data, sets, "text", job.bench.n_inits, eval_seed),
        "full_raw_text": head_streams(data, texts, compute, raw_text=True),
        # A whole epoch: from cached features it costs seconds whatever the preset.
        "full_cached_features": head_streams(data, texts, compute, raw_text=False),
    }
    log.info("%s: fine-tuning regime", data.name)

    @functools.cache  # only when a stream is measured now: a resumed run may need none
    def pretrained_test_features() -> torch.Tensor:
        with torch.no_grad():
            return encode_tokens(data.encoder, data.test.tokens)

    finetuned = {
        "distilled": distilled_finetune(data, sets, recipe, data.job.eval.finetune.n_inits, eval_seed),
        "full_raw_text": [
            measured(data, "fine-tuning stream", lambda seed=seed: finetune_stream(
                data, texts, seed, compute.finetune_max_examples, recipe, compute.finetune_eval_points,
                pretrained_test_features()),
                seed=seed, max_examples=compute.finetune_max_examples, recipe=to_jsonable(recipe),
                eval_points=compute.finetune_eval_points)
            for seed in compute.seeds
        ],
    }
    distill_seconds = [s.progress.seconds for s in sets]
    distillation = {
        "seconds": summarize_values(distill_seconds),
        "outer_steps": [s.progress.outer_step for s in sets],
        "train_examples": len(texts),
        # Distillation samples real features from the whole training split, so it presupposes that split encoded
        # once; the raw-text streams do not.
        "train_encoding_seconds": measured(data, "train encoding", lambda: train_encoding_seconds(
            data, texts, compute.encoding_sample), sample=compute.encoding_sample),
        "encoding_sample": min(len(texts), compute.encoding_sample or len(texts)),
    }
    with_encoding = distillation["seconds"]["mean"] + distillation["train_encoding_seconds"]
    derived = {
        "head": {
            form: {
                "full_raw_text": savings(head["full_raw_text"], head[form], with_encoding),
                "full_cached_features": savings(
                    head["full_cached_features"], head[form], distillation["seconds"]["mean"]
                ),
            }
            for form in ("distilled", "decoded")
        },
        "finetune": {
            "distilled": {"full_raw_text": savings(finetuned["full_raw_text"], finetuned["distilled"], with_encoding)},
        },
    }
    return {
        "train_examples": len(texts),
        "test_examples": {"head": len(data.test.labels), "finetune": len(data.test.token_labels)},
        "finetune_recipe": dataclasses.asdict(recipe),
        "head": head,
        "finetune": finetuned,
        "distillation": distillation,
        "savings": derived,
    }


def measured(data: TaskData, name: str, measure, **key):
    """``measure()`` as a cell keyed by ``key`` and this machine: a timing is reused only where it was measured."""
    return cell(data, {"experiment": "compute", "measurement": name, "machine": machine(), **key}, measure)


def head_streams(data: TaskData, texts: list[str], settings: ComputeBench, raw_text: bool) -> list[dict]:
    """A full-data head stream per seed of ``bench.compute.seeds``: raw text encoded on the clock (up to
    ``head_max_examples``), or a whole epoch of the cached features."""
    max_examples = settings.head_max_examples if raw_text else None
    args = {"batch_size": settings.head_batch_size, "lr": settings.head_lr, "eval_count": settings.eval_points,
            "encode_on_the_clock": raw_text}
    return [measured(data, "head stream", lambda seed=seed: head_stream(data, texts, seed, max_examples, **args),
                     seed=seed, max_examples=max_examples, **args)
            for seed in settings.seeds]


# --- training on the distilled set --------------------------------------------------------------------------


def distilled_head(data: TaskData, sets: list[DistilledSet], form: str, n_inits: int, seed: int) -> dict:
    """Fresh heads trained by each set's learned inner protocol: each model's clock covers preparing and encoding
    the set and the T steps, as :func:`condense.eval.protocols.learned_protocol` trains them."""
    runs = [measured(data, "heads on a distilled set",
                     lambda distilled=distilled: _distilled_heads(data, distilled, form, n_inits, seed),
                     distill=distilled.meta["config"]["distill"], form=form, n_inits=n_inits, seed=seed)
            for distilled in sets]
    size, steps = len(sets[0].soft_labels), len(sets[0].inner_lrs)
    return {
        "accuracy": summarize_values([a for run in runs for a in run["accuracy"]]),
        "seconds": summarize_values([t for run in runs for t in run["seconds"]]),
        "examples": size * steps,  # every step is a full batch of the set
        "encoder_passes": size,  # the encoder is frozen: the set is encoded once per model
    }


def _distilled_heads(data: TaskData, distilled: DistilledSet, form: str, n_inits: int, seed: int) -> dict[str, list[float]]:
    encoder = data.encoder
    accuracies, seconds = [], []
    for init in tqdm(range(n_inits), desc=f"{data.name}: heads on the {form} set", leave=False):
        head = fresh_head(encoder.hidden_size, distilled.soft_labels.shape[1], torch.Generator().manual_seed(seed + init),
                          device=encoder.device, dtype=encoder.dtype)
        started = clock(encoder.device)
        train = training_form(data, distilled, form)
        with torch.no_grad():
            features = encode(encoder, train.attention_mask, **train.inputs())
        trained = unrolled_train(
            head,
            lambda p: soft_cross_entropy(linear_head(features, p), train.soft_labels),
            distilled.inner.lrs, distilled.inner.optimizer, create_graph=False,
        )
        seconds.append(clock(encoder.device) - started)
        accuracies.append(accuracy(encoder, trained, data.test, trains_encoder=False))
    return {"accuracy": accuracies, "seconds": seconds}


def finetune_examples(size: int, recipe: FinetuneRecipe) -> int:
    """Examples :func:`condense.eval.protocols.finetune` processes on a set of ``size``: its steps' batches, repeats
    counted."""
    steps = max(recipe.min_steps, recipe.epochs * math.ceil(size / recipe.batch_size))
    per_epoch = [min(recipe.batch_size, size - start) for start in range(0, size, recipe.batch_size)]
    return sum(per_epoch) * (steps // len(per_epoch)) + sum(per_epoch[: steps % len(per_epoch)])


def distilled_finetune(
    data: TaskData, sets: list[DistilledSet], recipe: FinetuneRecipe, n_inits: int, seed: int
) -> dict:
    """The fine-tuning recipe on the distilled set (embedding form), timed; tested on the encoder-test subsample."""
    runs = [measured(data, "fine-tuning on a distilled set",
                     lambda distilled=distilled: _distilled_finetunes(data, distilled, recipe, n_inits, seed),
                     distill=distilled.meta["config"]["distill"], recipe=to_jsonable(recipe), n_inits=n_inits, seed=seed)
            for distilled in sets]
    size = len(sets[0].soft_labels)
    return {
        "accuracy": summarize_values([a for run in runs for a in run["accuracy"]]),
        "seconds": summarize_values([t for run in runs for t in run["seconds"]]),
        "examples": finetune_examples(size, recipe),
        "encoder_passes": finetune_examples(size, recipe),  # the encoder trains: every step runs it
    }


def _distilled_finetunes(data: TaskData, distilled: DistilledSet, recipe: FinetuneRecipe, n_inits: int, seed: int) -> dict:
    accuracies, seconds = [], []
    train = training_form(data, distilled, "embedding")
    for init in tqdm(range(n_inits), desc=f"{data.name}: fine-tuning on the distilled set", leave=False):
        started = clock(data.encoder.device)
        trained = finetune(data.encoder, train, recipe, torch.Generator().manual_seed(seed + init))
        seconds.append(clock(data.encoder.device) - started)
        accuracies.append(accuracy(data.encoder, trained, data.test, trains_encoder=True))
    return {"accuracy": accuracies, "seconds": seconds}


def train_encoding_seconds(data: TaskData, texts: list[str], sample: int | None) -> float:
    """Seconds to encode the whole training split as the feature cache does (tokenised, length-sorted batches),
    extrapolated from a fixed random sample of ``sample`` texts (all when None)."""
    keep = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))[:sample].tolist()
    started = clock(data.encoder.device)
    encode_tokens(data.encoder, tokenize(data.encoder, [texts[i] for i in keep], data.job.task.max_length))
    return (clock(data.encoder.device) - started) * len(texts) / len(keep)
