"""One task end to end: load, distil, decode, save, evaluate against baselines, save again.

``python -m condense.distill task=sst2 distill.ipc=1 out=DIR`` runs :func:`main`; :func:`distill_task` is the
same thing for a config built in Python (``hydra.compose``). The artefact is written as soon as distillation
ends, and checkpoints during it, so an evaluation that fails loses nothing already computed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

import condense
from condense.artifact import DistilledSet, to_jsonable
from condense.coresets import select_coreset
from condense.data import Task, check_examples_per_class, task_from_config
from condense.decode import decode_texts
from condense.distill import DistillConfig, RealData, SyntheticSet, distill, initial_set, learn_labels, real_examples_set
from condense.evaluate import (
    FinetuneRecipe,
    HeldOutData,
    TrainingSet,
    finetune_protocol,
    learned_protocol,
    linear_probe,
)
from condense.features import cache_dir, text_features, tokenize
from condense.models import Encoder, load_encoder

log = logging.getLogger(__name__)
SETS = ("distilled", "decoded", "random", "kcenters", "herding", "full")
BASELINES = ("random", "kcenters", "herding")


def distill_task(cfg: DictConfig) -> DistilledSet:
    """Distil (or reuse) the task's set, then evaluate it against the baselines; both saved in ``cfg.out``."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    task = task_from_config(cfg.task)
    encoder = load_encoder(cfg.model.name, cfg.model.pooling)
    config = DistillConfig(**cfg.distill)
    max_length = cfg.task.max_length
    train_labels = torch.tensor(task.train["label"])
    train_features = text_features(encoder, task.train["text"], max_length, f"{task.name} train texts")
    real = real_data(encoder, task, train_labels, train_features, max_length, config)
    distilled = distilled_set(cfg, encoder, task, real)

    test = held_out_data(encoder, task, max_length, cfg.eval)
    progress_file = out / "metrics.partial.json"
    distilled.metrics = evaluate_against_baselines(
        encoder, task, distilled, train_labels, train_features, real, test, cfg, progress_file
    )
    distilled.save(out)
    progress_file.unlink(missing_ok=True)
    log.info("results for %s (test accuracy, mean ± std over fresh models):\n%s", task.name, metrics_table(distilled.metrics))
    return distilled


def distilled_set(cfg: DictConfig, encoder: Encoder, task: Task, real: RealData | None = None) -> DistilledSet:
    """The set in ``cfg.out`` when it was made with this task, model and distill config; else distil and save it."""
    out = Path(cfg.out)
    distilled = finished_distillation(out, cfg)
    if distilled is not None:
        log.info("reusing the distilled set in %s, made with this task, model and distill config", out)
        return distilled
    config = DistillConfig(**cfg.distill)
    check_examples_per_class(task, config.ipc)
    train_labels = torch.tensor(task.train["label"])
    if real is None:
        features = None if config.trains_encoder else text_features(
            encoder, task.train["text"], cfg.task.max_length, f"{task.name} train texts"
        )
        real = real_data(encoder, task, train_labels, features, cfg.task.max_length, config)
    start = initial_set(encoder, task.train["text"], train_labels, task.num_classes, config.ipc, config.seq_len, config.seed)

    def save_checkpoint(state: SyntheticSet, step: int) -> None:
        artefact(encoder, task, state, cfg, {"outer_step": step}).save(out / "checkpoint")

    log.info("distilling %s: %d per class, inner loop trains %s", task.name, config.ipc, config.params)
    result = distill(encoder, real, start, task.num_classes, config, on_checkpoint=save_checkpoint)
    distilled = artefact(encoder, task, result, cfg, {"outer_step": config.outer_steps, "seconds": result.seconds})
    distilled.save(out)
    log.info("saved the distilled set to %s", out)
    return distilled


