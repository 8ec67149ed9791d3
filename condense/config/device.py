"""The one place where a device and a numeric precision are chosen.

Entry points resolve ``device`` and ``precision`` once (:func:`resolve_device`) and load the encoder there; every
tensor the library creates afterwards follows the encoder (``encoder.device``), so no other module names a device.
"""

from __future__ import annotations

import contextlib
import re
import time

import torch

from condense.config.schema import PRECISIONS

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU; ``cuda``/``cuda:N`` must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device(name)
    if name == "cuda" or _CUDA_INDEX.fullmatch(name):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={name!r}: this machine has no CUDA device (torch {torch.__version__}); use device=cpu or auto"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device(name)
    raise ValueError(f"device={name!r}: choose one of {list(DEVICES)}")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for forward passes on ``device``; a no-op context in fp32, so fp32 results are unchanged."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {list(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def set_tf32(enabled: bool) -> None:
    """TF32 tensor cores for fp32 matrix multiplies and convolutions on CUDA (``tf32``); no effect on a CPU."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the work queued on ``device`` has finished: CUDA kernels run asynchronously,
    so a clock read without synchronising would time the queueing, not the work. Every timing reads this clock."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def gpu_slots(name: str) -> int | None:
    """How many jobs of a sweep may share the GPUs the device ``name`` stands for: one per visible GPU for ``cuda``
    (and ``auto`` where CUDA exists), one for ``cuda:N``; None for the CPU."""
    if name == "cpu" or not torch.cuda.is_available():
        return None
    return torch.cuda.device_count() if name in ("auto", "cuda") else 1


@contextlib.contextmanager
def without_tf32():
    """Full fp32 matrix multiplies for the block, whatever ``tf32`` says (the cached references are the same for all)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    set_tf32(False)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
