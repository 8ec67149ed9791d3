"""Files that must never be seen half-written: the on-disk cache, artefacts, resumable results.

Everything condense keeps between runs (encoded features, distilled sets, full-data references, finished runs, the
dequantised SmolLM2 copy) lives under :func:`cache_dir` or an output folder, is named by a :func:`digest` of what
made it, and is written atomically: into a temporary file beside its target, flushed to disk, then moved into place
with ``os.replace``, so a crash or a parallel reader sees the old file or the new one, never a torn one. A write of
several files (a distilled-set folder) also commits a journal of its renames before making them, so a kill between
two renames is rolled forward by :func:`finish_interrupted_writes`: a reader that calls it sees the complete old
version or the complete new one, never a mix.
:func:`cached` is the read-or-compute-and-store pattern on top, and :func:`locked` makes concurrent processes
(``benchmarks/distill_tasks.py --jobs 2``) wait for one another instead of computing the same thing twice.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import errno
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from filelock import FileLock
from safetensors.torch import save_file

log = logging.getLogger(__name__)

__all__ = [
    "atomic_directory", "atomic_save_tensors", "atomic_savefig", "atomic_write", "atomic_write_json",
    "atomic_write_text", "cache_dir", "cached", "cached_json", "digest", "finish_interrupted_writes", "json_text",
    "locked", "read_json", "to_jsonable"
]

T = TypeVar("T")
DIGEST_LENGTH = 24  # hex characters: 96 bits, ample for a cache and short enough for a file name
JOURNAL_PREFIX, JOURNAL_SUFFIX = ".atomic-write.", ".journal"  # hidden, and unlike a temporary file's ".tmp"


def cache_dir() -> Path:
    """``$CONDENSE_CACHE``, default ``~/.cache/condense``; read on every call so tests can point it elsewhere."""
    return Path(os.environ.get("CONDENSE_CACHE", Path.home() / ".cache" / "condense"))


def digest(key: Any, length: int = DIGEST_LENGTH) -> str:
    """The first ``length`` hex characters of a sha256 of ``key``.

    A tuple of strings (the features cache: model, pooling, max length, then every text) hashes each part followed
    by a NUL byte, so no join of two parts collides with another; any other key hashes its canonical JSON,
    ``json.dumps(to_jsonable(key), sort_keys=True)``. Both schemes are what the caches used before this module, so
    existing entries keep their names.
    """
    hasher = hashlib.sha256()
    if isinstance(key, tuple):
        for part in key:
            if not isinstance(part, str):
                raise TypeError(f"a tuple key must hold only str parts, got {type(part).__name__}")
            hasher.update(part.encode("utf-8", "surrogatepass"))
            hasher.update(b"\0")
    else:
        hasher.update(json.dumps(to_jsonable(key), sort_keys=True).encode())
    return hasher.hexdigest()[:length]


def to_jsonable(obj: Any, _path: str = "$") -> Any:
    """Convert OmegaConf, numpy, torch, Path, enum and dataclass values recursively to JSON built-ins.

    Dict keys become strings, tuples and sets become lists, and non-finite floats become
    None so the output is strict JSON. Unknown types raise TypeError naming where they sit.
    """
    if isinstance(obj, enum.Enum):  # before str/int: StrEnum and IntEnum are subclasses
        return to_jsonable(obj.value, _path)
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), _path)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), _path)
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist(), _path)
    if isinstance(obj, Path):
        return str(obj)
    if type(obj).__module__.startswith("omegaconf"):  # by name: omegaconf is imported only when a config is passed
        from omegaconf import OmegaConf

        return to_jsonable(OmegaConf.to_container(obj, resolve=True), _path)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj), _path)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v, f"{_path}.{k}") for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        items = [to_jsonable(v, f"{_path}[]") for v in obj]
        # Sets have no order; sort when possible so the file is reproducible.
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{_path}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"cannot convert {type(obj).__name__} at {_path} to JSON")


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON of ``to_jsonable(obj)``, non-ASCII kept readable, with a final newline."""
    return json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def atomic_write(writers: Mapping[Path, Callable[[Path], None]]) -> None:
    """Write several files all or nothing: ``write(temporary)`` fills a temporary file beside each target, and only
    when every one succeeded are they moved into place, in the mapping's order. A failure while writing leaves every
    target as it was and no temporary file behind. With several files, the renames are first committed to a journal
    in the last target's folder, which :func:`finish_interrupted_writes` completes after a kill (or an exception)
    during them. Two processes writing the same files at once must hold :func:`locked`, or their renames interleave.
    """
    targets = [Path(target) for target in writers]
    for folder in dict.fromkeys(target.parent for target in targets):
        folder.mkdir(parents=True, exist_ok=True)
        finish_interrupted_writes(folder)  # an older write's pending renames must land before ours, never after
    staged: list[tuple[Path, Path]] = []
    committed = False
    try:
        for target, write in zip(targets, writers.values()):
            temporary = _new_temporary_file(target)
            staged.append((temporary, target))
            write(temporary)
            _fsync(temporary)
        if len(staged) < 2:  # one os.replace is atomic already: no journal
            for temporary, target in staged:
                os.replace(temporary, target)
                _fsync_folder(target.parent)
            return
        journal = targets[-1].parent / f"{JOURNAL_PREFIX}{uuid.uuid4().hex}{JOURNAL_SUFFIX}"
        renames = [[os.path.relpath(path, journal.parent) for path in pair] for pair in staged]
        journal_temporary = _new_temporary_file(journal)
        staged.append((journal_temporary, journal))  # deleted with the others until it is in place
        journal_temporary.write_text(json.dumps({"renames": renames}), encoding="utf-8")
        _fsync(journal_temporary)
        os.replace(journal_temporary, journal)
        staged.pop()
        _fsync_folder(journal.parent)  # the journal is durable before the first target changes
        committed = True
        _roll_forward(journal, staged)
    finally:
        if not committed:
            for temporary, _ in staged:
                temporary.unlink(missing_ok=True)


