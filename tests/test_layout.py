"""The package's shape: imports flow one way (no cycle), and every module can be read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import condense

PACKAGE = Path(condense.__file__).parent
MAX_MODULE_LINES = 350
MAX_DISTILLED_SET_LINES = 250


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every condense module ``path`` imports, at module level or inside a function."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("condense")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}
    # ``import condense.x`` runs condense/__init__.py first, which imports only _torchvision_ops; an edge to the
    # package itself is not an edge to everything in it.
    return edges


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


def test_the_graph_sees_real_imports():
    edges = graph()
    assert "condense.distill.loop" in edges["condense.jobs.distill_task"] and "condense.jobs.distill_task" in edges["condense.distill"]
    assert "condense.jobs.distill_task" not in edges["condense.distill.loop"]


def test_leaf_modules_import_no_orchestration():
    edges = graph()
    for leaf in ("condense.distill.inner", "condense.distill.decode", "condense.models.encoders", "condense.config.schema", "condense.cache", "condense.config.device"):
        assert not edges[leaf] & {"condense.jobs.distill_task", "condense.run", "condense.distill", "condense.config.parsing"}, leaf


def test_every_module_is_at_most_350_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_distilled_set_is_at_most_250_lines():
    tree = ast.parse((PACKAGE / "artifact.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DistilledSet")
    assert cls.end_lineno - cls.lineno + 1 <= MAX_DISTILLED_SET_LINES


def test_no_hard_coded_device_outside_the_resolver():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "device.py" and ('"cpu"' in p.read_text() or "'cpu'" in p.read_text())]
    assert offenders == []
