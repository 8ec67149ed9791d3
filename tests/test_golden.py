"""Tiny end-to-end runs give exactly the numbers the library gave before the device and config refactor.

``tests/data/golden_tiny.json`` was written by this file (``CONDENSE_WRITE_GOLDEN=1 pytest tests/test_golden.py``)
at commit 1bcbc4d, before condense had a device or typed configs; on the CPU every metric must stay bit-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from condense.config import compose
from condense.pipeline import distill_task
from condense.sequence import run_sequence

GOLDEN = Path(__file__).parent / "data" / "golden_tiny.json"
WRITE = os.environ.get("CONDENSE_WRITE_GOLDEN") == "1"


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def distill_outcome(tiny_model_dirs, tiny_task_dir, out, mode, *pinned) -> dict:
    cfg = compose("config", [
        "task=local", f"task.path={tiny_task_dir}", f"model.name={tiny_model_dirs['bert']}", "eval=smoke",
        "distill.outer_steps=4", "distill.checkpoint_every=2", "distill.seq_len=8", "distill.real_batch_size=8",
        "distill.ipc=2", "threads=1", f"out={out}", mode, *pinned,
    ])
    distilled = distill_task(cfg)
    return {
        "metrics": distilled.metrics,
        "embeddings": digest(distilled.embeddings),
        "soft_labels": digest(distilled.soft_labels),
        "inner_lrs": distilled.inner_lrs.tolist(),
        "texts": distilled.texts,
        "outer_loss": distilled.meta["outer_loss"],
    }


def sequence_outcome(overrides: list[str]) -> dict:
    results = run_sequence(compose("run", overrides))
    keep = ("strategy", "scenario", "seed", "initial_accuracy", "accuracy_matrix", "avalanche", "curve", "memory_fit")
    return {"runs": [{k: run[k] for k in keep} for run in results["runs"]]}


def check(name: str, outcome: dict) -> None:
    outcome = json.loads(json.dumps(outcome))
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if WRITE:
        golden[name] = outcome
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    assert outcome == golden[name]


# The code paths are what is pinned, not the presets' values: distill=all has since started its head's inner lr
# at 3.0 instead of the schema's 0.1, so its run pins the value it had at 1bcbc4d.
PINNED = {"distill=all": ["distill.inner_lr=0.1"]}


@pytest.mark.parametrize("mode", ["distill=head", "distill=last_layer", "distill=all"])
def test_a_tiny_distillation_gives_the_recorded_metrics(tiny_model_dirs, tiny_task_dir, tmp_path, mode):
    check(mode, distill_outcome(tiny_model_dirs, tiny_task_dir, tmp_path / "run", mode, *PINNED.get(mode, [])))


# The strategies the golden file recorded; strategies added since (merged_learned) have no recorded numbers.
RECORDED_STRATEGIES = "continual.strategies=[naive,random_replay,herding_replay,distilled_replay,distilled_text_replay,joint,merged_only]"


def test_a_tiny_sequence_gives_the_recorded_accuracies(tiny_sequence_overrides, tmp_path):
    check("sequence", sequence_outcome([*tiny_sequence_overrides(tmp_path / "run", seeds="[0]"), RECORDED_STRATEGIES]))