def finish_interrupted_writes(folder: str | os.PathLike) -> int:
    """Complete the multi-file writes into ``folder`` whose renames were interrupted (their journals are still
    there): move each temporary file still present onto its target, then delete the journal. Safe while the writer,
    or another process finishing the same journal, is still at it. Returns how many journals it finished."""
    folder = Path(folder)
    finished = 0
    for journal in sorted(folder.glob(f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}")):
        try:
            renames = json.loads(journal.read_text(encoding="utf-8"))["renames"]
        except FileNotFoundError:  # finished by its writer or another reader since the glob
            continue
        log.info("finishing an interrupted write into %s (%s)", folder, journal.name)
        _roll_forward(journal, [(folder / temporary, folder / target) for temporary, target in renames])
        finished += 1
    return finished


def _roll_forward(journal: Path, renames: list[tuple[Path, Path]]) -> None:
    for temporary, target in renames:
        try:
            os.replace(temporary, target)
        except FileNotFoundError:
            if temporary.exists():  # the target's folder is gone: a real error
                raise
            # Moved already: before a kill, or by a concurrent roll-forward of the same journal.
    for folder in dict.fromkeys(target.parent for _, target in renames):
        _fsync_folder(folder)
    journal.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    atomic_write({path: lambda temporary: temporary.write_text(text, encoding="utf-8")})
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """``obj`` through :func:`to_jsonable` as strict JSON, written atomically."""
    return atomic_write_text(path, json_text(obj, indent))


def atomic_save_tensors(
    path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """A safetensors file of ``tensors`` (copied to host memory, contiguous), written atomically."""
    path = Path(path)
    host = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    atomic_write({path: lambda temporary: save_file(host, str(temporary), metadata=metadata)})
    return path


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """A matplotlib figure's ``savefig``, written atomically. The format comes from ``path``'s suffix unless given:
    matplotlib would otherwise take it from the temporary file's ``.tmp``."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or None)
    atomic_write({path: lambda temporary: fig.savefig(temporary, **kwargs)})
    return path


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder beside ``path`` to fill inside the block (for writers such as ``save_pretrained`` that make
    several files of their own), moved to ``path`` when the block succeeds and deleted when it fails. A ``path``
    already there is replaced by one atomic exchange of the two folders where the system has one (Linux), so a
    kill leaves the old folder or the new one; elsewhere the old one is renamed aside first, leaving a moment with
    no folder at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.mkdir()
    try:
        yield temporary
        for file in temporary.rglob("*"):
            if file.is_file():
                _fsync(file)
        if not (path.exists() and _exchange(temporary, path)):  # after an exchange, temporary holds the old one
            if path.exists():
                aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
                os.replace(path, aside)
                os.replace(temporary, path)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(temporary, path)
        _fsync_folder(path.parent)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is missing."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if sys.platform == "linux" else None
    if renameat2 is None:  # not Linux, or a C library older than glibc 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_cwd, rename_exchange = -100, 2  # AT_FDCWD and RENAME_EXCHANGE from <fcntl.h> and <linux/fs.h>
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a kernel or file system without the flag
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` for the block: on ``path`` with its suffix replaced by
    ``.lock`` (``references/<digest>.lock``, as ``pipeline.reference``'s ``fcntl`` lock was named)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_suffix(".lock")):
        yield


def cached(
    path: str | os.PathLike,
    compute: Callable[[], T],
    load: Callable[[Path], T | None],
    save: Callable[[Path, T], Any],
    lock: bool = False,
) -> T:
    """``load(path)`` when ``path`` exists and ``load`` accepts it; else ``compute()``, stored by ``save(path, value)``.

    ``load`` returns None for an entry that no longer fits (made with other settings), which is then recomputed and
    overwritten; ``save`` should write atomically. With ``lock``, concurrent callers for the same path wait for the
    first one's result instead of computing it again.
    """
    path = Path(path)
    with (locked(path) if lock else nullcontext()):
        if path.exists():
            value = load(path)
            if value is not None:
                return value
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        save(path, value)
        return value


def cached_json(path: str | os.PathLike, compute: Callable[[], Any], load: Callable[[Path], Any] = read_json,
                save: Callable[[Path, Any], Any] = atomic_write_json, lock: bool = False) -> tuple[Any, bool]:
    """:func:`cached` for a JSON value, and whether this call computed it. A fresh value is returned as it reads back
    (tuples and tensors as lists, non-finite floats as None), so a resumed job computes what an uninterrupted one does."""
    computed = []

    def fresh() -> Any:
        computed.append(True)
        return json.loads(json_text(compute()))

    return cached(path, fresh, load, save, lock), bool(computed)


def _new_temporary_file(target: Path) -> Path:
    # A unique name (several processes may write the same target) created here with O_EXCL, so no one else owns
    # it, and with the default permissions (mkstemp's 0600 would carry over to the final file).
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temporary


def _fsync(path: Path) -> None:
    # Data must be on disk before the rename makes it visible, or a power cut can
    # leave a correctly named but empty file.
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_folder(folder: Path) -> None:
    # The rename itself is durable only once the folder's entry is flushed; only POSIX can open a folder for that.
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:  # some network file systems refuse; the file itself is already safely on disk
        log.debug("cannot fsync folder %s: %s", folder, e)