def cached_distillation_dir(groups: dict, label: str) -> Path:
    """Where the distilled set of these ``task``, ``model`` and ``distill`` configs is kept, keyed by their hash."""
    key = json.dumps(to_jsonable(groups), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "distilled" / f"{label}-{digest}"


def finished_distillation(out: Path, cfg: DictConfig) -> DistilledSet | None:
    """The artefact already in ``out`` when it was distilled with the same task, model and distill config."""
    if not (out / "meta.json").exists():
        return None
    previous = DistilledSet.load(out)
    current = OmegaConf.to_container(cfg, resolve=True)
    same = all(previous.meta["config"].get(group) == current[group] for group in ("task", "model", "distill"))
    finished = previous.meta["progress"]["outer_step"] == cfg.distill.outer_steps
    return previous if same and finished else None


def real_data(
    encoder: Encoder, task: Task, labels: torch.Tensor, features: torch.Tensor | None, max_length: int, config: DistillConfig
) -> RealData:
    if config.trains_encoder:
        return RealData(labels=labels, tokens=tokenize(encoder, task.train["text"], max_length))
    return RealData(labels=labels, features=features)


def held_out_data(encoder: Encoder, task: Task, max_length: int, eval_cfg: DictConfig) -> HeldOutData:
    """Frozen features of the whole test split, and tokens of a fixed subsample for models whose encoder trains.

    A trained encoder must re-encode the test set once per fresh model, which on a CPU costs minutes per model
    for the full split, so those models are tested on ``eval.encoder_test_examples`` examples drawn once.
    """
    labels = torch.tensor(task.test["label"])
    features = text_features(encoder, task.test["text"], max_length, f"{task.name} test texts")
    keep = fixed_subsample(len(labels), eval_cfg.encoder_test_examples)
    texts = [task.test["text"][i] for i in keep.tolist()]
    return HeldOutData(labels=labels, features=features, tokens=tokenize(encoder, texts, max_length), token_labels=labels[keep])


def fixed_subsample(total: int, size: int | None) -> torch.Tensor:
    """Sorted indices of ``size`` of ``total`` rows, the same draw in every run; all rows when size is None."""
    if size is None or size >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:size].sort().values


def artefact(encoder: Encoder, task: Task, state: SyntheticSet, cfg: DictConfig, progress: dict) -> DistilledSet:
    config = DistillConfig(**cfg.distill)
    return DistilledSet(
        embeddings=state.embeddings.float(),
        attention_mask=state.attention_mask.long(),
        labels=state.labels.long(),
        soft_labels=state.soft_labels.float(),
        inner_lrs=state.inner_lrs.float(),
        token_ids=state.token_ids.long(),
        texts=decode_texts(encoder, state.token_ids, state.attention_mask),
        meta={
            "task": task.name,
            "source": task.source,
            "label_names": task.label_names,
            "model": encoder.name,
            "tokenizer": encoder.name,
            "hidden_size": encoder.hidden_size,
            "pooling": encoder.pooling,
            "max_length": cfg.task.max_length,
            "inner": {
                "params": config.params,
                "n_layers": config.n_layers,
                "optimizer": config.inner_optimizer,
                "steps": config.inner_steps,
            },
            "progress": progress,
            "outer_loss": state.history,
            "config": OmegaConf.to_container(cfg, resolve=True),
        },
    )


