"""What the experiments of the analysis suite share: a task loaded once, and distilled sets cached on disk.

A :class:`TaskData` holds one task with everything its experiments reuse (encoder, frozen features of the
training and test splits, the single-task config). :func:`distilled` returns the distilled set of a task for
a seed and any distill overrides, distilling it only when no set of that exact config is cached, so the
experiments share their sets: the scaling run's k=1 set, for instance, is the one the others study.
:func:`cell` caches each evaluation cell of an experiment the same way, so an interrupted experiment resumes at
the first cell it had not finished, and its results file is the one an uninterrupted run writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import condense
from condense.artifact.distilled_set import DistilledSet, InnerProtocol, TrainingSet
from condense.cache import cache_dir, cached_json, digest, to_jsonable
from condense.config.parsing import check_distill, task_config, validate
from condense.data.tasks import Task
from condense.eval.protocols import HeldOutData, learned_protocol
from condense.models.features import text_features, tokenize
from condense.models.encoders import Encoder
from condense.distill.loop import RealData
from condense.jobs.distill_task import cached_distillation_dir, distilled_set, finished_distillation, job_encoder, load_task_config, task_labels
from condense.eval.baselines import evaluate_against_baselines, held_out_data
from condense.distill.loop import real_data
from condense.config.schema import DistillConfig, DistillJob
from condense.config.bench import BenchJob

log = logging.getLogger(__name__)


@dataclass
class TaskData:
    """One task and what every experiment on it reuses."""

    job: DistillJob  # the single-task job: task, model, distill, eval, runtime (as ``python -m condense.distill``)
    task: Task
    encoder: Encoder
    train_labels: torch.Tensor
    train_features: torch.Tensor  # frozen-encoder features of every training text
    test: HeldOutData  # frozen features of the whole test split, tokens of the fixed encoder-test subsample

    @property
    def name(self) -> str:
        return self.task.name

    def real(self, config: DistillConfig) -> RealData:
        return real_data(self.encoder, self.task, self.train_labels, self.train_features, self.job.task.max_length, config)


_LOADED: dict[str, TaskData] = {}


def task_data(job: BenchJob, entry) -> TaskData:
    """The task named by ``entry`` (a ``configs/task/`` name or a mapping, as in a task sequence), loaded once."""
    key = json.dumps(to_jsonable([job.model, job.distill, job.eval, job.threads, job.device, job.precision, job.tf32, entry]))
    if key not in _LOADED:
        task_cfg = task_config(entry, "bench.tasks")
        single = DistillJob(task=task_cfg, model=job.model, distill=job.distill, eval=job.eval, threads=job.threads,
                            device=job.device, precision=job.precision, tf32=job.tf32,
                            checkpoint_seconds=job.checkpoint_seconds, out="")
        task = load_task_config(task_cfg)
        encoder = _encoder(single)
        features = text_features(encoder, task.train["text"], task_cfg.max_length, f"{task.name} train texts")
        test = held_out_data(encoder, task, task_cfg.max_length, job.eval)
        _LOADED[key] = TaskData(single, task, encoder, task_labels(task.train, encoder), features, test)
    return _LOADED[key]


_ENCODERS: dict[tuple, Encoder] = {}


def _encoder(job: DistillJob) -> Encoder:
    key = (job.model.name, job.model.pooling, job.device, job.precision, job.tf32)
    if key not in _ENCODERS:
        _ENCODERS[key] = job_encoder(job)
    return _ENCODERS[key]


def distill_settings(data: TaskData, **overrides) -> DistillJob:
    """The task's single-task job with ``overrides`` on its distill group and ``out`` at the cached set's folder."""
    distill = dataclasses.replace(data.job.distill, **overrides)
    validate(distill, "distill")
    check_distill(distill, "distill")
    groups = {"task": data.job.task, "model": data.job.model, "distill": distill}
    if data.job.precision != "fp32":  # bf16 features make other sets; fp32 keys stay those made before precisions
        groups["precision"] = data.job.precision
    if data.job.tf32:  # TF32 matrix multiplies make other sets on CUDA
        groups["tf32"] = True
    out = cached_distillation_dir(groups, f"{data.name}-{distill.params}-ipc{distill.ipc}-seed{distill.seed}")
    return dataclasses.replace(data.job, distill=distill, out=str(out))


# Every set an experiment asked for, and whether it came from the cache: a run that reuses sets is faster than a
# cold one, and its results file says by how much (``distillation`` in ``bench_<experiment>.json``).
LEDGER: list[dict] = []


def distilled(data: TaskData, **overrides) -> DistilledSet:
    """The task's distilled set under ``overrides`` of the distill config (``ipc``, ``seed``, ...), cached on disk."""
    job = distill_settings(data, **overrides)
    reused = finished_distillation(Path(job.out), job) is not None
    result = distilled_set(job, data.encoder, data.task, data.real(job.distill))
    LEDGER.append({"set": Path(job.out).name, "reused": reused, "seconds": result.progress.seconds})
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


