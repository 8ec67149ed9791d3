"""The one place where a device and a numeric precision are chosen.

Entry points resolve ``device`` and ``precision`` once (:func:`resolve_device`) and load the encoder there; every
tensor the library creates afterwards follows the encoder (``encoder.device``), so no other module names a device.
"""

from __future__ import annotations

import contextlib
import re

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