def evaluate_against_baselines(
    encoder: Encoder,
    task: Task,
    distilled: DistilledSet,
    train_labels: torch.Tensor,
    train_features: torch.Tensor,
    real: RealData,
    test: HeldOutData,
    cfg: DictConfig,
    progress_file: Path | None = None,
) -> dict:
    """The ``metrics.json`` dict: every set of the same size under both training protocols.

    Each finished set is recorded in ``progress_file``, so a run that stops part way resumes from there.
    """
    config = DistillConfig(**cfg.distill)
    recipe = FinetuneRecipe(**cfg.eval.finetune.recipe)
    eval_cfg = OmegaConf.to_container(cfg.eval, resolve=True)
    unknown = set(cfg.eval.baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"eval.baselines: unknown {sorted(unknown)}; choose from {list(BASELINES)}")
    metrics: dict = {"learned": {}, "finetune": {}}
    if progress_file is not None and progress_file.exists():
        saved = json.loads(progress_file.read_text())
        if saved["eval"] == eval_cfg:
            metrics = saved["metrics"]
            log.info("resuming the evaluation: %s already done", sorted(metrics["learned"]))

    def training_set(name: str) -> tuple[TrainingSet, torch.Tensor]:
        if name == "distilled":
            return TrainingSet(distilled.attention_mask, distilled.soft_labels, inputs_embeds=distilled.embeddings), distilled.inner_lrs
        if name == "decoded":
            tokens = tokenize(encoder, distilled.texts, max(cfg.task.max_length, config.seq_len))
            return TrainingSet(tokens["attention_mask"], distilled.soft_labels, input_ids=tokens["input_ids"]), distilled.inner_lrs
        chosen = torch.from_numpy(select_coreset(name, train_features, train_labels, config.ipc, config.seed))
        texts = [task.train["text"][i] for i in chosen.tolist()]
        start = real_examples_set(encoder, texts, train_labels[chosen], cfg.task.max_length)
        labelled = learn_labels(encoder, real, start, task.num_classes, config)
        return TrainingSet(start.attention_mask, labelled.soft_labels, input_ids=start.token_ids), labelled.inner_lrs

    finetune_inits = cfg.eval.finetune.n_inits
    for name in ("distilled", "decoded", *cfg.eval.baselines):
        if name in metrics["learned"] and (name in metrics["finetune"] or not finetune_inits):
            continue
        train, lrs = training_set(name)
        metrics["learned"][name] = learned_protocol(
            encoder, train, test, lrs, params=config.params, n_layers=config.n_layers, optimizer=config.inner_optimizer,
            n_inits=cfg.eval.n_inits, seed=cfg.eval.seed, desc=f"learned protocol: {name}",
        )
        if finetune_inits:
            metrics["finetune"][name] = finetune_protocol(
                encoder, train, test, recipe, n_inits=finetune_inits, seed=cfg.eval.seed, desc=f"fine-tuning: {name}"
            )
        log.info("%s: learned %s, finetune %s", name, metrics["learned"][name], metrics["finetune"].get(name))
        if progress_file is not None:
            progress_file.write_text(json.dumps({"eval": eval_cfg, "metrics": metrics}))

    full_finetune_key = {k: eval_cfg[k] for k in ("seed", "encoder_test_examples", "full_finetune_examples", "full_finetune_inits")}
    finetune_full = None
    if finetune_inits or config.trains_encoder:
        finetune_full = reference(
            "finetune-full", encoder, cfg, {**full_finetune_key, "recipe": eval_cfg["finetune"]["recipe"]},
            lambda: full_finetune(encoder, task, train_labels, test, recipe, cfg),
        )
    if finetune_inits:
        metrics["finetune"]["full"] = finetune_full
    if config.trains_encoder:
        metrics["learned"]["full"] = finetune_full
    else:
        metrics["learned"]["full"] = reference(
            "linear-probe", encoder, cfg, {k: eval_cfg[k] for k in ("seed", "probe_inits")},
            lambda: linear_probe(train_features, train_labels, test, n_inits=cfg.eval.probe_inits, seed=cfg.eval.seed),
        )
    return metrics


def full_finetune(
    encoder: Encoder, task: Task, train_labels: torch.Tensor, test: HeldOutData, recipe: FinetuneRecipe, cfg: DictConfig
) -> dict:
    """The fine-tuning recipe on all the training data (or ``eval.full_finetune_examples`` of it)."""
    keep = fixed_subsample(len(train_labels), cfg.eval.full_finetune_examples)
    tokens = tokenize(encoder, [task.train["text"][i] for i in keep.tolist()], cfg.task.max_length)
    full = TrainingSet(tokens["attention_mask"], F.one_hot(train_labels[keep], task.num_classes).float(), input_ids=tokens["input_ids"])
    return finetune_protocol(
        encoder, full, test, recipe, n_inits=cfg.eval.full_finetune_inits, seed=cfg.eval.seed, desc="fine-tuning: full"
    )


def reference(kind: str, encoder: Encoder, cfg: DictConfig, settings: dict, compute: Callable[[], dict]) -> dict:
    """Full-data references do not depend on the distillation seed or config; compute each once and cache it."""
    key = json.dumps(to_jsonable({
        "kind": kind, "model": encoder.name, "pooling": encoder.pooling,
        "task": OmegaConf.to_container(cfg.task, resolve=True), "settings": settings, "version": condense.__version__,
    }), sort_keys=True)
    path = cache_dir() / "references" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Seeds run in parallel (benchmarks/distill_tasks.py --jobs 2); the lock makes the second one wait for the
    # first's result instead of computing the same reference again.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return json.loads(path.read_text())
        result = compute()
        path.write_text(json.dumps(result))
    return result


def metrics_table(metrics: dict) -> str:
    protocols = [p for p in ("learned", "finetune") if metrics.get(p)]
    lines = ["| set | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
    for name in SETS:
        cells = []
        for protocol in protocols:
            entry = metrics[protocol].get(name)
            cells.append("—" if entry is None else f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f} (n={entry['n']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# An absolute path: Hydra resolves a relative one against the package when run with ``python -m``.
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    distill_task(cfg)
