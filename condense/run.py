"""The main job: distil every task of a sequence, then replay the sets across it and measure forgetting.

``python -m condense.run task_sequence=agnews_then_sst2`` distils any task whose distilled set is not cached yet
(keyed by a hash of its task, model and distill config), runs every strategy of ``configs/continual/`` in every
scenario over every seed, and writes ``results.json``, ``results.md``, ``forgetting_curves.png`` and
``accuracy_matrices.png`` in the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from condense.artifact import DistilledSet, to_jsonable
from condense.continual import SCENARIOS, STRATEGIES, Examples, LabelLayout, SequenceData, StrategySettings, run_strategy
from condense.data import Task, stratified_indices, task_from_config
from condense.features import text_hidden_states, tokenize
from condense.merge import merge_distilled
from condense.models import Encoder, hidden_states_below, load_encoder
from condense.pipeline import CONFIG_DIR, cached_distillation_dir, distilled_set, fixed_subsample
from condense.plots import accuracy_matrices, forgetting_curves
from condense.report import machine, one_line, results_table, summarize_runs

log = logging.getLogger(__name__)

# The two forms of a task's distilled set that are replayed: continuous input embeddings, and text (trained
# through the straight-through projection, so its decoded tokens are exactly what was optimised).
FORMS = {"embedding": "none", "text": "straight_through"}


def _entry_name(entry) -> str:
    return entry if isinstance(entry, str) else str(entry.get("name"))


def sequence_name(tasks) -> str:
    return "_then_".join(_entry_name(task) for task in tasks)


OmegaConf.register_new_resolver("sequence_name", sequence_name, replace=True)


def task_config(entry) -> DictConfig:
    """A sequence entry as a task config: the name of a ``configs/task/`` file, or a mapping that overrides
    ``configs/task/local.yaml`` (``{name: mine, path: DIR}``) for data of your own."""
    folder = Path(CONFIG_DIR) / "task"
    if isinstance(entry, (dict, DictConfig)):
        if not entry.get("name"):
            raise ValueError(f"task_sequence.tasks: a task given as a mapping needs a name, got {dict(entry)}")
        return OmegaConf.merge(OmegaConf.load(folder / "local.yaml"), entry)
    path = folder / f"{entry}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ValueError(f"task_sequence.tasks: no task config {path} for {entry!r}; known tasks: {known}")
    return OmegaConf.load(path)


def distill_config(cfg: DictConfig, task_cfg: DictConfig, task: Task, form: str) -> DictConfig:
    """The single-task config whose distilled set has ``memory_per_task`` examples, in the given form."""
    distill = OmegaConf.merge(cfg.distill, {"ipc": cfg.continual.memory_per_task // task.num_classes, "projection": FORMS[form]})
    groups = {"task": task_cfg, "model": cfg.model, "distill": distill}
    out = cached_distillation_dir(groups, f"{task.name}-{distill.params}-ipc{distill.ipc}-{form}")
    return OmegaConf.create({**groups, "threads": cfg.threads, "out": str(out)})


def distilled_sets(cfg: DictConfig, encoder: Encoder, tasks: list[Task], task_cfgs: list[DictConfig]) -> dict[str, list[DistilledSet]]:
    """Each task's distilled set in each form, distilled now when no cached set has the same config."""
    memory = cfg.continual.memory_per_task
    for task in tasks:  # all checked before any distillation starts
        if memory % task.num_classes:
            raise ValueError(
                f"continual.memory_per_task={memory} does not split evenly over the {task.num_classes} classes of "
                f"{task.name}; use a multiple of {task.num_classes}"
            )
    sets: dict[str, list[DistilledSet]] = {form: [] for form in FORMS}
    for task, task_cfg in zip(tasks, task_cfgs):
        for form in FORMS:
            sets[form].append(distilled_set(distill_config(cfg, task_cfg, task, form), encoder, task))
    return sets


