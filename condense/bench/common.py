"""What the experiments of the analysis suite share: a task loaded once, and distilled sets cached on disk.

A :class:`TaskData` holds one task with everything its experiments reuse (encoder, frozen features of the
training and test splits, the single-task config). :func:`distilled` returns the distilled set of a task for
a seed and any distill overrides, distilling it only when no set of that exact config is cached, so the
experiments share their sets: the scaling run's k=1 set, for instance, is the one the others study.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from condense.artifact import DistilledSet
from condense.data import Task, task_from_config
from condense.distill import DistillConfig, RealData
from condense.evaluate import HeldOutData, TrainingSet, learned_protocol
from condense.features import text_features, tokenize
from condense.models import Encoder, load_encoder
from condense.pipeline import (
    cached_distillation_dir,
    distilled_set,
    evaluate_against_baselines,
    finished_distillation,
    held_out_data,
    real_data,
)
from condense.run import task_config

log = logging.getLogger(__name__)


@dataclass
class TaskData:
    """One task and what every experiment on it reuses."""

    cfg: DictConfig  # single-task config: task, model, distill, eval, threads (as ``python -m condense.distill``)
    task: Task
    encoder: Encoder
    train_labels: torch.Tensor
    train_features: torch.Tensor  # frozen-encoder features of every training text
    test: HeldOutData  # frozen features of the whole test split, tokens of the fixed encoder-test subsample

    @property
    def name(self) -> str:
        return self.task.name

    def real(self, config: DistillConfig) -> RealData:
        return real_data(self.encoder, self.task, self.train_labels, self.train_features, self.cfg.task.max_length, config)


def task_data(cfg: DictConfig, entry) -> TaskData:
    """The task named by ``entry`` (a ``configs/task/`` name or a mapping, as in a task sequence), loaded once."""
    return _task_data(OmegaConf.to_yaml(cfg), OmegaConf.to_yaml(OmegaConf.create({"entry": entry})))


@cache
def _task_data(cfg_yaml: str, entry_yaml: str) -> TaskData:
    cfg = OmegaConf.create(cfg_yaml)
    task_cfg = task_config(OmegaConf.create(entry_yaml).entry)
    single = OmegaConf.create({"task": task_cfg, "model": cfg.model, "distill": cfg.distill, "eval": cfg.eval,
                               "threads": cfg.threads, "out": None})
    task = task_from_config(task_cfg)
    encoder = _encoder(cfg.model.name, cfg.model.pooling)
    features = text_features(encoder, task.train["text"], task_cfg.max_length, f"{task.name} train texts")
    test = held_out_data(encoder, task, task_cfg.max_length, cfg.eval)
    return TaskData(single, task, encoder, torch.tensor(task.train["label"]), features, test)


@cache
def _encoder(name: str, pooling: str) -> Encoder:
    return load_encoder(name, pooling)


def distill_settings(data: TaskData, **overrides) -> DictConfig:
    """The task's single-task config with ``overrides`` on its distill group and ``out`` at the cached set's folder."""
    cfg = OmegaConf.merge(data.cfg, {"distill": overrides})
    distill = cfg.distill
    groups = {"task": cfg.task, "model": cfg.model, "distill": distill}
    cfg.out = str(cached_distillation_dir(groups, f"{data.name}-{distill.params}-ipc{distill.ipc}-seed{distill.seed}"))
    return cfg


# Every set an experiment asked for, and whether it came from the cache: a run that reuses sets is faster than a
# cold one, and its results file says by how much (``distillation`` in ``bench_<experiment>.json``).
LEDGER: list[dict] = []


def distilled(data: TaskData, **overrides) -> DistilledSet:
    """The task's distilled set under ``overrides`` of the distill config (``ipc``, ``seed``, ...), cached on disk."""
    cfg = distill_settings(data, **overrides)
    config = DistillConfig(**cfg.distill)
    reused = finished_distillation(Path(cfg.out), cfg) is not None
    result = distilled_set(cfg, data.encoder, data.task, data.real(config))
    LEDGER.append({"set": Path(cfg.out).name, "reused": reused, "seconds": result.meta["progress"]["seconds"]})
    return result


def ledger_summary() -> dict:
    """Distillation seconds spent in this run and seconds saved by reusing cached sets (each set counted once)."""
    first_use: dict[str, dict] = {}
    for entry in LEDGER:
        first_use.setdefault(entry["set"], entry)
    unique = first_use.values()
    return {
        "distilled_now": sum(1 for e in unique if not e["reused"]),
        "seconds_now": sum(e["seconds"] for e in unique if not e["reused"]),
        "reused": sum(1 for e in unique if e["reused"]),
        "seconds_reused": sum(e["seconds"] for e in unique if e["reused"]),
    }


