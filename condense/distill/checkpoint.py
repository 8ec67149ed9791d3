"""The outer loop's state on disk, so that a distillation killed at any moment continues where it stopped.

A checkpoint is one safetensors file, written atomically (:func:`condense.cache.atomic_save_tensors`): the
synthetic set's learned tensors (:meth:`condense.distill.synthetic.SyntheticSet.state`: the continuous inputs the
optimiser moves, not their projection onto tokens; the label logits; the log learning rates; the attention-label
logits when there are any), the outer optimiser's state, the random generator's state, the step and the loss
history. Resuming from it gives bit-identical tensors to a run that was never stopped (on
the same device and thread count). Its metadata holds the *identity* of the run (task, model and distill configs,
precision, device type, torch and condense versions): a checkpoint of another identity is never resumed; it is set aside under a new name and the log says
which keys differ.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import copy
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open

import condense
from condense.cache import atomic_save_tensors, to_jsonable
from condense.distill.synthetic import LEARNED

if TYPE_CHECKING:
    from condense.distill.synthetic import SyntheticSet

log = logging.getLogger(__name__)

FORMAT = "condense-outer-checkpoint"
VERSION = 1
FILE = "checkpoint.safetensors"


@dataclass
class OuterState:
    """Everything the outer loop needs to continue exactly where it stopped."""

    step: int  # outer steps done
    learned: dict[str, torch.Tensor]  # the synthetic set's learned tensors (SyntheticSet.state()), by name
    optimizer: dict | None  # the outer optimiser's state_dict()
    generator: torch.Tensor  # torch.Generator.get_state()
    history: list[float]  # outer loss per step done
    seconds: float  # outer-loop wall time spent so far, across restarts

    @classmethod
    def of(cls, step: int, synthetic: SyntheticSet, optimizer: torch.optim.Optimizer | None, generator: torch.Generator,
           history: list[float], seconds: float) -> OuterState:
        """Copies of the live state: the tensors move on after the checkpoint."""
        return cls(step, synthetic.state(), None if optimizer is None else copy.deepcopy(optimizer.state_dict()),
                   generator.get_state(), list(history), seconds)

    def restore(self, synthetic: SyntheticSet, optimizer: torch.optim.Optimizer | None, generator: torch.Generator) -> None:
        """Put this state into the synthetic set's live tensors, its optimiser and the loop's generator."""
        synthetic.load_state(self.learned)
        if optimizer is not None:
            optimizer.load_state_dict(self.optimizer)
        generator.set_state(self.generator)


def run_identity(job, device: torch.device) -> dict:
    """What makes two runs the same run: the task, model and distill configs, the precision and TF32, and where and
    with what it runs (device type, torch, condense), since only the same arithmetic resumes to the same tensors. The
    checkpoint interval is left out because it never changes the result, and so is the number of processes, which
    changes only the order of a sum (:mod:`condense.distributed`)."""
    distill = to_jsonable(job.distill)
    distill.pop("checkpoint_every", None)
    return {"task": to_jsonable(job.task), "model": to_jsonable(job.model), "distill": distill,
            "precision": job.precision, "tf32": job.tf32, "device": torch.device(device).type,
            "torch": torch.__version__, "condense": condense.__version__}


def save(path: Path, state: OuterState, identity: dict) -> None:
    tensors = {**state.learned, "generator": state.generator}
    groups = None
    if state.optimizer is not None:
        for index, entries in state.optimizer["state"].items():
            for name, value in entries.items():
                tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value)
        groups = state.optimizer["param_groups"]
    metadata = {"format": FORMAT, "version": str(VERSION), "step": str(state.step), "seconds": repr(state.seconds),
                "history": json.dumps(state.history), "identity": json.dumps(identity, sort_keys=True),
                "param_groups": json.dumps(to_jsonable(groups))}
    atomic_save_tensors(path, tensors, metadata)


def load(path: Path, identity: dict) -> OuterState | None:
    """The state in ``path`` when it was saved by a run of this ``identity``; None when there is none. A file that
    cannot be read, or that another run made, is renamed aside (``<name>.stale-<time>``) and reported."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        if metadata.get("format") != FORMAT or metadata.get("version") != str(VERSION):
            raise ValueError(f"not a version-{VERSION} {FORMAT} file")
        saved = json.loads(metadata["identity"])
    except Exception as err:  # safetensors raises its own error types for a damaged file
        set_aside(path, f"it cannot be read ({err})")
        return None
    if saved != identity:
        set_aside(path, f"it was made by a run with other settings: {', '.join(differences(saved, identity))}")
        return None
    optimizer = None
    groups = json.loads(metadata["param_groups"])
    if groups is not None:
        state: dict[int, dict] = {}
        for name, tensor in tensors.items():
            if name.startswith("optimizer."):
                _, index, key = name.split(".", 2)
                state.setdefault(int(index), {})[key] = tensor
        optimizer = {"state": state, "param_groups": groups}
    return OuterState(
        step=int(metadata["step"]), learned={name: tensors[name] for name in LEARNED if name in tensors},
        optimizer=optimizer, generator=tensors["generator"], history=json.loads(metadata["history"]),
        seconds=float(metadata["seconds"]),
    )


def set_aside(path: Path, why: str) -> Path:
    aside = path.with_name(f"{path.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
    path.replace(aside)
    log.warning("not resuming from the checkpoint %s: %s; moved it to %s and starting from step 0", path, why, aside.name)
    return aside


def differences(saved, current, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ, e.g. ``distill.lr_inputs: 0.01 -> 0.02``."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current)):
            found += differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} -> {current!r}"]
