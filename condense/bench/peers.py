"""Peers' released distilled sets beside condense's, on the same learner, recipe and test sample.

A peer's sets are JSON-lines files, ``k{K}/*.jsonl`` under ``bench.peers.path`` (one object per line with a text
and a label column), as DiLM (Maekawa et al., NAACL 2024 Findings) released its SST-2 sets. Each set is trained on
by the seed table's recipe from ``n_inits`` fresh models and tested on the task's encoder-test sample; condense's
sets of the same k are the seed table's (:func:`condense.bench.seed_table.set_runs`, the same cached cells, so a
seed-table run of the same config makes this one nearly free). Cells: mean ± std over sets × fresh models.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from condense.bench.common import TaskData, cell, task_data, text_form
from condense.bench.seed_table import pool_seeds, set_runs
from condense.cache import to_jsonable
from condense.config.bench import BenchJob
from condense.data.files import default_data_dir
from condense.eval.protocols import finetune_protocol
from condense.report.tables import pooled, summarize_values

log = logging.getLogger(__name__)


def peer_folder(path: str | None, name: str) -> Path:
    """``path``, or the peer's folder under the shared folder beside the datasets (``shared/peers/<name>``)."""
    return Path(path) if path is not None else default_data_dir().parent / "peers" / name


def read_peer_set(file: Path, text_column: str, label_column: str, num_classes: int) -> tuple[list[str], torch.Tensor]:
    """One released set: its texts and labels; a missing column or a label outside the task's classes fails naming
    the file, line and column."""
    texts, labels = [], []
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        for column in (text_column, label_column):
            if column not in row:
                raise ValueError(f"{file}, line {number}: no column {column!r} (columns: {sorted(row)})")
        label = row[label_column]
        if not isinstance(label, int) or not 0 <= label < num_classes:
            raise ValueError(f"{file}, line {number}: {label_column}={label!r} is not a class index in [0, {num_classes})")
        texts.append(str(row[text_column]))
        labels.append(label)
    if not texts:
        raise ValueError(f"{file}: no examples")
    return texts, torch.tensor(labels)


def peer_runs(job: BenchJob, data: TaskData, folder: Path, k: int) -> dict:
    """The recipe on every released set of k per class: per-set summaries and their pool."""
    peers, recipe = job.bench.peers, job.bench.seed_table.recipe
    files = sorted((folder / f"k{k}").glob("*.jsonl"))[: peers.n_sets]
    if not files:
        raise FileNotFoundError(f"{folder / f'k{k}'}: no *.jsonl sets of {k} per class")
    runs = []
    for file in tqdm(files, desc=f"{peers.name} k={k}", leave=False):
        texts, labels = read_peer_set(file, peers.text_column, peers.label_column, data.task.num_classes)
        key = {"peer": peers.name, "file": file.name, "k": k, "texts": texts, "labels": labels.tolist(),
               "n_inits": peers.n_inits, "recipe": to_jsonable(recipe), "protocol": "finetune"}
        train = lambda texts=texts, labels=labels: text_form(data, texts, F.one_hot(labels, data.task.num_classes).float())
        runs.append(cell(data, key, lambda train=train: finetune_protocol(data.encoder, train(), data.test, recipe,
                                                                          n_inits=peers.n_inits, seed=data.job.eval.seed)))
    return {"sets": len(runs), "finetune": pooled(runs), "per_set": [r["mean"] for r in runs],
            "sets_spread": summarize_values([r["mean"] for r in runs])}


def committed_entire(results_dir: Path, task: str, model: str) -> dict | None:
    """The entire-data fine-tuning reference of ``task`` from the first seed-table results file in ``results_dir`` (of
    ``model``) that has it, with the file's name: an hour of CPU per seed is not recomputed for a ratio."""
    for path in sorted(results_dir.glob("bench_seed_table*.json")):
        results = json.loads(path.read_text())
        entire = results.get("tasks", {}).get(task, {}).get("entire")
        if results.get("config", {}).get("model", {}).get("name") == model and entire:
            return {**entire, "from": path.name}
    return None


def run(job: BenchJob) -> dict:
    peers = job.bench.peers
    data = task_data(job, peers.task)
    folder = peer_folder(peers.path, peers.name)
    per_k = {}
    for k in peers.ks:
        per_k[str(k)] = {"peer": peer_runs(job, data, folder, k),
                         "condense": pool_seeds([set_runs(job, data, k, seed) for seed in job.bench.seeds])}
        log.info("%s k=%d: %s %.1f", data.name, k, peers.name, 100 * per_k[str(k)]["peer"]["finetune"]["mean"])
    return {"task": data.name, "peer": peers.name, "folder": str(folder), "ks": per_k,
            "test_examples": len(data.test.token_labels),
            "entire": committed_entire(Path(job.results_dir), data.name, job.model.name)}