def evaluate_sets(data: TaskData, distilled_set_: DistilledSet, baselines: list[str], n_inits: int, finetune_inits: int = 0) -> dict:
    """``metrics.json`` of ``python -m condense.distill`` for this set: distilled, decoded, the ``baselines`` (real
    subsets of the same size given their own learned labels and lrs) and the full-data reference."""
    cfg = OmegaConf.merge(distill_settings(data, **distilled_set_.meta["config"]["distill"]), {
        "eval": {"n_inits": n_inits, "baselines": list(baselines), "finetune": {"n_inits": finetune_inits}},
    })
    config = DistillConfig(**cfg.distill)
    return evaluate_against_baselines(
        data.encoder, data.task, distilled_set_, data.train_labels, data.train_features, data.real(config), data.test, cfg
    )


def studied_set(cfg: DictConfig, data: TaskData, seed: int) -> DistilledSet:
    """The set the experiments other than scaling study: ``bench.ipc`` per class, ``bench.outer_steps`` steps."""
    return distilled(data, ipc=cfg.bench.ipc, outer_steps=cfg.bench.outer_steps, seed=seed)


def points(entry: dict | None, spread: str = "std") -> str:
    """``mean ± std`` of an accuracy summary, in percentage points."""
    return "—" if entry is None else f"{100 * entry['mean']:.1f} ± {100 * entry[spread]:.1f}"


def figure_path(results: dict, figures: Path, suffix: str = "") -> Path:
    """Where a results file's plot goes: named after the file, so a variant run's plots do not overwrite the
    preset's (files written before results carried their name are ``bench_<experiment>``)."""
    return figures / f"{results.get('name', 'bench_' + results['experiment'])}{suffix}.png"


def section_header(results: dict, title: str) -> list[str]:
    """The opening lines of an experiment's section: title, the command that regenerates it, machine and time."""
    m = results["machine"]
    if results.get("name", f"bench_{results['experiment']}") != f"bench_{results['experiment']}":
        title += f" (variant run: `{results['name']}`)"
    return [
        f"## {title}",
        "",
        f"Regenerate: `{results['command']}` (preset `{results['preset']}`, {results['seconds'] / 60:.1f} min). "
        f"Machine: {m['processor']}, {m['cpu_count']} cores, {m['torch_threads']} torch threads, torch {m['torch']}.",
        "",
    ]


def embedding_form(distilled_set_: DistilledSet) -> TrainingSet:
    return TrainingSet(distilled_set_.attention_mask, distilled_set_.soft_labels, inputs_embeds=distilled_set_.embeddings)


def text_form(data: TaskData, texts: list[str], soft_labels: torch.Tensor, seq_len: int = 0) -> TrainingSet:
    """``texts`` re-tokenised, as any user of decoded or real text would train on them."""
    tokens = tokenize(data.encoder, texts, max(data.cfg.task.max_length, seq_len))
    return TrainingSet(tokens["attention_mask"], soft_labels, input_ids=tokens["input_ids"])


def learned_accuracy(data: TaskData, train: TrainingSet, inner_lrs: torch.Tensor, inner: dict, n_inits: int) -> dict:
    """Test accuracy under a distilled set's inner protocol (``meta["inner"]``), over ``n_inits`` fresh models."""
    return learned_protocol(
        data.encoder, train, data.test, inner_lrs, params=inner["params"], n_layers=inner["n_layers"],
        optimizer=inner["optimizer"], n_inits=n_inits, seed=data.cfg.eval.seed,
    )


def pooled(summaries: list[dict]) -> dict:
    """Mean ± std over every fresh model of every seed, from per-seed summaries; also the std of the seed means."""
    counts = [s["n"] for s in summaries]
    total = sum(counts)
    mean = sum(s["mean"] * n for s, n in zip(summaries, counts)) / total
    within = sum((n - 1) * s["std"] ** 2 for s, n in zip(summaries, counts))
    between = sum(n * (s["mean"] - mean) ** 2 for s, n in zip(summaries, counts))
    seed_means = [s["mean"] for s in summaries]
    return {
        "mean": mean,
        "std": math.sqrt((within + between) / max(total - 1, 1)),
        "n": total,
        "seeds": len(summaries),
        "std_over_seeds": statistics.stdev(seed_means) if len(seed_means) > 1 else 0.0,
    }
