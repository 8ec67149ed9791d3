"""Every atomic writer against SIGKILL at random moments: what is left at the target is absent (never written), or
loads cleanly as one whole version, the previous one or the next; a distilled-set folder is never a mix of two."""

import json
import multiprocessing
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from condense.artifact.distilled_set import EMBEDDINGS_FILE, META_FILE, METRICS_FILE, TEXT_FILE, ArtifactError, DistilledSet
from condense.cache import (
    JOURNAL_PREFIX,
    atomic_directory,
    atomic_save_tensors,
    atomic_savefig,
    atomic_write_json,
    atomic_write_text,
    cached,
    finish_interrupted_writes,
    locked,
    read_json,
)
from condense.report.plots import plt  # the Agg backend: files only

# fork, not spawn: the child has torch and condense imported already, so it starts writing within milliseconds and
# a random delay lands in its writes instead of in seconds of imports.
FORK = multiprocessing.get_context("fork")
KILLS = 6
FILES = {EMBEDDINGS_FILE, META_FILE, TEXT_FILE, METRICS_FILE}
LABEL_NAMES = ["negative", "positive"]


def versioned_set(version: int, length: int = 128, dim: int = 1024) -> DistilledSet:
    """Six examples whose every file carries ``version``: 3 MB of embeddings, so a save takes milliseconds."""
    n = 6
    return DistilledSet(
        embeddings=torch.full((n, length, dim), float(version)),
        attention_mask=torch.ones(n, length, dtype=torch.int64),
        labels=torch.arange(2).repeat_interleave(3),
        soft_labels=torch.full((n, 2), 0.5),
        inner_lrs=torch.full((3,), 0.01),
        meta={"task": "toy", "label_names": LABEL_NAMES, "model": "tiny", "max_length": length,
              "inner": {"steps": 3, "lr_init": 0.01}, "version": version},
        texts=[f"version {version}"] * n,
        metrics={"version": version},
    )


def set_version(ds: DistilledSet) -> int:
    versions = {ds.meta["version"], ds.metrics["version"], *(int(t.split()[1]) for t in ds.texts),
                *ds.embeddings.unique().long().tolist()}
    assert len(versions) == 1, f"a mix of versions {sorted(versions)}"
    return versions.pop()


# Each writer: write(target, version) and read(target) -> the version there, None when there is none, raising when
# the target is torn or mixes versions.

def write_json(target: Path, v: int) -> None:
    atomic_write_json(target, {"version": v, "data": f"{v} " * 400_000}, indent=None)


def read_json_version(target: Path) -> int | None:
    if not target.exists():
        return None
    obj = read_json(target)
    assert obj["data"] == f"{obj['version']} " * 400_000
    return obj["version"]


def write_text(target: Path, v: int) -> None:
    atomic_write_text(target, f"{v}\n" * 500_000)


def read_text_version(target: Path) -> int | None:
    if not target.exists():
        return None
    lines = target.read_text().splitlines()
    assert len(lines) == 500_000 and len(set(lines)) == 1
    return int(lines[0])


def write_tensors(target: Path, v: int) -> None:
    atomic_save_tensors(target, {"a": torch.full((1 << 20,), float(v)), "b": torch.full((1 << 20,), v)},
                        metadata={"version": str(v)})


def read_tensors_version(target: Path) -> int | None:
    if not target.exists():
        return None
    with safe_open(str(target), framework="pt") as f:
        versions = {int(f.metadata()["version"]), *(f.get_tensor(k).unique().long().item() for k in ("a", "b"))}
    assert len(versions) == 1
    return versions.pop()


def write_directory(target: Path, v: int) -> None:
    with atomic_directory(target) as temporary:  # several files, as save_pretrained makes them
        save_file({"w": torch.full((1 << 20,), float(v))}, str(temporary / "weights.safetensors"))
        (temporary / "config.json").write_text(json.dumps({"version": v}))
        (temporary / "tokenizer").mkdir()
        (temporary / "tokenizer" / "vocab.txt").write_text(f"{v}\n" * 100_000)


def read_directory_version(target: Path) -> int | None:
    if not target.exists():
        return None
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*"))
    assert files == ["config.json", "tokenizer", "tokenizer/vocab.txt", "weights.safetensors"]
    versions = {read_json(target / "config.json")["version"], *map(int, (target / "tokenizer" / "vocab.txt").read_text().split()),
                *load_file(target / "weights.safetensors")["w"].unique().long().tolist()}
    assert len(versions) == 1
    return versions.pop()


