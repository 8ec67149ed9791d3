"""Sweeps: ``python -m condense.distill -m task=sst2,rotten_tomatoes distill.seed=0,1`` (Hydra multirun) on the
launchers of ``configs/hydra/launcher/`` and the search of ``configs/hydra/sweeper/``.

Every job of a sweep writes its artefact into its own job folder, ``<hydra.sweep.dir>/<hydra.sweep.subdir>``, never
into ``out``: two jobs of a sweep share every key but the swept ones, and a shared ``out`` would have them overwrite
each other. When the sweep ends its folders are collected into one table (:mod:`condense.jobs.collect`);
``python -m condense.sweep collect DIR`` (``condense-sweep collect DIR``) does the same for any folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from condense.config.parsing import ConfigError
from condense.config.schema import DistillJob

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which a batch scheduler narrows), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parallel_jobs(threads: int, device: str = "auto") -> int:
    """Jobs a sweep runs at once here: as many as fit the cores at ``threads`` each, at least one. Measured on 2
    cores: two 2-thread jobs ran 10-25x slower than two 1-thread ones, so jobs x threads must not exceed the cores.
    On GPUs (``device`` cuda, or auto where CUDA exists) at most one job per visible GPU, each on its own
    (:func:`claim_gpu`); a named ``cuda:N`` runs one job at a time."""
    from condense.config.device import gpu_slots  # here: the command line is checked before torch's stack loads

    jobs = max(1, usable_cores() // max(1, int(threads)))
    gpus = gpu_slots(str(device))
    return jobs if gpus is None else max(1, min(jobs, gpus))


OmegaConf.register_new_resolver("parallel_jobs", parallel_jobs, replace=True)

_CLAIMED: list = []  # the GPU lock this worker process holds for its current job


def claim_gpu(count: int, folder: Path, poll_seconds: float = 1.0) -> int:
    """The index of a GPU no other job of this machine holds, held by this process until its next claim (a sweep's
    worker runs one job at a time): a lock file per GPU in ``folder``. Waits while all ``count`` are held."""
    from filelock import FileLock, Timeout

    for lock in _CLAIMED:
        lock.release()
    _CLAIMED.clear()
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(count):
            lock = FileLock(str(folder / f"gpu-{index}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            _CLAIMED.append(lock)
            return index
        time.sleep(poll_seconds)


def in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def prepare(job: DistillJob, hydra: DictConfig | None = None) -> DistillJob:
    """A sweep's job as it runs: its artefact in its own job folder; an Optuna sweep only over search trials.
    ``hydra``: the job's Hydra config, by default the running one's when this process runs a sweep's job."""
    if hydra is None:
        if not in_sweep():
            return job
        hydra = HydraConfig.get()
    if "optuna" in str(hydra.sweeper.get("_target_", "")).lower() and not job.search.enabled:
        raise ConfigError("an Optuna sweep needs search.enabled=true, which scores every trial on a validation split "
                          "of the training rows instead of the test split; use hydra/sweeper=distill_search")
    job.out = hydra.runtime.output_dir
    from condense.config.device import gpu_slots

    gpus = gpu_slots(job.device)
    if gpus is not None and gpus > 1 and "Joblib" in str(OmegaConf.select(hydra, "launcher._target_", default="")):
        # The parallel launcher's jobs share this machine's GPUs: each takes one the others do not hold.
        from condense.cache import cache_dir

        job.device = f"cuda:{claim_gpu(gpus, cache_dir() / 'gpu-locks')}"
        log.info("sweep job %s on %s", OmegaConf.select(hydra, "job.num"), job.device)
    return job


def sweep_overrides(config: DictConfig) -> list[str]:
    return list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))


class SweepCallbacks(Callback):
    """``hydra.callbacks.sweep`` of ``configs/config.yaml``: checks a sweep's command line before any job starts, and
    collects the sweep folder into one table when the last job has finished."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        keys = {override.split("=", 1)[0].lstrip("+~") for override in sweep_overrides(config)}
        if "out" in keys:
            # Hydra reports a callback's exception as a warning and goes on; exiting is the only way to stop here.
            raise SystemExit("config error: in a sweep (-m) every job writes its artefact into its own folder under "
                             "hydra.sweep.dir; pass hydra.sweep.dir=DIR instead of out=DIR")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Here: torch's stack loads only once every job has finished.
        from condense.jobs.collect import collect, write

        folder = Path(str(config.hydra.sweep.dir))
        collection = collect(folder)
        written = write(collection)
        log.info("collected %d artefacts of %s into %s:\n%s", len(collection.rows), folder,
                 ", ".join(str(p) for p in written), collection.markdown())


def main(argv: list[str] | None = None) -> int:
    """``condense-sweep collect DIR [DIR ...]``: write each folder's table (``sweep.md``, ``sweep.json``, and
    ``best.yaml`` after a search) and print it; exit status 1 when a folder holds a job without a readable artefact."""
    parser = argparse.ArgumentParser(prog="condense-sweep", description="Collect every artefact folder under a sweep's "
                                     "(or any) folder into one table: DIR/sweep.md, DIR/sweep.json, and DIR/best.yaml "
                                     "after a search. Exit status 1 when a job left no readable artefact.")
    commands = parser.add_subparsers(dest="command", required=True)
    collect_parser = commands.add_parser("collect", help="collect every artefact folder under DIR into one table")
    collect_parser.add_argument("folders", nargs="+", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from condense.jobs.collect import collect, write

    status = 0
    for folder in args.folders:
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
        collection = collect(folder)
        written = write(collection)
        log.info("wrote %s", ", ".join(str(p) for p in written))
        sys.stdout.write(collection.markdown() + "\n")  # the command's output, as --cfg job prints a config
        status = status or int(bool(collection.problems))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
