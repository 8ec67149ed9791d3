"""Atomic writes, locks and digests of condense.cache: what every on-disk cache entry relies on."""

import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from condense.cache import (
    atomic_directory,
    atomic_save_tensors,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    cache_dir,
    cached,
    digest,
    locked,
    read_json,
)

# Keys as the caches build them, and the names the code before condense.cache gave them (computed from it).
FEATURES_KEY = ("hidden states", "bert-tiny", "16", "1", "torch.float32", "stocks fell", "ünï")
DISTILLED_GROUPS = {
    "task": {"name": "sst2", "max_length": 64},
    "model": {"name": "minilm", "pooling": "mean"},
    "distill": {"ipc": 1, "lr": np.float32(0.5), "seeds": (1, 2)},
}
REFERENCE_KEY = {
    "kind": "linear-probe", "model": "minilm", "pooling": "mean", "task": {"name": "sst2", "max_length": 64},
    "settings": {"seed": 0, "probe_inits": 5}, "version": "0.1.0",
}


def test_digests_of_existing_keys_are_unchanged():
    assert digest(FEATURES_KEY) == "113520b8eaf7ded946300138"  # features.cached_tensors: NUL after each part
    assert digest(DISTILLED_GROUPS, length=12) == "3b8e5f12acaf"  # pipeline.cached_distillation_dir
    assert digest(REFERENCE_KEY) == "f3ae971fbc69187b05f7bd90"  # pipeline.reference
    assert len(digest("x", length=64)) == 64


def test_tuple_parts_do_not_collide_and_must_be_strings():
    assert digest(("ab", "c")) != digest(("a", "bc"))
    assert digest(("a", "b")) != digest(["a", "b"])  # a list is a JSON key, not parts
    with pytest.raises(TypeError, match="only str parts, got int"):
        digest(("a", 1))


def test_features_cache_entries_keep_their_names():
    from condense.models.features import cached_tensors

    cached_tensors(FEATURES_KEY, lambda: {"x": torch.arange(3)}, "a test entry")
    assert (cache_dir() / "features" / "113520b8eaf7ded946300138.safetensors").is_file()


def test_distilled_cache_folder_is_named_by_the_digest():
    from condense.jobs.distill_task import cached_distillation_dir

    path = cached_distillation_dir(DISTILLED_GROUPS, "sst2-head-ipc1-embedding")
    assert path == cache_dir() / "distilled" / "sst2-head-ipc1-embedding-3b8e5f12acaf"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CONDENSE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("CONDENSE_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "condense"


def test_atomic_writes_replace_and_leave_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "first")
    atomic_write_text(tmp_path / "a.txt", "second")
    atomic_write_json(tmp_path / "sub" / "b.json", {"x": np.float32(0.5), "nan": float("nan")})
    atomic_save_tensors(tmp_path / "c.safetensors", {"t": torch.arange(4).view(2, 2).t()})  # not contiguous
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "a.txt", "c.safetensors", "sub", "sub/b.json"
    ]
    assert (tmp_path / "a.txt").read_text() == "second"
    assert read_json(tmp_path / "sub" / "b.json") == {"x": 0.5, "nan": None}
    assert load_file(tmp_path / "c.safetensors")["t"].tolist() == [[0, 2], [1, 3]]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def half_then_crash(temporary: Path) -> None:
        temporary.write_text("half of the n")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write({target: half_then_crash})
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert target.read_text() == "old"


def test_several_files_are_replaced_all_or_nothing(tmp_path):
    for name in ("a", "b", "c"):
        atomic_write_text(tmp_path / name, f"old {name}")

    def crash(temporary: Path) -> None:
        raise OSError("disk full")

    writers = {tmp_path / "a": lambda p: p.write_text("new a"), tmp_path / "b": lambda p: p.write_text("new b"),
               tmp_path / "c": crash}
    with pytest.raises(OSError, match="disk full"):
        atomic_write(writers)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a": "old a", "b": "old b", "c": "old c"}


