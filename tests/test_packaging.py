"""pyproject.toml declares dependencies like a library (lower bounds; `pip install condense` keeps the torch a
machine already has), and .ci/constraints.txt holds this machine's exact pins, each for a declared dependency."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
DEPENDENCIES = [Requirement(line) for line in PROJECT["dependencies"]]
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"


def by_name(requirements):
    return {canonicalize_name(r.name): r for r in requirements}


def constraint_pins() -> list[tuple[Requirement, str]]:
    """Each requirement line of the constraints file with the comment that follows it on its line."""
    pins = []
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        requirement, _, comment = line.partition("#")
        if requirement.strip():
            pins.append((Requirement(requirement.strip()), comment.strip()))
    return pins


def exact_version(requirement: Requirement) -> str | None:
    exact = [s.version for s in requirement.specifier if s.operator in ("==", "===") and "*" not in s.version]
    return exact[0] if exact else None


def test_no_dependency_is_pinned_exactly():
    # An exact pin makes `pip install condense` replace the torch (or anything else) a machine already has.
    pinned = [str(r) for r in DEPENDENCIES if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"exact pins in [project] dependencies belong in .ci/constraints.txt: {pinned}"


# The last releases the bounds must keep out: transformers>=5.17 treats a torch older than 2.5 as absent, and
# torchvision 0.19 is torch 2.4's release.
@pytest.mark.parametrize("name, too_old", [("torch", "2.4.1"), ("torchvision", "0.19.1")])
def test_torch_and_torchvision_have_lower_bounds(name, too_old):
    requirement = by_name(DEPENDENCIES).get(name)
    assert requirement is not None, f"{name} is not a dependency"
    assert any(s.operator in (">=", ">", "~=") for s in requirement.specifier), f"{requirement}: no lower bound"
    assert not requirement.specifier.contains(too_old), f"{requirement} lets in {name} {too_old}"


def test_constraints_pin_this_machines_torch():
    pins = by_name(r for r, _ in constraint_pins())
    assert exact_version(pins["torch"]) == "2.13.0", "torch==2.13.0 is the CPU wheel on this machine's disk"
    assert exact_version(pins["torchvision"]) == "0.28.0"


def test_every_constraint_is_a_declared_dependency_or_names_one():
    direct = by_name(DEPENDENCIES) | by_name(Requirement(r) for r in PROJECT["optional-dependencies"]["test"])
    for pin, comment in constraint_pins():
        assert exact_version(pin), f"{pin}: a constraint here pins one version"
        name = canonicalize_name(pin.name)
        if name in direct:
            # The pin must satisfy the declared bounds, or the constrained install cannot resolve.
            assert direct[name].specifier.contains(exact_version(pin), prereleases=True), (pin, direct[name])
            continue
        match = re.fullmatch(r"transitive: (.+)", comment)
        assert match, f"{pin} is not a dependency in pyproject.toml; say which one brings it in ('# transitive: NAME')"
        parents = [canonicalize_name(p.strip()) for p in match.group(1).split(",")]
        unknown = [p for p in parents if p not in direct]
        assert not unknown, f"{pin}: {unknown} are not dependencies in pyproject.toml"
