"""``python -m condense.bench <experiment> [hydra overrides]``: run one experiment of the suite (or ``all``).

Writes ``<results_dir>/bench_<experiment>.json`` with the command, preset, machine and wall time, then, in a
checkout, regenerates ``docs/results.md`` and its figures from every committed results file
(``benchmarks/report.py``).
"""

from __future__ import annotations

import importlib
import json
import logging
import runpy
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from condense.artifact import to_jsonable
from condense.bench import EXPERIMENTS, common
from condense.pipeline import CONFIG_DIR
from condense.report import machine

log = logging.getLogger("condense.bench")
REPORT_SCRIPT = Path(CONFIG_DIR).parent / "benchmarks" / "report.py"


def run_experiment(name: str, cfg: DictConfig, command: str) -> dict:
    """Run experiment ``name`` under ``cfg`` and write its results file; returns the results."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)} or 'all'")
    module = importlib.import_module(f"condense.bench.{name}")
    torch.set_num_threads(cfg.threads)
    common.LEDGER.clear()
    started = time.perf_counter()
    results = module.run(cfg)
    stem = cfg.results_name or f"bench_{name}"
    results = {
        "experiment": name,
        "name": stem,
        "command": command,
        "preset": cfg.bench.name,
        "machine": machine(),
        "seconds": time.perf_counter() - started,
        "distillation": common.ledger_summary(),
        "config": to_jsonable(cfg),
        **results,
    }
    path = Path(cfg.results_dir) / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(results), indent=1) + "\n")
    log.info("%s took %.1f min; wrote %s", name, results["seconds"] / 60, path)
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise SystemExit(f"usage: python -m condense.bench <{'|'.join(EXPERIMENTS)}|all> [overrides, e.g. bench=paper]")
    name, overrides = argv[0], argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("bench", overrides=overrides)
    names = EXPERIMENTS if name == "all" else (name,)
    started = time.perf_counter()
    for experiment in names:
        run_experiment(experiment, cfg, " ".join(["python -m condense.bench", experiment, *overrides]))
    if name == "all":
        log.info("the whole suite took %.1f min", (time.perf_counter() - started) / 60)
    if cfg.report and REPORT_SCRIPT.exists():
        runpy.run_path(str(REPORT_SCRIPT), run_name="__main__")


if __name__ == "__main__":
    main()
