"""Configuration: the typed schemas of every config group (:mod:`.schema`, the analysis suite's in :mod:`.bench`), how
a command line becomes a checked job (:mod:`.parsing`), and where and how fast it runs (:mod:`.device`).

The YAML presets live in the top-level ``configs/`` folder, shipped in the wheel as the package ``condense.configs``;
each lists only what it changes from the schema's defaults.
"""

from condense.config.parsing import ConfigError, compose, parse, sequence_name, task_config

__all__ = ["ConfigError", "compose", "parse", "sequence_name", "task_config"]
