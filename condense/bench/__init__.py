"""The analysis suite: one experiment each, run by ``python -m condense.bench <experiment>``.

Every experiment is two modules. ``<experiment>.py`` runs it: ``run(job) -> dict``, the results, JSON-ready.
``<experiment>_report.py`` reads those results back: ``report(results, figures) -> list[str]``, the Markdown section
of ``docs/results.md``, drawing its plots into ``figures``; it may add ``summary(runs, figures)``, one section over
all of an experiment's results files. A report module imports no model, data or distillation
code, so the docs regenerate from results files alone; the names that key a results file (sets, recipes, factors)
live on the report side, and the running side imports them from there. (``compute`` has two more: its full-data
streams, ``compute_streams``, and the savings arithmetic on their curves, ``compute_savings``.)

:func:`condense.bench.report.write_report` assembles the whole page: these sections, and those of the main job
(``continual_report``) and of the single-task runs (``distill_report``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path

from condense.config.schema import EXPERIMENTS  # the config's list of choices is the list of modules here

__all__ = ["EXPERIMENTS", "reporter", "runner", "summarizer"]


def _checked(name: str) -> str:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
    return name


def runner(name: str) -> Callable[..., dict]:
    """``run(job)`` of experiment ``name``."""
    return import_module(f"condense.bench.{_checked(name)}").run


def reporter(name: str) -> Callable[[dict, Path], list[str]]:
    """``report(results, figures)`` of experiment ``name``."""
    return import_module(f"condense.bench.{_checked(name)}_report").report


def summarizer(name: str) -> Callable[[list[dict], Path], list[str]] | None:
    """``summary(runs, figures)`` of experiment ``name``, if it has one: a section over its preset and variant runs
    together, after their own sections."""
    return getattr(import_module(f"condense.bench.{_checked(name)}_report"), "summary", None)