def write_folder(target: Path, v: int) -> None:
    versioned_set(v).save(target)


def read_folder_version(target: Path) -> int | None:
    try:
        ds = DistilledSet.load(target)  # finishes an interrupted save first
    except ArtifactError:
        assert not target.exists() or not FILES & {p.name for p in target.iterdir()}, "an incomplete folder"
        return None
    return set_version(ds)


NOISE = np.random.default_rng(0).random((700, 700, 3))  # incompressible: a PNG of about 1.5 MB


def write_figure(target: Path, v: int) -> None:
    fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
    ax.imshow(NOISE)
    ax.set_title(f"version {v}")
    atomic_savefig(fig, target, metadata={"Title": f"version {v}"})
    plt.close(fig)


def read_figure_version(target: Path) -> int | None:
    if not target.exists():
        return None
    with Image.open(target) as image:
        image.load()  # decodes every chunk: a torn PNG raises here
        assert image.format == "PNG"
        return int(image.text["Title"].split()[1])


WRITERS = {
    "json": (write_json, read_json_version, "entry.json"),
    "text": (write_text, read_text_version, "results.md"),
    "tensors": (write_tensors, read_tensors_version, "checkpoint.safetensors"),
    "directory": (write_directory, read_directory_version, "copy"),
    "folder": (write_folder, read_folder_version, "distilled"),
    "figure": (write_figure, read_figure_version, "curves.png"),
}


def _write_forever(name: str, target: str, log: str, first: int, running) -> None:
    write = WRITERS[name][0]
    running.set()
    for version in range(first, first + 10_000):  # until killed
        write(Path(target), version)
        with open(log, "a") as f:
            f.write(f"{version}\n")


def leftovers(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob(".*") if p.name.endswith(".tmp")}


def logged(log: Path) -> list[int]:
    return [int(v) for v in log.read_text().split()]


