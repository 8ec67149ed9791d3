"""Make the CUDA-only torchvision wheel importable on a CPU build of torch.

avalanche-lib requires torchvision, and the only torchvision wheel that matches the pinned torch is a CUDA
build whose import fails on CPU torch (``operator torchvision::nms does not exist``). transformers imports
torchvision lazily too, so the failure also breaks Hugging Face model classes. Registering the schemas of the
two operators torchvision checks at import time is enough: condense never calls them. This module must be
imported before anything imports torchvision; ``condense/__init__.py`` does that. Where the real operators
load (a matching CPU or CUDA build), it does nothing.
"""

import importlib.util
from pathlib import Path

import torch

_MISSING_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # kept alive: dropping the Library object would unregister the schemas


def register_missing_torchvision_ops() -> None:
    global _library
    if _library is not None:
        return
    if _real_ops_load():
        return
    missing = [name for name in _MISSING_SCHEMAS if not _op_exists(name)]
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        _library.define(_MISSING_SCHEMAS[name])


def _op_exists(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True


def _real_ops_load() -> bool:
    """True where torchvision is absent or its compiled operators load on this torch."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True
    for extension in Path(spec.origin).parent.glob("_C*.so"):
        try:
            torch.ops.load_library(str(extension))
        except OSError:
            return False
        return True
    return False
