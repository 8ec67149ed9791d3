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
distillation cost is paid back (:func:`savings`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tqdm.auto import tqdm

from condense.artifact import DistilledSet
from condense.bench.common import (
    TaskData,
    figure_path,
    embedding_form,
    points,
    section_header,
    studied_set,
    task_data,
    text_form,
)
from condense.evaluate import FinetuneRecipe, TrainingSet, accuracy, finetune, finetune_start, shuffled_batches, summarize
from condense.features import encode_tokens, tokenize
from condense.inner import soft_cross_entropy, unrolled_train
from condense.models import classify, encode, init_head, linear_head
from condense.plots import plt

from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

log = logging.getLogger(__name__)

Curve = dict[str, list[float]]  # "examples", "seconds", "accuracy": one entry per evaluation, the first at 0 examples
FORMS = ("embeddings", "text")


def run(cfg: DictConfig) -> dict:
    """Both regimes on every task of ``cfg.bench.tasks``, for the studied set of each seed of ``cfg.bench.seeds``."""
    tasks = {}
    for entry in cfg.bench.tasks:
        data = task_data(cfg, entry)
        tasks[data.name] = task_compute(cfg, data)
    return {"tasks": tasks}


def task_compute(cfg: DictConfig, data: TaskData) -> dict:
    compute = cfg.bench.compute
    sets = [studied_set(cfg, data, seed) for seed in cfg.bench.seeds]
    for distilled in sets:
        if distilled.meta["inner"]["params"] != "head":
            raise ValueError(
                f"the compute experiment measures the frozen-encoder regime; the studied set of {data.name} trains "
                f"{distilled.meta['inner']['params']!r} (run it with distill=head)"
            )
    texts = list(data.task.train["text"])
    recipe = FinetuneRecipe(**data.cfg.eval.finetune.recipe)
    eval_seed = data.cfg.eval.seed
    log.info("%s: head regime", data.name)
    head = {
        "distilled": distilled_head(data, sets, "embeddings", cfg.bench.n_inits, eval_seed),
        "decoded": distilled_head(data, sets, "text", cfg.bench.n_inits, eval_seed),
        "full_raw_text": [
            head_stream(data, texts, seed, compute.head_max_examples, compute.head_batch_size, compute.head_lr,
                        compute.eval_points, encode_on_the_clock=True)
            for seed in compute.seeds
        ],
        # A whole epoch: from cached features it costs seconds whatever the preset.
        "full_cached_features": [
            head_stream(data, texts, seed, None, compute.head_batch_size, compute.head_lr, compute.eval_points,
                        encode_on_the_clock=False)
            for seed in compute.seeds
        ],
    }
    log.info("%s: fine-tuning regime", data.name)
    with torch.no_grad():
        pretrained_test_features = encode_tokens(data.encoder, data.test.tokens)
    finetuned = {
        "distilled": distilled_finetune(data, sets, recipe, data.cfg.eval.finetune.n_inits, eval_seed),
        "full_raw_text": [
            finetune_stream(data, texts, seed, compute.finetune_max_examples, recipe, compute.finetune_eval_points,
                            pretrained_test_features)
            for seed in compute.seeds
        ],
    }
    distill_seconds = [s.meta["progress"]["seconds"] for s in sets]
    distillation = {
        "seconds": summarize(distill_seconds),
        "outer_steps": [s.meta["progress"]["outer_step"] for s in sets],
        "train_examples": len(texts),
        # Distillation samples real features from the whole training split, so it presupposes that split encoded
        # once; the raw-text streams do not.
        "train_encoding_seconds": train_encoding_seconds(data, texts, compute.encoding_sample),
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


# --- training on the distilled set --------------------------------------------------------------------------


def distilled_training_set(data: TaskData, distilled: DistilledSet, form: str) -> TrainingSet:
    """The set as the model sees it: synthetic input embeddings, or its decoded text tokenised."""
    if form == "embeddings":
        return embedding_form(distilled)
    if form == "text":
        return text_form(data, distilled.texts, distilled.soft_labels, distilled.embeddings.shape[1])
    raise ValueError(f"form must be one of {FORMS}, got {form!r}")


def distilled_head(data: TaskData, sets: list[DistilledSet], form: str, n_inits: int, seed: int) -> dict:
    """Fresh heads trained by each set's learned inner protocol: each model's clock covers preparing and encoding
    the set and the T steps, as :func:`condense.evaluate.learned_protocol` trains them."""
    encoder = data.encoder
    accuracies, seconds = [], []
    for distilled in sets:
        for init in tqdm(range(n_inits), desc=f"{data.name}: heads on the {form} set", leave=False):
            generator = torch.Generator().manual_seed(seed + init)
            head = init_head(encoder.hidden_size, distilled.soft_labels.shape[1], generator, encoder.dtype)
            started = time.perf_counter()
            train = distilled_training_set(data, distilled, form)
            with torch.no_grad():
                features = encode(encoder, train.attention_mask, **train.inputs())
            trained = unrolled_train(
                {k: v.requires_grad_(True) for k, v in head.items()},
                lambda p: soft_cross_entropy(linear_head(features, p), train.soft_labels),
                distilled.inner_lrs, distilled.meta["inner"]["optimizer"], create_graph=False,
            )
            seconds.append(time.perf_counter() - started)
            accuracies.append(accuracy(encoder, trained, data.test, trains_encoder=False))
    size, steps = len(sets[0].soft_labels), len(sets[0].inner_lrs)
    return {
        "accuracy": summarize(accuracies),
        "seconds": summarize(seconds),
        "examples": size * steps,  # every step is a full batch of the set
        "encoder_passes": size,  # the encoder is frozen: the set is encoded once per model
    }


def finetune_examples(size: int, recipe: FinetuneRecipe) -> int:
    """Examples :func:`condense.evaluate.finetune` processes on a set of ``size``: its steps' batches, repeats
    counted."""
    steps = max(recipe.min_steps, recipe.epochs * math.ceil(size / recipe.batch_size))
    per_epoch = [min(recipe.batch_size, size - start) for start in range(0, size, recipe.batch_size)]
    return sum(per_epoch) * (steps // len(per_epoch)) + sum(per_epoch[: steps % len(per_epoch)])


def distilled_finetune(
    data: TaskData, sets: list[DistilledSet], recipe: FinetuneRecipe, n_inits: int, seed: int
) -> dict:
    """The fine-tuning recipe on the distilled set (embedding form), timed; tested on the encoder-test subsample."""
    accuracies, seconds = [], []
    for distilled in sets:
        train = distilled_training_set(data, distilled, "embeddings")
        for init in tqdm(range(n_inits), desc=f"{data.name}: fine-tuning on the distilled set", leave=False):
            started = time.perf_counter()
            trained = finetune(data.encoder, train, recipe, torch.Generator().manual_seed(seed + init))
            seconds.append(time.perf_counter() - started)
            accuracies.append(accuracy(data.encoder, trained, data.test, trains_encoder=True))
    size = len(sets[0].soft_labels)
    return {
        "accuracy": summarize(accuracies),
        "seconds": summarize(seconds),
        "examples": finetune_examples(size, recipe),
        "encoder_passes": finetune_examples(size, recipe),  # the encoder trains: every step runs it
    }


def train_encoding_seconds(data: TaskData, texts: list[str], sample: int | None) -> float:
    """Seconds to encode the whole training split as the feature cache does (tokenised, length-sorted batches),
    extrapolated from a fixed random sample of ``sample`` texts (all when None)."""
    keep = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))[:sample].tolist()
    started = time.perf_counter()
    encode_tokens(data.encoder, tokenize(data.encoder, [texts[i] for i in keep], data.cfg.task.max_length))
    return (time.perf_counter() - started) * len(texts) / len(keep)


# --- training on the full data ------------------------------------------------------------------------------


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
    start_accuracy: float, eval_count: int, desc: str,
) -> Curve:
    """Run ``train_step`` on each batch with the clock on, and ``evaluate`` with it off at log-spaced steps."""
    at = eval_steps(len(batches), eval_count)
    curve: Curve = {"examples": [0], "seconds": [0.0], "accuracy": [start_accuracy]}
    seconds, examples = 0.0, 0
    for step, index in enumerate(tqdm(batches, desc=desc, leave=False), 1):
        started = time.perf_counter()
        train_step(index)
        seconds += time.perf_counter() - started
        examples += len(index)
        if step in at:
            curve["examples"].append(examples)
            curve["seconds"].append(seconds)
            curve["accuracy"].append(evaluate())
    return curve


