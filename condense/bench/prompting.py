"""Few-shot prompting: do distilled texts make better in-context examples than real ones?

A small instruction-tuned language model (SmolLM2-135M-Instruct by default) classifies a fixed test sample by
the log-probability of each label word, given a prompt of (a) the studied set's decoded texts with their classes,
(b) random real training examples, the same number per class, or (c) no examples (zero-shot). The few-shot
prompts run once per ordering seed, which shuffles the examples and draws the random ones, so their spread is
over orderings; the zero-shot prompt is deterministic and runs once. Distilled and random runs with the same seed
are paired, and their difference by seed says which wins. Each prompt's accuracy is a cell, keyed by the prompt
and the queries themselves: an interrupted run resumes after the last prompt it finished.
"""

from __future__ import annotations

import logging
import math

import torch
from tqdm.auto import tqdm

from condense.bench.common import TaskData, cell, studied_set, task_data
from condense.bench.prompting_report import CONDITIONS
from condense.config.device import resolve_device
from condense.data.sampling import fixed_subsample
from condense.eval.prompting import (
    classify,
    count_tokens,
    instruction,
    label_words,
    load_causal_lm,
    prompt_prefix,
    render_query,
    truncate,
)
from condense.report.tables import summarize_values
from condense.report.tables import verdict as noise_rule
from condense.config.bench import BenchJob

log = logging.getLogger(__name__)


def shuffled(examples: list[tuple[str, int]], generator: torch.Generator) -> list[tuple[str, int]]:
    return [examples[i] for i in torch.randperm(len(examples), generator=generator)]


def distilled_examples(distilled_set_, ordering: int) -> list[tuple[str, int]]:
    """The set's decoded texts with the class each was made for, shuffled with seed ``ordering``."""
    if distilled_set_.texts is None:
        raise ValueError("the studied set has no decoded texts to put in a prompt")
    examples = list(zip(distilled_set_.texts, distilled_set_.labels.tolist()))
    return shuffled(examples, torch.Generator().manual_seed(ordering))


def random_examples(data: TaskData, per_class: list[int], ordering: int) -> list[tuple[str, int]]:
    """``per_class[c]`` random training texts of each class c, drawn and shuffled with seed ``ordering``."""
    generator = torch.Generator().manual_seed(ordering)
    chosen = []
    for label, count in enumerate(per_class):
        rows = (data.train_labels == label).nonzero().squeeze(1)
        chosen += rows[torch.randperm(len(rows), generator=generator)[:count]].tolist()
    texts = data.task.train.select(chosen)["text"]
    return shuffled(list(zip(texts, data.train_labels[chosen].tolist())), generator)


def prompt_examples(job: BenchJob, data: TaskData) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """Every run's ``(condition, ordering, examples)``: zero-shot once, then a distilled and a random prompt per
    ordering; ordering o studies the set of distillation seed ``bench.seeds[o % len(bench.seeds)]``."""
    seeds = job.bench.seeds
    orderings = range(job.bench.prompting.orderings)
    sets = {seed: studied_set(job, data, seed) for seed in dict.fromkeys(seeds[o % len(seeds)] for o in orderings)}
    jobs = [("none", 0, [])]
    for ordering in orderings:
        studied = sets[seeds[ordering % len(seeds)]]
        per_class = torch.bincount(studied.labels, minlength=data.task.num_classes).tolist()
        jobs += [("distilled", ordering, distilled_examples(studied, ordering)),
                 ("random", ordering, random_examples(data, per_class, ordering))]
    return jobs


