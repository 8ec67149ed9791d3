"""Killed jobs resume at their finest unit: ``condense.run`` after its last finished strategy x scenario x seed run,
``condense.bench`` after its last finished evaluation cell; and the resumed job writes what an uninterrupted one
writes. The interrupted job is a real subprocess on a tiny model and tiny tasks, killed with SIGKILL once a unit is
on disk and started again; the uninterrupted reference runs in the test's process meanwhile (one interpreter start
fewer), with a cache of its own."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import condense
from condense.bench.__main__ import run_experiment
from condense.config.parsing import compose
from condense.jobs.sequence import run_sequence

REPO = Path(condense.__file__).resolve().parents[1]
TIMEOUT = 600  # seconds per job: generous, for a machine busy with other work
# Wall time, where it ran and how many runs it read back: the only fields a resumed run may change.
RUN_TIMINGS = {"seconds", "sets_seconds", "machine", "reused_runs"}
BENCH_RUN_FIELDS = RUN_TIMINGS | {"distill_seconds", "distillation", "cells"}  # and what this run reused


def job_env(cache: Path) -> dict[str, str]:
    """This environment with its own cache folder, the checkout first on the path, one thread."""
    env = {**os.environ, "CONDENSE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return env


def start(args: list[str], cwd: Path, cache: Path, log: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:  # the child holds its own copy of the descriptor
        return subprocess.Popen([sys.executable, *args], cwd=cwd, env=job_env(cache), stdout=out, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path) -> str:
    try:
        process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert process.returncode == 0, text[-4000:]
    return text


def kill_after_first_unit(process: subprocess.Popen, folder: Path, log: Path) -> dict[str, tuple[int, bytes]]:
    """SIGKILL ``process`` as soon as a ``*.json`` unit appears in ``folder``; every unit then there, with its mtime
    and bytes."""
    deadline = time.monotonic() + TIMEOUT
    while not list(folder.glob("*.json")):
        if process.poll() is not None:
            pytest.fail(f"the job ended ({process.returncode}) before any unit was on disk:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no unit appeared in time")
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    return {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in folder.glob("*.json")}


def untouched(folder: Path, finished: dict[str, tuple[int, bytes]]) -> bool:
    """Whether every unit finished before the kill is still the very file it was (not recomputed, not rewritten)."""
    return all((folder / name).stat().st_mtime_ns == mtime and (folder / name).read_bytes() == data
               for name, (mtime, data) in finished.items())


def without(value, fields: set[str]):
    """``value`` with the named fields removed at every depth."""
    if isinstance(value, dict):
        return {k: without(v, fields) for k, v in value.items() if k not in fields}
    if isinstance(value, list):
        return [without(v, fields) for v in value]
    return value


class Interrupted:
    """A job started in ``cwd``, killed on a thread once its first unit is in ``units``, then started again there; the
    test's own thread meanwhile computes the uninterrupted reference. As a context, it ends whatever it started."""

    def __init__(self, command: list[str], cwd: Path, cache: Path, units: Path):
        self.command, self.cwd, self.cache, self.units = command, cwd, cache, units
        self.log = cwd.parent / f"{cwd.name}.log"
        self.finished: dict[str, tuple[int, bytes]] = {}
        self.unfinished_outputs: list[str] = []  # the job's other JSON files when it was killed
        self.failure: BaseException | None = None
        self.resumed: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._kill_and_restart)

    def __enter__(self) -> Interrupted:
        self.first = start(self.command, self.cwd, self.cache, self.log)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        _end(self.first)  # when the test failed early; the thread then sees the job gone and starts no other
        self.thread.join(TIMEOUT)
        _end(self.resumed)

    def _kill_and_restart(self) -> None:
        try:
            self.finished = kill_after_first_unit(self.first, self.units, self.log)
            self.unfinished_outputs = sorted(p.name for p in self.cwd.rglob("*.json") if p.parent != self.units)
            self.resumed = start(self.command, self.cwd, self.cache, self.log)
        except BaseException as failure:  # noqa: BLE001 - reported on the test's thread
            self.failure = failure

    def wait(self) -> str:
        """The log of both runs, once the resumed one has ended well."""
        self.thread.join(TIMEOUT)
        if self.failure is not None:
            raise self.failure
        return finish(self.resumed, self.log)


