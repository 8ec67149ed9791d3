"""Few-shot prompting: do distilled texts make better in-context examples than real ones?

A small instruction-tuned language model (SmolLM2-135M-Instruct by default) classifies a fixed test sample by
the log-probability of each label word, given a prompt of (a) the studied set's decoded texts with their classes,
(b) random real training examples, the same number per class, or (c) no examples (zero-shot). The few-shot
prompts run once per ordering seed, which shuffles the examples and draws the random ones, so their spread is
over orderings; the zero-shot prompt is deterministic and runs once. Distilled and random runs with the same seed
are paired, and their difference by seed says which wins.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from condense.bench.common import TaskData, figure_path, section_header, studied_set, task_data
from condense.evaluate import summarize
from condense.pipeline import fixed_subsample
from condense.plots import plt
from condense.prompting import (
    classify,
    count_tokens,
    instruction,
    label_words,
    load_causal_lm,
    prompt_prefix,
    render_query,
    truncate,
)

log = logging.getLogger(__name__)
CONDITIONS = ("distilled", "random", "none")
DESCRIPTIONS = {"distilled": "distilled (decoded text)", "random": "random real examples", "none": "none (zero-shot)"}
MODEL_NAMES = {"smollm2": "SmolLM2-135M-Instruct"}


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


def prompt_examples(cfg: DictConfig, data: TaskData) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """Every run's ``(condition, ordering, examples)``: zero-shot once, then a distilled and a random prompt per
    ordering; ordering o studies the set of distillation seed ``bench.seeds[o % len(bench.seeds)]``."""
    seeds = cfg.bench.seeds
    orderings = range(cfg.bench.prompting.orderings)
    sets = {seed: studied_set(cfg, data, seed) for seed in dict.fromkeys(seeds[o % len(seeds)] for o in orderings)}
    jobs = [("none", 0, [])]
    for ordering in orderings:
        studied = sets[seeds[ordering % len(seeds)]]
        per_class = torch.bincount(studied.labels, minlength=data.task.num_classes).tolist()
        jobs += [("distilled", ordering, distilled_examples(studied, ordering)),
                 ("random", ordering, random_examples(data, per_class, ordering))]
    return jobs


def prompt_runs(cfg: DictConfig, data: TaskData, model, tokenizer) -> dict:
    """Accuracy, prompt length and prompt text of every run on one task: {condition: [run per ordering]}."""
    settings = cfg.bench.prompting
    words = label_words(data.task.label_names)
    line = instruction(words)
    rows = fixed_subsample(len(data.task.test), settings.test_examples).tolist()
    test = data.task.test.select(rows)
    queries = [render_query(truncate(tokenizer, text, settings.max_query_tokens)) for text in test["text"]]
    labels = torch.tensor(test["label"])
    runs: dict[str, list[dict]] = {name: [] for name in CONDITIONS}
    bar = tqdm(prompt_examples(cfg, data), desc=f"prompting {data.name}: {len(queries)} test examples per prompt")
    for condition, ordering, examples in bar:
        prompt = prompt_prefix(line, [(truncate(tokenizer, text, settings.max_example_tokens), words[label])
                                      for text, label in examples])
        predictions = classify(model, tokenizer, prompt, queries, words, settings.batch_size)
        accuracy = (predictions == labels).float().mean().item()
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
    return {**summarize(values), "values": values}


def verdict(difference: dict) -> str:
    """Which of distilled and random prompts wins, or "within noise" when the paired gap is smaller than its spread."""
    if abs(difference["mean"]) < difference["std"]:
        return "within noise"
    return "distilled" if difference["mean"] > 0 else "random"


def task_results(cfg: DictConfig, data: TaskData, model, tokenizer) -> dict:
    measured = prompt_runs(cfg, data, model, tokenizer)
    runs, n = measured["runs"], measured["test_examples"]
    conditions = {}
    for name in CONDITIONS:
        accuracies = [r["accuracy"] for r in runs[name]]
        summary = summarize(accuracies)
        conditions[name] = {
            "accuracies": accuracies,
            "summary": summary,
            # Test-sample noise of a single run, which the spread over orderings does not include.
            "standard_error": math.sqrt(summary["mean"] * (1 - summary["mean"]) / n) if n else 0.0,
            "prompt_tokens": summarize([r["prompt_tokens"] for r in runs[name]]),
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


def run(cfg: DictConfig) -> dict:
    settings = cfg.bench.prompting
    if settings.orderings < 2:
        raise ValueError("bench.prompting.orderings must be at least 2: the spread over orderings is the error bar")
    model, tokenizer = load_causal_lm(settings.model)
    tasks = {}
    for entry in settings.tasks:
        data = task_data(cfg, entry)
        tasks[data.name] = task_results(cfg, data, model, tokenizer)
    return {"model": settings.model, "orderings": settings.orderings, "tasks": tasks}


def plot(results: dict, path: Path) -> None:
    """Grouped bars: a group per task, a bar per condition, error bars the std over orderings; chance dashed."""
    tasks = list(results["tasks"])
    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 + 1.7 * len(tasks)), 4.0))
    width = 0.8 / len(CONDITIONS)
    for index, (name, colour) in enumerate(zip(CONDITIONS, ("C3", "C0", "C7"))):
        summaries = [results["tasks"][task]["conditions"][name]["summary"] for task in tasks]
        xs = np.arange(len(tasks)) + (index - 1) * width
        # Zero-shot runs once (it is deterministic): no spread over orderings to draw.
        spread = None if name == "none" else [100 * s["std"] for s in summaries]
        ax.bar(xs, [100 * s["mean"] for s in summaries], width=width, yerr=spread, color=colour, capsize=3,
               label=DESCRIPTIONS[name] + (", one run" if name == "none" else ""))
    for position, task in enumerate(tasks):
        chance = 100 / len(results["tasks"][task]["label_words"])
        ax.hlines(chance, position - 0.45, position + 0.45, colors="k", linestyles="dashed", linewidth=1,
                  label="chance" if position == 0 else None)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_xlabel("task")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{MODEL_NAMES.get(results['model'], results['model'])}: prompt examples "
                 f"(mean ± std over {results['orderings']} orderings)", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def signed_points(entry: dict) -> str:
    return f"{100 * entry['mean']:+.1f} ± {100 * entry['std']:.1f}"


def sentence(task: str, result: dict) -> str:
    """Which prompt wins on ``task``, in words, saying so plainly when the distilled one loses."""
    conditions = result["conditions"]
    mean = {name: 100 * conditions[name]["summary"]["mean"] for name in CONDITIONS}
    gap = result["distilled_minus_random"]
    n = gap["n"]
    if result["distilled_vs_random"] == "within noise":
        versus = (f"distilled and random real prompts are within noise of each other (distilled − random "
                  f"{signed_points(gap)} points over {n} paired orderings)")
    elif result["distilled_vs_random"] == "distilled":
        versus = f"distilled prompts beat random real examples by {signed_points(gap)} points over {n} paired orderings"
    else:
        versus = (f"distilled prompts lose to random real examples, by {signed_points(gap)} points over {n} paired "
                  "orderings")
    zero = result["distilled_minus_none"]
    against_zero = ("better than" if zero["mean"] > zero["std"] else "worse than" if -zero["mean"] > zero["std"]
                    else "within noise of")
    return (f"**{task}**: highest mean: {DESCRIPTIONS[result['winner']]}, {mean[result['winner']]:.1f}%. "
            f"{versus[0].upper()}{versus[1:]}. Distilled prompts are {against_zero} no examples at all "
            f"(distilled − zero-shot {signed_points(zero)} points; zero-shot {mean['none']:.1f}%).")


def report(results: dict, figures: Path) -> list[str]:
    figures.mkdir(parents=True, exist_ok=True)
    path = figure_path(results, figures)
    plot(results, path)
    settings = results["config"]["bench"]["prompting"]
    bench = results["config"]["bench"]
    model = MODEL_NAMES.get(results["model"], results["model"])
    lines = section_header(results, "Few-shot prompting with distilled texts")
    lines += [
        f"{model} classifies a fixed test sample by the summed log-probability of each label word (lower-cased "
        "label name, with a leading space) after a prompt: an instruction line, the examples as "
        "`Text: …\\nLabel: …` blocks, then the query. Examples: the studied set's decoded texts "
        f"(k={bench['ipc']} per class, {bench['outer_steps']} outer steps, distillation seeds {list(bench['seeds'])}); "
        "the same number of random real training texts per class; or none. "
        f"Texts are cut to {settings['max_example_tokens']} tokens in the prompt and "
        f"{settings['max_query_tokens']} as queries. Cells: mean ± std over {results['orderings']} orderings (seeds "
        "that shuffle the examples and draw the random ones; zero-shot is deterministic, so it runs once); "
        "SE: binomial standard error of one run's accuracy on the test sample, sqrt(p(1 − p)/n), the noise a "
        "single run carries on top of the spread over orderings. Label words: "
        + "; ".join(f"{task}: {', '.join(result['label_words'])}" for task, result in results["tasks"].items()) + ".",
        "",
        "| task | prompt examples | accuracy (%) | runs | test examples | SE of one run (points) | prompt tokens |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for task, result in results["tasks"].items():
        for name in CONDITIONS:
            entry = result["conditions"][name]
            summary = entry["summary"]
            spread = " (one run)" if name == "none" else f" ± {100 * summary['std']:.1f}"
            accuracy = f"{100 * summary['mean']:.1f}{spread}"
            lines.append(
                f"| {task} | {DESCRIPTIONS[name]} | {accuracy} | "
                f"{summary['n']} | {result['test_examples']} | {100 * entry['standard_error']:.1f} | "
                f"{entry['prompt_tokens']['mean']:.0f} |"
            )
    lines += [
        "",
        f"![Test accuracy by prompt examples, mean ± std over orderings](figures/{path.name})",
        "",
        "| task | distilled − random (points, paired by seed) | distilled − zero-shot (points) | highest mean "
        "| distilled vs random |",
        "|---|---:|---:|---|---|",
    ]
    for task, result in results["tasks"].items():
        lines.append(
            f"| {task} | {signed_points(result['distilled_minus_random'])} | "
            f"{signed_points(result['distilled_minus_none'])} | "
            f"{DESCRIPTIONS[result['winner']]} | {result['distilled_vs_random']} |"
        )
    lines += [""]
    for task, result in results["tasks"].items():
        lines += [sentence(task, result), ""]
    shown = "sst2" if "sst2" in results["tasks"] else next(iter(results["tasks"]), None)
    if shown is not None:
        result = results["tasks"][shown]
        lines += [
            f"<details><summary>The distilled prompt of ordering 0 on {shown}, and the first test query after it"
            "</summary>",
            "",
            "```text",
            result["conditions"]["distilled"]["prompt"] + result["example_query"],
            "```",
            "",
            "</details>",
            "",
        ]
    return lines
