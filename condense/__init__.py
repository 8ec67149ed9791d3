"""condense: distil text-classification datasets into a handful of synthetic examples."""

from importlib import import_module

from condense._torchvision_ops import register_missing_torchvision_ops

# Before anything below (or a user) imports transformers or avalanche, which import torchvision.
register_missing_torchvision_ops()

__version__ = "0.1.0"

# Resolved on first use: importing them here would load transformers for every ``import condense``.
_EXPORTS = {
    "DistilledSet": "condense.artifact.distilled_set",
    "DataError": "condense.data.tasks",
    "Task": "condense.data.tasks",
    "load_task": "condense.data.tasks",
    "DistillConfig": "condense.config.schema",
    "compose": "condense.config.parsing",
    "load_encoder": "condense.models.encoders",
    "merge_distilled": "condense.artifact.merge",
    "split_merged": "condense.artifact.merge",
    "distill_task": "condense.jobs.distill_task",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'condense' has no attribute {name!r}")