def head_accuracy(head: dict[str, torch.Tensor], features: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (linear_head(features, head).argmax(-1) == labels).float().mean().item()


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
    head = init_head(encoder.hidden_size, data.task.num_classes, generator, encoder.dtype)
    head = {k: v.requires_grad_(True) for k, v in head.items()}
    optimizer = torch.optim.Adam(list(head.values()), lr=lr)

    def train_step(index: torch.Tensor) -> None:
        if encode_on_the_clock:
            tokens = tokenize(encoder, [texts[i] for i in index.tolist()], data.cfg.task.max_length)
            with torch.no_grad():
                features = encode(encoder, tokens["attention_mask"], input_ids=tokens["input_ids"])
        else:
            features = data.train_features[index]
        loss = F.cross_entropy(linear_head(features, head), data.train_labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    test = data.test
    curve = timed_curve(
        stream_batches(len(texts), max_examples, batch_size, generator), train_step,
        lambda: head_accuracy(head, test.features, test.labels), head_accuracy(head, test.features, test.labels),
        eval_count, f"{data.name}: head on the full data ({'raw text' if encode_on_the_clock else 'cached features'})",
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
    # The start condense.evaluate.finetune trains the distilled set from: the recipe's weights, a fresh head, AdamW.
    params, optimizer = finetune_start(encoder, recipe, data.task.num_classes, generator)
    head = {k: v for k, v in params.items() if k.startswith("head.")}

    def train_step(index: torch.Tensor) -> None:
        tokens = tokenize(encoder, [texts[i] for i in index.tolist()], data.cfg.task.max_length)
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
        eval_count, f"{data.name}: fine-tuning on the full data",
    )
    return {**curve, "seed": seed}


# --- what the distilled set saves ---------------------------------------------------------------------------


def time_to_accuracy(curve: Curve, target: float) -> dict[str, float] | None:
    """Seconds and examples at which ``curve`` first reaches ``target``, linearly interpolated from the point
    before; None when it never does."""
    accuracy_, seconds, examples = curve["accuracy"], curve["seconds"], curve["examples"]
    for i, reached in enumerate(accuracy_):
        if reached >= target:
            if i == 0:
                return {"seconds": seconds[0], "examples": examples[0]}
            share = (target - accuracy_[i - 1]) / (reached - accuracy_[i - 1])
            return {
                "seconds": seconds[i - 1] + share * (seconds[i] - seconds[i - 1]),
                "examples": examples[i - 1] + share * (examples[i] - examples[i - 1]),
            }
    return None


def break_even(cost_seconds: float, full_seconds: float, distilled_seconds: float) -> int | None:
    """Trainings on the set after which its one-off cost is paid back; None when each saves nothing."""
    saved = full_seconds - distilled_seconds
    return math.ceil(cost_seconds / saved) if saved > 0 else None


def savings(curves: list[Curve], distilled: dict, cost_seconds: float) -> dict:
    """Full-data training (one curve per seed) against training on the set, to the set's mean accuracy.

    ``distilled`` has the set's ``accuracy`` and ``seconds`` summaries and its ``examples`` processed;
    ``cost_seconds`` is what making the set cost. When no curve reaches the set's accuracy, full-data training
    takes longer than its whole stream, which bounds the break-even from above.
    """
    target, seconds = distilled["accuracy"]["mean"], distilled["seconds"]["mean"]
    reached = [hit for curve in curves if (hit := time_to_accuracy(curve, target)) is not None]
    result: dict = {"target": target, "cost_seconds": cost_seconds, "seeds": len(curves), "reached": len(reached)}
    if not reached:
        stream = statistics.fmean(curve["seconds"][-1] for curve in curves)
        bound = break_even(cost_seconds, stream, seconds)
        return {**result, "seconds": None, "examples": None, "speedup": None, "examples_ratio": None,
                "break_even": None, "break_even_per_seed": [], "break_even_at_most": bound}
    full = [hit["seconds"] for hit in reached]
    return {
        **result,
        "seconds": summarize(full),
        "examples": summarize([hit["examples"] for hit in reached]),
        "speedup": summarize([s / seconds for s in full]),
        "examples_ratio": summarize([hit["examples"] / distilled["examples"] for hit in reached]),
        "break_even": break_even(cost_seconds, statistics.fmean(full), seconds),
        "break_even_per_seed": [break_even(cost_seconds, s, seconds) for s in full],
        "break_even_at_most": None,
    }


# --- report -------------------------------------------------------------------------------------------------

def regime_title(regime: str, task: dict) -> str:
    if regime == "head":
        return "frozen encoder + linear head"
    recipe = task["finetune_recipe"]
    weights = "all weights" if recipe["params"] == "all" else f"the last {recipe['n_layers']} layer(s)"
    return f"fine-tuning {weights} (AdamW)"


SET_NAMES = {
    "distilled": "distilled (embeddings)",
    "decoded": "distilled, decoded text",
    "full_raw_text": "full data, raw text streamed",
    "full_cached_features": "full data, cached features",
}


def duration(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 1 else f"{seconds:.1f}" if seconds < 100 else f"{seconds:,.0f}"


def seconds_text(entry: dict | None) -> str:
    if entry is None:
        return "—"
    digits = 3 if entry["mean"] < 1 else 1
    return f"{entry['mean']:,.{digits}f} ± {entry['std']:,.{digits}f}"


def ratio_text(entry: dict | None) -> str:
    if entry is None:
        return "—"
    digits = 0 if entry["mean"] >= 10 else 2
    return f"{entry['mean']:,.{digits}f}× ± {entry['std']:,.{digits}f}"


def curve_summary(curves: list[Curve]) -> dict:
    """Mean and std over seeds at each evaluation (the seeds share the schedule)."""
    def stats(key: str) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([curve[key] for curve in curves], dtype=float)
        return values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])

    (accuracy_, accuracy_std), (seconds, seconds_std) = stats("accuracy"), stats("seconds")
    return {"examples": np.array(curves[0]["examples"]), "accuracy": accuracy_, "accuracy_std": accuracy_std,
            "seconds": seconds, "seconds_std": seconds_std}


def break_even_text(entry: dict) -> str:
    if entry["break_even"] is not None:
        return f"{entry['break_even']:,}"
    if entry["seconds"] is not None:
        return "never (no time saved)"
    if entry["break_even_at_most"] is not None:
        return f"≤ {entry['break_even_at_most']:,} (not reached within the stream)"
    return "never within the stream"


def payback(entry: dict) -> str:
    """The break-even as the end of a sentence about the set's cost."""
    if entry["break_even"] is not None:
        return f"is paid back after {entry['break_even']:,} trainings on the set"
    if entry["seconds"] is not None:
        return "is never paid back: training on the set is no faster"
    if entry["break_even_at_most"] is not None:
        return (f"is paid back after at most {entry['break_even_at_most']:,} trainings on the set (full-data training "
                "had not reached the set's accuracy by the end of its stream)")
    return "cannot be weighed: full-data training had not reached the set's accuracy by the end of its stream"


def usage_table(task: dict) -> list[str]:
    lines = ["| regime | set | accuracy (%) | wall seconds | examples processed |", "|---|---|---:|---:|---:|"]
    for regime in ("head", "finetune"):
        for name, entry in task[regime].items():
            if isinstance(entry, list):  # full-data curves: where the whole stream ends
                end = {key: summarize([curve[key][-1] for curve in entry]) for key in ("accuracy", "seconds")}
                label = f"{SET_NAMES[name]} (whole stream, {len(entry)} seeds)"
                examples = entry[0]["examples"][-1]
            else:
                end, label, examples = entry, SET_NAMES[name], entry["examples"]
            lines.append(
                f"| {regime} | {label} | {points(end['accuracy'])} | {seconds_text(end['seconds'])} | {examples:,} |"
            )
    return lines


def savings_table(task: dict) -> list[str]:
    lines = [
        "| regime | set | against | seeds reaching the set's accuracy | full-data seconds to it | speed-up "
        "| examples to it | examples ratio | break-even (trainings) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for regime, by_set in task["savings"].items():
        for name, by_baseline in by_set.items():
            for baseline, entry in by_baseline.items():
                examples = "—" if entry["examples"] is None else (
                    f"{entry['examples']['mean']:,.0f} ± {entry['examples']['std']:,.0f}")
                lines.append(
                    f"| {regime} | {SET_NAMES[name]}: {100 * entry['target']:.1f}% | {SET_NAMES[baseline]} "
                    f"| {entry['reached']}/{entry['seeds']} | {seconds_text(entry['seconds'])} "
                    f"| {ratio_text(entry['speedup'])} "
                    f"| {examples} | {ratio_text(entry['examples_ratio'])} | {break_even_text(entry)} |"
                )
    return lines


def reading(task: dict) -> list[str]:
    """What the tables mean, in sentences; every number is read from the results."""
    distillation = task["distillation"]
    cost = (f"{duration(distillation['seconds']['mean'])} s of distillation plus "
            f"~{duration(distillation['train_encoding_seconds'])} s encoding the {task['train_examples']:,} "
            "training texts once")
    raw = task["savings"]["head"]["distilled"]["full_raw_text"]
    cached = task["savings"]["head"]["distilled"]["full_cached_features"]
    distilled = task["head"]["distilled"]
    lines = [f"Frozen encoder: a head trains on the distilled set in {seconds_text(distilled['seconds'])} s"]
    if raw["seconds"] is not None:
        lines[0] += (f", while streaming raw training text to the same accuracy takes {seconds_text(raw['seconds'])} s "
                     f"({ratio_text(raw['speedup'])} faster)")
    lines[0] += f"; making the set ({cost}) {payback(raw)}."
    if cached["seconds"] is None:
        verdict = f"does not reach the set's accuracy within one epoch; against it, distilling {payback(cached)}"
    else:
        verdict = (f"reaches the set's accuracy in {seconds_text(cached['seconds'])} s; against that, distilling "
                   f"({duration(cached['cost_seconds'])} s) {payback(cached)}")
    lines.append(
        "Those savings apply to training from raw text. Once the training features are cached, as distillation "
        f"needs them anyway, a head trained on all of them {verdict}."
    )
    tuned = task["savings"]["finetune"]["distilled"]["full_raw_text"]
    finetuned = task["finetune"]["distilled"]
    title = regime_title("finetune", task)
    lines.append(
        f"{title[0].upper() + title[1:]}: the recipe on the distilled set reaches {points(finetuned['accuracy'])}% "
        f"in {seconds_text(finetuned['seconds'])} s"
        + ("" if tuned["seconds"] is None else f", the recipe on streamed full data {seconds_text(tuned['seconds'])} s")
        + f"; there making the set {payback(tuned)}."
    )
    return lines


def draw(task_name: str, task: dict, path: Path) -> None:
    """Accuracy against training seconds per regime: full-data curves (mean ± std over seeds) and the sets' points."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    colours = {
        "full_raw_text": "tab:blue", "full_cached_features": "tab:green",
        "distilled": "tab:red", "decoded": "tab:orange",
    }
    distill_seconds = task["distillation"]["seconds"]["mean"]
    for ax, regime in zip(axes, ("head", "finetune")):
        for name, entry in task[regime].items():
            if isinstance(entry, list):
                curve = curve_summary(entry)
                # Log time axis: the point at 0 examples (the untrained model) has no place on it.
                x, y, band = curve["seconds"][1:], 100 * curve["accuracy"][1:], 100 * curve["accuracy_std"][1:]
                ax.plot(x, y, marker=".", color=colours[name],
                        label=f"{SET_NAMES[name]} (mean of {len(entry)} seeds)")
                ax.fill_between(x, y - band, y + band, color=colours[name], alpha=0.2, lw=0)
            else:
                ax.errorbar(entry["seconds"]["mean"], 100 * entry["accuracy"]["mean"], xerr=entry["seconds"]["std"],
                            yerr=100 * entry["accuracy"]["std"], capsize=4, color=colours[name],
                            # Hollow diamonds for the decoded text, which often sits exactly on the embedding form.
                            fmt="D" if name == "decoded" else "o", ms=9 if name == "decoded" else 6,
                            mfc="none" if name == "decoded" else colours[name],
                            label=f"{SET_NAMES[name]} ({entry['examples']:,} examples processed)")
                ax.axhline(100 * entry["accuracy"]["mean"], color=colours[name], ls=":", lw=1)
        ax.axvline(distill_seconds, color="grey", ls="--", lw=1,
                   label=f"distillation, one-off ({duration(distill_seconds)} s)")
        ax.set_xscale("log")
        # Plain-number ticks, at 1-2-5 on a short axis so that one spanning under a decade still gets labels.
        low, high = ax.get_xlim()
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if math.log10(high / low) > 2 else (1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("wall-clock training seconds (log scale; test evaluation excluded)")
        ax.set_ylabel("test accuracy (%)" + (" on the encoder-test subsample" if regime == "finetune" else ""))
        ax.set_title(f"{task_name}: {regime_title(regime, task)}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)


def report(results: dict, figures: Path) -> list[str]:
    """The compute-saved section of ``docs/results.md``, with one figure per task drawn into ``figures``."""
    figures.mkdir(parents=True, exist_ok=True)
    lines = section_header(results, "Compute saved")
    lines += [
        "Training on the distilled set against training on the full data, in two regimes: the set's own (frozen "
        "encoder, fresh linear head, the learned inner protocol) and the standard fine-tuning recipe (AdamW on the "
        "encoder weights too). Wall seconds are training only (test evaluation off the clock), mean ± std over "
        "fresh models (of every distillation seed) for the sets and over seeds for the full-data streams; examples "
        "processed count every example in every training step. Full-data streams tokenise and encode raw text "
        "inside each step, as when nothing is cached; the cached-features stream reads the frozen features "
        "distillation already needed. Break-even is the number of trainings on the set after which its cost is paid "
        "back: distillation seconds plus encoding the training split once against raw-text streams, distillation "
        "seconds alone against cached features.",
        "",
    ]
    for name, task in results["tasks"].items():
        distillation = task["distillation"]
        path = figure_path(results, figures, f"_{name}")
        draw(name, task, path)
        lines += [
            f"### {name}",
            "",
            *usage_table(task),
            "",
            f"Distillation: {seconds_text(distillation['seconds'])} s for "
            f"{', '.join(map(str, distillation['outer_steps']))} outer steps (per distillation seed), plus "
            f"~{duration(distillation['train_encoding_seconds'])} s to encode the {task['train_examples']:,} "
            f"training texts once (timed on {distillation['encoding_sample']:,} of them). Head accuracy is on the "
            f"whole test split ({task['test_examples']['head']:,} examples), fine-tuned accuracy on the fixed "
            f"encoder-test subsample ({task['test_examples']['finetune']:,}).",
            "",
            *savings_table(task),
            "",
            *reading(task),
            "",
            f"![Compute saved on {name}: accuracy against training seconds](figures/{path.name})",
            "",
        ]
    return lines