def test_a_reader_never_sees_a_torn_file(tmp_path):
    target = tmp_path / "big.txt"
    contents = ["a" * 2_000_000, "b" * 2_000_000]
    atomic_write_text(target, contents[0])
    done = threading.Event()

    def write_alternately() -> None:
        for i in range(20):
            atomic_write_text(target, contents[i % 2])
        done.set()

    writer = threading.Thread(target=write_alternately)
    writer.start()
    while not done.is_set():
        text = target.read_text()
        assert text in contents, f"torn read of {len(text)} characters"
    writer.join()
    assert [p.name for p in tmp_path.iterdir()] == ["big.txt"]


def _hold_lock(path: str, log: str, name: str) -> None:
    with locked(path):
        with open(log, "a") as f:
            f.write(f"{name} in\n")
        time.sleep(0.3)
        with open(log, "a") as f:
            f.write(f"{name} out\n")


@pytest.mark.parametrize("workers", ["threads", "processes"])
def test_the_lock_serialises_two_writers(tmp_path, workers):
    log = tmp_path / "log"
    log.touch()
    args = [(str(tmp_path / "entry.json"), str(log), name) for name in ("first", "second")]
    if workers == "threads":
        runners = [threading.Thread(target=_hold_lock, args=a) for a in args]
    else:  # fork: the child has condense imported already, so it starts in milliseconds
        runners = [multiprocessing.get_context("fork").Process(target=_hold_lock, args=a) for a in args]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=30)
    lines = log.read_text().splitlines()
    assert len(lines) == 4
    first = lines[0].split()[0]
    second = "second" if first == "first" else "first"
    assert lines == [f"{first} in", f"{first} out", f"{second} in", f"{second} out"]


def test_cached_computes_once_then_reads(tmp_path):
    path = tmp_path / "sub" / "entry.json"
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    def save(p, value):
        atomic_write_json(p, value)

    assert cached(path, compute, read_json, save) == {"value": 1}
    assert cached(path, compute, read_json, save) == {"value": 1}
    assert len(calls) == 1
    # A load that rejects the entry (other settings) has it recomputed and overwritten.
    assert cached(path, compute, lambda p: None, save) == {"value": 2}
    assert read_json(path) == {"value": 2}


def test_cached_with_lock_computes_once_for_concurrent_callers(tmp_path):
    path = tmp_path / "entry.json"
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.3)  # long enough that the second caller arrives while the first computes
        return {"value": 7}

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cached(path, compute, read_json, atomic_write_json, lock=True)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [{"value": 7}, {"value": 7}]
    assert len(calls) == 1


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "models" / "copy"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_directory(target) as temporary:
            (temporary / "config.json").write_text("{}")
            raise RuntimeError("killed while saving the weights")
    assert list((tmp_path / "models").iterdir()) == []

    target.mkdir()
    (target / "stale.bin").write_text("from an interrupted copy")
    with atomic_directory(target) as temporary:
        (temporary / "config.json").write_text("{}")
        (temporary / "weights.bin").write_text("w")
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "weights.bin"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["copy"]


def test_temporary_files_get_the_default_permissions(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "x")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert path.stat().st_mode == plain.stat().st_mode  # not mkstemp's 0600


def test_atomic_directory_without_an_atomic_exchange_still_replaces_whole(tmp_path, monkeypatch):
    import condense.cache

    monkeypatch.setattr(condense.cache, "_exchange", lambda a, b: False)  # not Linux, or a file system without it
    target = tmp_path / "copy"
    for version in ("old", "new"):
        with atomic_directory(target) as temporary:
            (temporary / "config.json").write_text(version)
    assert (target / "config.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["copy"], "the old folder set aside is deleted"


def test_atomic_savefig_takes_the_format_from_the_target_not_the_temporary(tmp_path):
    from condense.cache import atomic_savefig
    from condense.report.plots import plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    atomic_savefig(fig, tmp_path / "a.png", dpi=50)
    atomic_savefig(fig, tmp_path / "a.svg")
    plt.close(fig)
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "a.svg").read_bytes()[:500]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.svg"]
