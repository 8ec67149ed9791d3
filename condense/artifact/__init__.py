"""The distilled set as an artefact: :class:`DistilledSet` (:mod:`.distilled_set`), its folder format
(:mod:`.format`), the label space of a set merged from several tasks (:mod:`.label_space`), and merging sets into
super-datasets (:mod:`.merge`)."""

from condense.artifact.distilled_set import FORMS, ArtifactError, DistilledSet, InnerProtocol, TrainingSet
from condense.artifact.merge import MergeError, merge_distilled, split_merged

__all__ = ["FORMS", "ArtifactError", "DistilledSet", "InnerProtocol", "MergeError", "TrainingSet", "merge_distilled",
           "split_merged"]