def wait_for(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_writer_killed_at_random_leaves_a_whole_version(tmp_path, name):
    write, read, filename = WRITERS[name]
    started = time.perf_counter()
    write(tmp_path / "timing" / filename, 1)  # about how long one version takes here, now
    seconds = time.perf_counter() - started
    rng = random.Random(f"kill {name}")
    target, current, torn_writes = tmp_path / "target" / filename, None, 0
    target.parent.mkdir()
    for round_ in range(KILLS):
        log, first = tmp_path / f"log{round_}", 1000 * (round_ + 1)
        log.touch()
        before = leftovers(target.parent)
        running = FORK.Event()
        child = FORK.Process(target=_write_forever, args=(name, str(target), str(log), first, running))
        child.start()
        assert running.wait(timeout=30)
        # Let it finish a random number of versions (none the first time), wait until its next write has begun,
        # then kill it at a random moment from there on (at once the first time, so that write is surely torn).
        finished = 0 if round_ == 0 else rng.randint(1, 3)
        try:
            began = wait_for(lambda: len(logged(log)) >= finished and leftovers(target.parent) - before)  # noqa: B023
            time.sleep(0 if round_ == 0 else rng.uniform(0.0, 1.2) * seconds)
        finally:
            child.kill()
            child.join(timeout=30)
        assert child.exitcode == -9, "the writer failed before it was killed"
        assert began, f"no temporary file appeared beside {target}: not an atomic write"
        written = logged(log)
        # The last version it finished, or one it finished while being killed before it could log it.
        allowed = {written[-1], written[-1] + 1} if written else {current, first}
        current = read(target)
        assert current in allowed, f"kill {round_}: found version {current}, expected one of {allowed}"
        torn_writes += bool(leftovers(target.parent) - before)
    assert current is not None
    assert torn_writes, "no kill landed inside a write"


def _crash_after_first_rename(folder: str) -> None:
    replace = os.replace

    def replace_then_die(source, destination):
        replace(source, destination)
        if Path(destination).name == EMBEDDINGS_FILE:  # new embeddings in place, the other three not yet
            os._exit(3)

    os.replace = replace_then_die
    versioned_set(2).save(folder)
    os._exit(0)


def crashed_between_renames(folder: Path) -> None:
    versioned_set(1).save(folder)
    child = FORK.Process(target=_crash_after_first_rename, args=(str(folder),))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 3
    # On disk it is a mix: what a reader would see without the journal.
    assert load_file(folder / EMBEDDINGS_FILE)["embeddings"].unique().tolist() == [2.0]
    assert read_json(folder / META_FILE)["version"] == 1
    assert len(list(folder.glob(f"{JOURNAL_PREFIX}*"))) == 1


def test_a_save_killed_between_two_renames_is_rolled_forward_on_load(tmp_path):
    crashed_between_renames(tmp_path)
    assert set_version(DistilledSet.load(tmp_path)) == 2
    assert {p.name for p in tmp_path.iterdir()} == FILES, "no journal, no temporary left"


def test_a_roll_forward_tolerates_renames_done_by_someone_else(tmp_path):
    crashed_between_renames(tmp_path)
    journal = next(tmp_path.glob(f"{JOURNAL_PREFIX}*"))
    temporary, target = json.loads(journal.read_text())["renames"][1]  # a concurrent reader got to this one first
    os.replace(tmp_path / temporary, tmp_path / target)
    assert finish_interrupted_writes(tmp_path) == 1
    assert finish_interrupted_writes(tmp_path) == 0
    assert set_version(DistilledSet.load(tmp_path)) == 2


def test_the_next_save_finishes_an_interrupted_one_before_its_own(tmp_path):
    crashed_between_renames(tmp_path)
    versioned_set(3).save(tmp_path)  # the old journal's renames must not land on top of these files later
    assert finish_interrupted_writes(tmp_path) == 0
    assert set_version(DistilledSet.load(tmp_path)) == 3
    assert {p.name for p in tmp_path.iterdir()} == FILES


def test_an_exception_between_renames_leaves_the_journal_to_finish(tmp_path, monkeypatch):
    versioned_set(1).save(tmp_path)
    replace = os.replace

    def fail_after_embeddings(source, destination):
        if Path(destination).name == TEXT_FILE:
            raise OSError("I/O error")
        replace(source, destination)

    monkeypatch.setattr(os, "replace", fail_after_embeddings)
    with pytest.raises(OSError, match="I/O error"):
        versioned_set(2).save(tmp_path)
    monkeypatch.undo()
    assert len(leftovers(tmp_path)) == 3, "the temporaries the journal names are kept"
    assert set_version(DistilledSet.load(tmp_path)) == 2
    assert {p.name for p in tmp_path.iterdir()} == FILES


def test_a_single_file_needs_no_journal(tmp_path, monkeypatch):
    moved = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda source, destination: (moved.append(Path(destination).name),
                                                                    replace(source, destination)))
    atomic_write_text(tmp_path / "a.txt", "x")
    assert moved == ["a.txt"]


def _compute_entry(path: str, calls: str, out: str, barrier) -> None:
    def compute() -> dict:
        with open(calls, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # the other process asks for the entry meanwhile
        return {"value": 42}

    barrier.wait()
    atomic_write_json(out, cached(path, compute, read_json, atomic_write_json, lock=True))


def test_two_processes_sharing_a_cache_entry_compute_it_once(tmp_path):
    calls, barrier = tmp_path / "calls", FORK.Barrier(2)
    calls.touch()
    children = [FORK.Process(target=_compute_entry, args=(str(tmp_path / "entry.json"), str(calls),
                                                          str(tmp_path / f"out{i}.json"), barrier)) for i in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
    assert [child.exitcode for child in children] == [0, 0]
    assert len(calls.read_text().split()) == 1
    assert [read_json(tmp_path / f"out{i}.json") for i in range(2)] == [{"value": 42}] * 2


def _hold_forever(path: str, held: str) -> None:
    with locked(path):
        Path(held).touch()
        time.sleep(60)


def test_a_process_killed_holding_the_lock_does_not_block_the_next(tmp_path):
    held = tmp_path / "held"
    child = FORK.Process(target=_hold_forever, args=(str(tmp_path / "entry.json"), str(held)))
    child.start()
    deadline = time.monotonic() + 30
    while not held.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    child.kill()
    child.join(timeout=30)
    started = time.monotonic()
    with locked(tmp_path / "entry.json"):
        assert time.monotonic() - started < 5