def sequence_data(
    encoder: Encoder,
    tasks: list[Task],
    task_cfgs: list[DictConfig],
    sets: dict[str, list[DistilledSet]],
    scenario: str,
    cfg: DictConfig,
) -> SequenceData:
    """Every task's real, held-out and distilled examples as hidden states below the trained blocks."""
    layers = cfg.continual.trainable_layers
    layout = LabelLayout(scenario, [task.num_classes for task in tasks])
    train, test, curve = [], [], []
    distilled: dict[str, list[Examples]] = {form: [] for form in sets}
    for index, (task, task_cfg) in enumerate(zip(tasks, task_cfgs)):
        labels = np.asarray(task.train["label"])
        size = cfg.continual.train_examples_per_task
        keep = stratified_indices(labels, size, seed=0) if size < len(labels) else np.arange(len(labels))
        train.append(_real_examples(encoder, task, "train", keep, task_cfg.max_length, layers, layout, index))
        held_out = fixed_subsample(len(task.test), cfg.continual.test_examples_per_task).numpy()
        test.append(_real_examples(encoder, task, "test", held_out, task_cfg.max_length, layers, layout, index))
        # The curve sample is a fixed part of the test sample, so its encoding comes from the same cache entry.
        part = fixed_subsample(len(held_out), cfg.continual.curve_examples_per_task)
        curve.append(test[-1].subset(part))
        for form, form_sets in sets.items():
            distilled[form].append(_distilled_examples(encoder, form_sets[index], form, task_cfg, layers, layout, index))
    merged = merge_distilled(sets["embedding"], label_space=scenario) if sets else None
    merged_examples = None
    if merged is not None:
        if merged.soft_labels.shape[1] != layout.width:
            raise ValueError(f"merged soft labels have {merged.soft_labels.shape[1]} columns, the {scenario} layout {layout.width}")
        hidden = hidden_states_below(encoder, layers, merged.attention_mask, inputs_embeds=merged.embeddings)
        merged_examples = Examples(hidden, merged.attention_mask, merged.soft_labels, merged.task_ids)
    return SequenceData(layout, [t.name for t in tasks], train, test, curve, distilled, merged_examples)


def _real_examples(
    encoder: Encoder, task: Task, split: str, keep: np.ndarray, max_length: int, layers: int, layout: LabelLayout, index: int
) -> Examples:
    rows = getattr(task, split)
    texts = [rows["text"][i] for i in keep.tolist()]
    states = text_hidden_states(encoder, texts, max_length, layers, f"{task.name} {split} texts")
    labels = torch.as_tensor(np.asarray(rows["label"])[keep])
    targets = layout.targets(index, F.one_hot(labels, task.num_classes))
    examples = Examples(states["hidden_states"], states["attention_mask"], targets, torch.full((len(keep),), index))
    # Evaluation batches are taken in order: sorted by length, they carry little padding. Training shuffles anyway.
    return examples.subset(torch.argsort(examples.attention_mask.sum(1), stable=True))


def _distilled_examples(
    encoder: Encoder, distilled: DistilledSet, form: str, task_cfg: DictConfig, layers: int, layout: LabelLayout, index: int
) -> Examples:
    if form == "embedding":
        mask = distilled.attention_mask
        hidden = hidden_states_below(encoder, layers, mask, inputs_embeds=distilled.embeddings)
    else:
        # The text form is replayed as text: re-tokenised, as any user of the decoded set would.
        tokens = tokenize(encoder, distilled.texts, max(task_cfg.max_length, distilled.embeddings.shape[1]))
        mask = tokens["attention_mask"]
        hidden = hidden_states_below(encoder, layers, mask, input_ids=tokens["input_ids"])
    targets = layout.targets(index, distilled.soft_labels)
    return Examples(hidden, mask, targets, torch.full((distilled.num_examples,), index))


