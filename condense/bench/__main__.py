"""``python -m condense.bench <experiment> [hydra overrides]`` (or ``condense-bench``): one experiment of the suite,
or ``all``.

Writes ``<results_dir>/bench_<experiment>.json`` with the command, preset, machine and wall time, and how many
distilled sets and evaluation cells it reused from the cache (an interrupted experiment rerun resumes at its
first unfinished cell and writes what an uninterrupted run writes, timings aside), then, when
``report`` is on and a ``docs/`` folder stands beside the results folder's parent (a checkout), regenerates
``docs/results.md`` and its figures from every results file there (:func:`condense.bench.report.write_report`).
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from pathlib import Path

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from condense.config.parsing import ConfigError, compose
from condense.config.schema import EXPERIMENTS
from condense.config.bench import BenchJob

log = logging.getLogger("condense.bench")
USAGE = f"usage: condense-bench <{'|'.join(EXPERIMENTS)}|all> [overrides, e.g. bench=paper eval=paper device=cuda]"


def run_experiment(name: str, job: BenchJob, command: str) -> dict:
    """Run experiment ``name`` under ``job`` and write its results file; returns the results."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)} or 'all'")
    import torch  # here, not at the top: a bad command line should fail before torch's stack loads

    from condense.bench import common
    from condense.cache import atomic_write_json, to_jsonable
    from condense.report.tables import machine

    module = importlib.import_module(f"condense.bench.{name}")
    torch.set_num_threads(job.threads)
    common.LEDGER.clear()
    common.CELLS.clear()
    started = time.perf_counter()
    results = module.run(job)
    stem = job.results_name or f"bench_{name}"
    results = {
        "experiment": name,
        "name": stem,
        "command": command,
        "preset": job.bench.name,
        "machine": machine(),
        "seconds": time.perf_counter() - started,
        "distillation": common.ledger_summary(),
        "cells": common.cell_summary(),
        "config": to_jsonable(job),
        **results,
    }
    log.info("%s: reusing %d cached cells, computed %d", name, results["cells"]["reused"], results["cells"]["computed"])
    path = Path(job.results_dir) / f"{stem}.json"
    atomic_write_json(path, results, indent=1)
    log.info("%s took %.1f min; wrote %s", name, results["seconds"] / 60, path)
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + USAGE)
        return
    if not argv or argv[0].startswith("-") or "=" in argv[0] or argv[0] not in (*EXPERIMENTS, "all"):
        raise SystemExit(USAGE)
    name, overrides = argv[0], argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        job = compose("bench", overrides)  # every value checked before any experiment starts
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        raise SystemExit(f"config error: {err}") from None
    names = EXPERIMENTS if name == "all" else (name,)
    started = time.perf_counter()
    for experiment in names:
        run_experiment(experiment, job, " ".join(["python -m condense.bench", experiment, *overrides]))
    if name == "all":
        log.info("the whole suite took %.1f min", (time.perf_counter() - started) / 60)
    docs = Path(job.results_dir).resolve().parent.parent / "docs"
    if job.report and docs.is_dir():
        from condense.bench.report import write_report

        write_report(Path(job.results_dir), docs / "results.md", docs / "figures")


if __name__ == "__main__":
    main()