def prompt_runs(job: BenchJob, data: TaskData, model, tokenizer) -> dict:
    """Accuracy, prompt length and prompt text of every run on one task: {condition: [run per ordering]}."""
    settings = job.bench.prompting
    words = label_words(data.task.label_names)
    line = instruction(words)
    rows = fixed_subsample(len(data.task.test), settings.test_examples).tolist()
    test = data.task.test.select(rows)
    queries = [render_query(truncate(tokenizer, text, settings.max_query_tokens)) for text in test["text"]]
    labels = torch.tensor(test["label"])
    runs: dict[str, list[dict]] = {name: [] for name in CONDITIONS}
    key = {"experiment": "prompting", "lm": settings.model, "queries": queries, "labels": labels, "words": words,
           "batch_size": settings.batch_size}
    bar = tqdm(prompt_examples(job, data), desc=f"prompting {data.name}: {len(queries)} test examples per prompt")
    for condition, ordering, examples in bar:
        prompt = prompt_prefix(line, [(truncate(tokenizer, text, settings.max_example_tokens), words[label])
                                      for text, label in examples])
        accuracy = cell(data, {**key, "prompt": prompt}, lambda: (
            classify(model, tokenizer, prompt, queries, words, settings.batch_size) == labels).float().mean().item())
        runs[condition].append({"ordering": ordering, "accuracy": accuracy,
                                "prompt_tokens": count_tokens(tokenizer, prompt), "prompt": prompt})
        bar.set_postfix_str(f"{condition} #{ordering}: {100 * accuracy:.1f}%")
        log.info("%s, %s prompt, ordering %d: accuracy %.1f%% (%d prompt tokens)", data.name, condition, ordering,
                 100 * accuracy, runs[condition][-1]["prompt_tokens"])
    return {"runs": runs, "words": words, "instruction": line, "test_examples": len(queries),
            "example_query": queries[0] if queries else ""}


def paired_difference(runs: dict[str, list[dict]], better: str, worse: str) -> dict:
    """``better`` − ``worse`` accuracy by ordering seed; a condition run once (zero-shot) pairs with every seed."""
    by_seed = {r["ordering"]: r["accuracy"] for r in runs[worse]}
    values = [r["accuracy"] - (by_seed[r["ordering"]] if len(runs[worse]) > 1 else runs[worse][0]["accuracy"])
              for r in runs[better]]
    return {**summarize_values(values), "values": values}


def verdict(difference: dict) -> str:
    """Which of distilled and random prompts wins, or "within noise", by the one noise rule of every comparison
    (:func:`condense.report.tables.verdict`: within one standard error of the paired gap)."""
    return noise_rule(difference, "distilled", "random", "within noise")


def task_results(job: BenchJob, data: TaskData, model, tokenizer) -> dict:
    measured = prompt_runs(job, data, model, tokenizer)
    runs, n = measured["runs"], measured["test_examples"]
    conditions = {}
    for name in CONDITIONS:
        accuracies = [r["accuracy"] for r in runs[name]]
        summary = summarize_values(accuracies)
        conditions[name] = {
            "accuracies": accuracies,
            "summary": summary,
            # Test-sample noise of a single run, which the spread over orderings does not include.
            "standard_error": math.sqrt(summary["mean"] * (1 - summary["mean"]) / n) if n else 0.0,
            "prompt_tokens": summarize_values([r["prompt_tokens"] for r in runs[name]]),
            "prompt": runs[name][0]["prompt"],  # ordering 0, for the docs
        }
    versus_random = paired_difference(runs, "distilled", "random")
    return {
        "test_examples": n,
        "label_words": measured["words"],
        "instruction": measured["instruction"],
        "example_query": measured["example_query"],
        "conditions": conditions,
        "distilled_minus_random": versus_random,
        "distilled_minus_none": paired_difference(runs, "distilled", "none"),
        "winner": max(CONDITIONS, key=lambda name: conditions[name]["summary"]["mean"]),
        "distilled_vs_random": verdict(versus_random),
    }


def run(job: BenchJob) -> dict:
    settings = job.bench.prompting
    model, tokenizer = load_causal_lm(settings.model, resolve_device(job.device))
    tasks = {}
    for entry in settings.tasks:
        data = task_data(job, entry)
        tasks[data.name] = task_results(job, data, model, tokenizer)
    return {"model": settings.model, "orderings": settings.orderings, "tasks": tasks}