def run_sequence(cfg: DictConfig) -> dict:
    """Every strategy x scenario x seed of ``cfg.continual`` on ``cfg.task_sequence``; returns the results dict."""
    started = time.perf_counter()
    out = Path(cfg.out)
    settings = StrategySettings(**{f.name: cfg.continual[f.name] for f in dataclasses.fields(StrategySettings)})
    _check_config(cfg)
    task_cfgs = [task_config(entry) for entry in cfg.task_sequence.tasks]
    names = [task_cfg.name for task_cfg in task_cfgs]
    tasks = [task_from_config(task_cfg) for task_cfg in task_cfgs]
    encoder = load_encoder(cfg.model.name, cfg.model.pooling)
    strategies = list(cfg.continual.strategies)
    needs_sets = any(s in ("distilled_replay", "distilled_text_replay", "merged_only") for s in strategies)
    sets = distilled_sets(cfg, encoder, tasks, task_cfgs) if needs_sets else {}

    settings_key = to_jsonable({"continual": cfg.continual, "model": cfg.model, "distill": cfg.distill, "tasks": task_cfgs})
    runs: list[dict] = []
    total = len(cfg.continual.scenarios) * len(strategies) * len(cfg.continual.seeds)
    with tqdm(total=total, desc=f"{sequence_name(names)}: strategy runs") as progress:
        for scenario in cfg.continual.scenarios:
            data = sequence_data(encoder, tasks, task_cfgs, sets, scenario, cfg)
            for strategy in strategies:
                for seed in cfg.continual.seeds:
                    progress.set_postfix_str(f"{scenario}/{strategy}/seed {seed}")
                    runs.append(_run_or_reuse(out / "runs" / f"{scenario}-{strategy}-seed{seed}.json", settings_key,
                                              lambda: run_strategy(strategy, encoder, data, settings, seed)))
                    progress.update()
                log.info("%s / %s: %s", scenario, strategy, one_line(summarize_runs([r for r in runs if
                         r["scenario"] == scenario and r["strategy"] == strategy])))

    results = {
        "sequence": names,
        "command": "python -m condense.run " + " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None,
        "config": to_jsonable(cfg),
        "machine": machine(),
        "seconds": time.perf_counter() - started,
        "summary": {
            scenario: {strategy: summarize_runs([r for r in runs if r["scenario"] == scenario and r["strategy"] == strategy])
                       for strategy in strategies}
            for scenario in cfg.continual.scenarios
        },
        "runs": runs,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(to_jsonable(results), indent=1) + "\n")
    (out / "results.md").write_text(results_table(results) + "\n")
    forgetting_curves(results, out / "forgetting_curves.png")
    accuracy_matrices(results, out / "accuracy_matrices.png")
    log.info("wrote results.json, results.md, forgetting_curves.png and accuracy_matrices.png to %s", out)
    return results


def _check_config(cfg: DictConfig) -> None:
    unknown = set(cfg.continual.strategies) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"continual.strategies: unknown {sorted(unknown)}; choose from {list(STRATEGIES)}")
    unknown = set(cfg.continual.scenarios) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"continual.scenarios: unknown {sorted(unknown)}; choose from {list(SCENARIOS)}")
    names = [_entry_name(entry) for entry in cfg.task_sequence.tasks]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"task_sequence.tasks must name at least two different tasks, got {names}")
    # Replayed sets must have been distilled for the parameters the sequence trains, or they teach the wrong model.
    if cfg.distill.params != "last_n_layers" or cfg.distill.n_layers != cfg.continual.trainable_layers:
        raise ValueError(
            f"the sequence trains the top {cfg.continual.trainable_layers} block(s) and the heads, but distill trains "
            f"{cfg.distill.params} (n_layers={cfg.distill.n_layers}); use distill=last_layer with "
            f"distill.n_layers={cfg.continual.trainable_layers}"
        )


def _run_or_reuse(path: Path, settings_key: dict, compute) -> dict:
    """A finished run of the same settings is read back, so an interrupted job resumes where it stopped."""
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["settings"] == settings_key:
            return saved["result"]
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(to_jsonable({"settings": settings_key, "result": result})))
    temporary.replace(path)
    return result


@hydra.main(config_path=CONFIG_DIR, config_name="run", version_base="1.3")
def main(cfg: DictConfig) -> None:
    torch.set_num_threads(cfg.threads)
    results = run_sequence(cfg)
    print(results_table(results))  # the CLI's answer: the table, at the end of the log


if __name__ == "__main__":
    main()