def _end(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def in_a_folder_of_its_own(folder: Path, cache: Path, monkeypatch) -> None:
    """Run this process's job in ``folder`` (its relative out paths resolve there) with ``cache``."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("CONDENSE_CACHE", str(cache))


def test_a_killed_sequence_run_resumes_after_its_finished_runs_and_ends_as_an_uninterrupted_one(
    tiny_sequence_overrides, tmp_path, monkeypatch
):
    # 2 scenarios x 3 strategies x 1 seed = 6 units. The out folder is relative, so both jobs' configs are the same.
    overrides = [*tiny_sequence_overrides("run", "[0]"), "continual.strategies=[naive,random_replay,distilled_text_replay]",
                 "continual.scenarios=[task,class]"]
    with Interrupted(["-m", "condense.run", *overrides], tmp_path / "interrupted", tmp_path / "interrupted-cache",
                     tmp_path / "interrupted" / "run" / "runs") as job:
        # Meanwhile the uninterrupted job, here, with a cache of its own (distilling its sets anew), in a folder of
        # its own.
        in_a_folder_of_its_own(tmp_path / "whole", tmp_path / "whole-cache", monkeypatch)
        run_sequence(compose("run", overrides))
        log = job.wait()

    assert 1 <= len(job.finished) < 6 and "results.json" not in job.unfinished_outputs
    assert f"reusing {len(job.finished)} finished runs of 6, ran {6 - len(job.finished)}" in log
    assert untouched(job.units, job.finished) and len(list(job.units.glob("*.json"))) == 6
    resumed = json.loads((tmp_path / "interrupted" / "run" / "results.json").read_text())
    uninterrupted = json.loads((tmp_path / "whole" / "run" / "results.json").read_text())
    # The stored command is one a shell runs as it was run: overrides with spaces or brackets come back quoted.
    assert len(resumed["runs"]) == 6 and shlex.split(resumed["command"]) == ["python", "-m", "condense.run", *overrides]
    assert (resumed["reused_runs"], uninterrupted["reused_runs"]) == (len(job.finished), 0)
    # The command is None in-process: Hydra did not parse one.
    assert without(resumed, RUN_TIMINGS | {"command"}) == without(uninterrupted, RUN_TIMINGS | {"command"})


def test_a_job_listing_other_strategies_scenarios_or_seeds_reuses_the_runs_it_shares_and_no_others(
    tiny_sequence_overrides, tmp_path, monkeypatch, caplog
):
    in_a_folder_of_its_own(tmp_path / "jobs", tmp_path / "cache", monkeypatch)
    first = run_sequence(compose("run", [*tiny_sequence_overrides("run", "[0,1]"), "continual.strategies=[naive,random_replay]",
                                         "continual.scenarios=[task,class]"]))
    caplog.set_level("INFO", logger="condense.jobs.sequence")

    # Reordered strategies, one scenario, one seed of the two, and a strategy the first job did not run.
    subset = [*tiny_sequence_overrides("run", "[1]"), "continual.strategies=[random_replay,naive,joint]",
              "continual.scenarios=[class]"]
    again = run_sequence(compose("run", subset))
    assert "reusing 2 finished runs of 3, ran 1" in caplog.text
    shared = {(r["scenario"], r["strategy"], r["seed"]): r for r in first["runs"]}
    for run in again["runs"][:2]:
        assert run == shared[run["scenario"], run["strategy"], run["seed"]]

    caplog.clear()  # a setting a run depends on: nothing is reused
    run_sequence(compose("run", [*subset, "continual.lr=0.001"]))
    assert "reusing 0 finished runs of 3, ran 3" in caplog.text

    caplog.clear()  # settings that only another strategy reads: every run is reused
    run_sequence(compose("run", [*subset, "continual.lr=0.001", "continual.mean_matched_replay.steps=7"]))
    assert "reusing 3 finished runs of 3, ran 0" in caplog.text


def test_a_runs_key_keeps_the_strategy_owned_settings_of_its_own_strategy_only():
    from condense.jobs.sequence import _run_settings

    settings = {"continual": {"seeds": [0], "lr": 0.1, "refit": {"steps": 5}, "mean_matched_replay": {"steps": 9}},
                "model": {"name": "m"}}
    assert _run_settings(settings, "random_replay") == {"continual": {"lr": 0.1, "refit": {"steps": 5}}, "model": {"name": "m"}}
    assert _run_settings(settings, "mean_matched_replay")["continual"] == {"lr": 0.1, "refit": {"steps": 5},
                                                                           "mean_matched_replay": {"steps": 9}}


def test_a_killed_bench_experiment_resumes_after_its_finished_cells_and_ends_as_an_uninterrupted_one(
    tiny_model_dirs, tiny_task_dir, tmp_path, monkeypatch
):
    task = f"{{name: tiny, path: '{tiny_task_dir}'}}"
    # Two cells, (k=1, seed 0) and (k=2, seed 0). The results folder is relative, so both configs are the same.
    overrides = [f"model.name={tiny_model_dirs['bert']}", "eval=smoke", "threads=1", "report=false", "device=cpu",
                 f"bench.scaling.tasks=[{task}]", "bench.scaling.ks=[1,2]", "bench.scaling.seeds=[0]",
                 "bench.scaling.outer_steps=2", "bench.n_inits=3", "results_dir=results"]
    with Interrupted(["-m", "condense.bench", "scaling", *overrides], tmp_path / "interrupted",
                     tmp_path / "interrupted-cache", tmp_path / "interrupted-cache" / "evaluations") as job:
        # The uninterrupted one here, meanwhile, with the command line main() would record.
        in_a_folder_of_its_own(tmp_path / "whole", tmp_path / "whole-cache", monkeypatch)
        run_experiment("scaling", compose("bench", overrides), " ".join(["python -m condense.bench", "scaling", *overrides]))
        log = job.wait()

    assert len(job.finished) == 1 and "bench_scaling.json" not in job.unfinished_outputs
    assert "scaling: reusing 1 cached cells, computed 1" in log
    assert untouched(job.units, job.finished) and len(list(job.units.glob("*.json"))) == 2
    assert not list(job.units.glob("*.partial")), "a finished cell leaves no progress file behind"
    resumed = json.loads((tmp_path / "interrupted" / "results" / "bench_scaling.json").read_text())
    uninterrupted = json.loads((tmp_path / "whole" / "results" / "bench_scaling.json").read_text())
    assert resumed["cells"] == {"computed": 1, "reused": 1} and uninterrupted["cells"] == {"computed": 2, "reused": 0}
    assert resumed["command"] == uninterrupted["command"] and set(resumed["tasks"]["tiny"]["ks"]) == {"1", "2"}
    assert without(resumed, BENCH_RUN_FIELDS) == without(uninterrupted, BENCH_RUN_FIELDS)
