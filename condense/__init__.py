"""condense: distil text-classification datasets into a handful of synthetic examples."""

from condense._torchvision_ops import register_missing_torchvision_ops

# Before anything below (or a user) imports transformers or avalanche, which import torchvision.
register_missing_torchvision_ops()

__version__ = "0.1.0"