# Every evaluation cell asked for in this run, and whether it was computed now (False: read back from the cache).
CELLS: list[bool] = []


def cell_path(data: TaskData, key: dict) -> Path:
    """Where :func:`cell` keeps the cell of ``key``: named by ``key`` plus what every cell of the task shares (the
    task, model, test subsample and evaluation seed, precision and condense's version); the seed table's cells
    were named so before this function existed, and keep their names."""
    full_key = {**key, "task": to_jsonable(data.job.task), "model": to_jsonable(data.job.model),
                "test_examples": data.job.eval.encoder_test_examples, "eval_seed": data.job.eval.seed,
                "precision": data.job.precision, "version": condense.__version__, **({"tf32": True} if data.job.tf32 else {})}
    return cache_dir() / "evaluations" / f"{data.name}-{digest(full_key)}.json"


def cell(data: TaskData, key: dict, compute: Callable[[], Any]) -> Any:
    """``compute()``, one evaluation cell of an experiment (a set under a protocol for a seed, say), cached on disk.

    ``key`` names what the cell depends on beyond what :func:`cell_path` adds: the experiment, the set's distill
    config, the protocol, the number of fresh models, any eval setting it reads. The value is stored as JSON, and a
    fresh one is returned as it reads back (tuples and tensors as lists, non-finite floats as None), so a resumed
    run computes and writes exactly what an uninterrupted one does. Concurrent runs on a shared cache wait for the
    first one's cell instead of computing it twice.
    """
    path = cell_path(data, key)
    value, computed = cached_json(path, compute, lock=True)
    CELLS.append(computed)
    log.debug("%s cell %s", "computed" if computed else "reusing cached", path.name)
    return value


def cell_summary() -> dict:
    """Evaluation cells computed in this run and cells read back from the cache (a resumed run's finished ones)."""
    return {"computed": sum(CELLS), "reused": len(CELLS) - sum(CELLS)}


def evaluate_sets(data: TaskData, distilled_set_: DistilledSet, baselines: list[str], n_inits: int, finetune_inits: int = 0,
                  progress_file: Path | None = None) -> dict:
    """``metrics.json`` of ``python -m condense.distill`` for this set: distilled, decoded, the ``baselines`` (real
    subsets of the same size given their own learned labels and lrs) and the full-data reference. With
    ``progress_file``, each finished set is recorded there and a rerun resumes after it."""
    job = distill_settings(data, **distilled_set_.meta["config"]["distill"])
    evaluation = dataclasses.replace(
        job.eval, n_inits=n_inits, baselines=list(baselines),
        finetune=dataclasses.replace(job.eval.finetune, n_inits=finetune_inits),
    )
    job = dataclasses.replace(job, eval=evaluation)
    return evaluate_against_baselines(
        data.encoder, data.task, distilled_set_, data.train_labels, data.train_features, data.real(job.distill), data.test, job,
        progress_file=progress_file,
    )


def studied_set(job: BenchJob, data: TaskData, seed: int) -> DistilledSet:
    """The set the experiments other than scaling study: ``bench.ipc`` per class, ``bench.outer_steps`` steps."""
    return distilled(data, ipc=job.bench.ipc, outer_steps=job.bench.outer_steps, seed=seed)


def text_form(data: TaskData, texts: list[str], soft_labels: torch.Tensor) -> TrainingSet:
    """``texts`` re-tokenised, as any user of decoded or real text would train on them."""
    tokens = tokenize(data.encoder, texts, data.job.task.max_length)
    return TrainingSet(tokens["attention_mask"], soft_labels, input_ids=tokens["input_ids"]).to(data.encoder.device)


def training_form(data: TaskData, distilled_set_: DistilledSet, form: str) -> TrainingSet:
    """The set as models train on it: its embeddings, or its decoded text re-tokenised with the task's tokenizer."""
    return distilled_set_.training_set(form, data.encoder.tokenizer, data.job.task.max_length).to(data.encoder.device)


def learned_accuracy(data: TaskData, train: TrainingSet, inner: InnerProtocol, n_inits: int) -> dict:
    """Test accuracy under a distilled set's inner protocol, over ``n_inits`` fresh models."""
    return learned_protocol(data.encoder, train, data.test, inner, n_inits=n_inits, seed=data.job.eval.seed)

