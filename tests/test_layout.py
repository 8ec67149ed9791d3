"""The package's shape: subpackages in layers whose imports flow one way (down), no cycle, few modules at the top,
every module readable in one sitting, and the BPTT loop in one screen."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import condense

PACKAGE = Path(condense.__file__).parent
ROOT = PACKAGE.parent
MAX_MODULE_LINES = 350
MAX_TOP_LEVEL_MODULES = 12
MAX_DISTILL_LINES = 60

# Layers, bottom up: a module may import its own subpackage and any lower layer, never a higher one nor another
# subpackage of its own layer. The root utilities sit below everything.
LAYERS = [
    {"condense._torchvision_ops", "condense.cache", "condense.registry", "condense.distributed"},
    {"condense.data"},
    {"condense.config"},
    {"condense.report"},
    {"condense.models"},
    {"condense.artifact"},
    {"condense.distill"},
    {"condense.eval", "condense.continual"},
    {"condense.jobs"},
    {"condense.bench"},
]
# Commands: they parse a command line and call a job, so they may import any layer.
ENTRY_POINTS = {"condense.run", "condense.sweep", "condense.assets", "condense.distill.__main__", "condense.bench.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every condense module ``path`` imports, at module level or inside a function, except imports made for type
    annotations only (under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("condense")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    # ``import condense.x.y`` runs the packages' __init__ files first; those only document, or export lazily, so an
    # edge to a package is not an edge to everything in it.
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def layer_of(module: str) -> int:
    for index, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return index
    raise AssertionError(f"{module} belongs to no layer: add its subpackage to LAYERS")


def subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_imports_flow_down_the_layers():
    upward = []
    for module, targets in graph().items():
        if module in ENTRY_POINTS or module == "condense":
            continue
        for target in targets:
            if target == "condense" or subpackage(target) == subpackage(module):
                continue
            if layer_of(target) >= layer_of(module):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_the_layer_check_sees_real_imports(tmp_path):
    edges = graph()
    assert "condense.distill.loop" in edges["condense.jobs.distill_task"]
    assert "condense.jobs.distill_task" in edges["condense.distill.__main__"]  # an entry point, allowed upward
    assert layer_of("condense.jobs.sequence") > layer_of("condense.continual.strategies") > layer_of("condense.distill.loop")
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nimport condense.cache\nif TYPE_CHECKING:\n"
                      "    from condense.jobs.sequence import run_sequence\n\ndef f():\n    from condense.bench import report\n")
    # Imports inside functions count; those made for annotations only do not.
    assert imports(module) == {"condense.cache", "condense.bench", "condense.bench.report"}


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_few_modules_at_the_top_and_subpackages_that_name_the_architecture():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert packages == ["artifact", "bench", "config", "continual", "data", "distill", "eval", "jobs", "models", "report"]
    # Every subpackage has a docstring saying what it holds, and the wheel lists it.
    for name in packages:
        assert ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())), name
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted(["condense", "condense.configs", *(f"condense.{name}" for name in packages)])


def test_every_module_is_at_most_350_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_bptt_loop_fits_one_screen():
    tree = ast.parse((PACKAGE / "distill" / "loop.py").read_text())
    distill = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "distill")
    assert distill.end_lineno - distill.lineno + 1 <= MAX_DISTILL_LINES


def test_the_yaml_presets_sit_in_the_top_level_configs_folder():
    configs = ROOT / "configs"
    assert (configs / "run.yaml").is_file() and (configs / "config.yaml").is_file() and (configs / "bench.yaml").is_file()
    groups = sorted(p.name for p in configs.iterdir() if p.is_dir())
    assert groups == ["bench", "continual", "distill", "eval", "hydra", "model", "task", "task_sequence"]
    assert not (PACKAGE / "conf").exists()


def test_no_hard_coded_device_outside_the_resolver():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "device.py" and ('"cpu"' in p.read_text() or "'cpu'" in p.read_text())]
    assert offenders == []
