"""The configuration reference, ``docs/configuration.md``, rendered from the config schemas themselves.

Every key of the three jobs (:data:`condense.config.parsing.JOBS`) gets a row: its default, what is allowed (its type
and the metadata :func:`condense.config.parsing.validate` checks) and what it does (the field's comments in the
schema's source); each group's table follows its docstring and its presets under ``configs/<group>/``. Regenerate with
``python -m condense.config.reference > docs/configuration.md`` (tests/test_config_reference.py checks it is current).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import tokenize
import types
import typing
from typing import Any

from omegaconf import MISSING, OmegaConf

from condense.config.parsing import JOBS, conf_file, preset, presets

COMMAND = "python -m condense.config.reference > docs/configuration.md"
INTRO = """\
Every key of the three commands, read from the typed schemas (`condense/config/schema.py`, `condense/config/bench.py`)
and the presets under `configs/`. Set a key as `key=value` (`python -m condense.distill distill.ipc=5`) or pick a
group's preset as `group=NAME` (`distill=all`): a preset changes only the keys listed beside it, the others keep their
defaults. Every value is checked before a run starts; one outside *allowed* stops it with a message naming the key.

- **default**: the schema's default. Each command's primary config picks a preset per group (listed under the
  command), which may change it. `null` is Python's None; **required** must be set.
- **allowed**: the type, and the range or choices checked. A key ending in `.*` is a group with a table of its own."""


def _md(text: str) -> str:
    """Prose (docstrings, comments) as Markdown table-safe text: reST roles and literals become code spans."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text).replace("``", "`")
    return text.replace("|", "\\|").replace("<", "&lt;")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _sentences(parts: list[str]) -> str:
    """Texts joined into one, each ended with a full stop unless it ends in punctuation."""
    out = ""
    for part in filter(None, parts):
        out += ("" if not out else " " if out[-1] in ".:;!?" else ". ") + part
    return out


@functools.cache
def _source_notes(module: Any) -> dict[str, tuple[str, dict[str, str]]]:
    """Per class of ``module``: its docstring and, per field, its comments (trailing, then the block
    of full-line comments just above it)."""
    source = inspect.getsource(module)
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whether the comment fills its line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(), not tok.line[: tok.start[1]].strip())
    classes = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        fields = {}
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                trailing = [comments[n][0] for n in range(stmt.lineno, stmt.end_lineno + 1)
                            if n in comments and not comments[n][1]]
                above, n = [], stmt.lineno - 1
                while n in comments and comments[n][1]:
                    above.insert(0, comments[n][0])
                    n -= 1
                fields[stmt.target.id] = _sentences([" ".join(trailing), " ".join(above)])
        classes[node.name] = (" ".join((ast.get_docstring(node) or "").split()), fields)
    return classes


def docstring(cls: type) -> str:
    """The class's own docstring as one line (not the signature ``dataclass`` makes up when it has none)."""
    return _source_notes(inspect.getmodule(cls))[cls.__name__][0]


def comment(cls: type, name: str) -> str:
    """The source comments of field ``name``, from the class in ``cls``'s MRO that declares it."""
    for owner in cls.__mro__:
        if dataclasses.is_dataclass(owner) and name in inspect.get_annotations(owner):
            return _source_notes(inspect.getmodule(owner))[owner.__name__][1].get(name, "")
    return ""


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """A field type without ``Optional``, and whether it was optional."""
    rest = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and len(rest) < len(typing.get_args(tp))
    return (rest[0] if optional and len(rest) == 1 else tp), optional


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        item = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        return "list" if item is Any else f"list of {_type_name(item)}"
    return "any" if tp is Any else getattr(tp, "__name__", str(tp))


def value(v: Any) -> str:
    """A value as it is written in YAML or on the command line."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def allowed(spec: dataclasses.Field, tp: Any) -> str:
    """The type of a field and what its metadata allows, in words."""
    tp, optional = _unwrap(tp)
    rules, is_list = spec.metadata, typing.get_origin(tp) is list
    item = (typing.get_args(tp) or (Any,))[0] if is_list else tp
    if "choices" in rules:
        text = ", ".join(_code(value(c)) for c in rules["choices"])
        text = f"list, each one of {text}" if is_list else f"one of {text}"
    elif "min" in rules:
        low = rules["min"]
        bound = f"{'>' if rules.get('strict') else '≥'} {int(low) if float(low).is_integer() else low}"
        text = f"list of {_type_name(item)}, each {bound}" if is_list else f"{_type_name(item)} {bound}"
    elif "allowed" in rules:
        text = f"{_type_name(tp)}: {_md(rules['allowed'])}"
    else:
        text = _type_name(tp)
    if is_list and rules.get("non_empty"):
        text += "; at least one"
    return text + (", or `null`" if optional else "")


def _nested(tp: Any) -> type | None:
    tp = _unwrap(tp)[0]
    return tp if dataclasses.is_dataclass(tp) else None


def leading_comments(yaml_text: str) -> list[str]:
    """The comment lines a YAML file starts with, without their ``#``."""
    return [line[1:] for line in re.match(r"(?:#.*\n)*", yaml_text + "\n").group().splitlines()]


def preset_lines(group: str) -> list[str]:
    """A bullet per preset of ``configs/<group>/``: its leading comment lines, then the keys it changes."""
    lines = []
    for name in presets(group):
        notes = [_code(line.strip()) if line.startswith("  ") else _md(line.strip())  # an indented line: a command
                 for line in leading_comments(conf_file(group, f"{name}.yaml").read_text())]

        def flat(d: dict, prefix: str) -> list[str]:
            return [item for k, v in d.items() for item in
                    (flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [_code(f"{prefix}{k}={value(v)}")])]
        changes = flat(preset(group, name), f"{group}.")
        sets = "Sets " + ", ".join(changes) if changes else "Changes nothing: the schema's defaults"
        lines.append(f"- `{name}`: " + _sentences([" ".join(notes), sets + "."]))
    return lines


def table(cls: type, obj: Any, key: str, anchors: dict[str, str]) -> list[str]:
    """The rows of one group: ``key.field | default | allowed | comment`` per field of ``obj`` (its groups: a link)."""
    hints = typing.get_type_hints(cls)
    rows = ["| key | default | allowed | what it does |", "| --- | --- | --- | --- |"]
    for spec in dataclasses.fields(cls):
        full, default = f"{key}.{spec.name}" if key else spec.name, getattr(obj, spec.name)
        if _nested(hints[spec.name]):
            shown = "`null`" if default is None else "see below"
            what = f"[`{full}.*`](#{anchors[full]})" + (", or `null`" if _unwrap(hints[spec.name])[1] else "")
        else:
            shown = "**required**" if default == MISSING else _code(value(default))
            what = allowed(spec, hints[spec.name])
        rows.append(f"| `{full}` | {shown} | {what} | {_md(comment(cls, spec.name))} |")
    return rows


def groups(cls: type, obj: Any, key: str) -> list[tuple[str, type, Any]]:
    """Every group at or below ``key``: (key, dataclass, its default instance), parents before children."""
    found = [(key, cls, obj)]
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        if sub := _nested(hints[spec.name]):
            child = getattr(obj, spec.name)
            found += groups(sub, sub() if child is None else child, f"{key}.{spec.name}" if key else spec.name)
    return found


def job_section(name: str, job: type, done: set[str]) -> list[str]:
    """A command's section: its usage and default presets, its top-level keys, then each group not shown before."""
    doc = docstring(job)
    command, _, purpose = doc.partition(": ") if doc.startswith("``") else (job.__name__, "", doc)
    text = conf_file(f"{name}.yaml").read_text()
    usage = [line.strip() for line in leading_comments(text)]
    lines = [f"## `{command.strip('`')}`", "", _md(purpose[:1].upper() + purpose[1:]), "",
             f"Primary config `configs/{name}.yaml` (schema `{job.__module__}.{job.__name__}`)."]
    lines += ["", "```text", *usage, "```"] if usage else []
    primary = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    chosen = {k: v for entry in primary.get("defaults", []) if isinstance(entry, dict) for k, v in entry.items()}
    all_groups = groups(job, job(), "")[1:]
    anchors = {key: _slug(f"`{key}.*`") for key, _, _ in all_groups}
    links = [f"[`{spec.name}.*`](#{anchors[spec.name]})" + (f" = `{chosen[spec.name]}`" if spec.name in chosen else "")
             for spec in dataclasses.fields(job) if spec.name in anchors]
    sets = [f"`{k}={value(v)}`" for k, v in primary.items() if k not in ("defaults", "hydra")]
    lines += ["", "Groups, with the preset this command picks: " + ", ".join(links) + "."]
    if sets:
        lines += ["", f"`configs/{name}.yaml` also sets " + ", ".join(sets) + "."]
    lines += ["", "### Top-level keys", "", *[row for row in table(job, job(), "", anchors) if "](#" not in row]]
    for key, cls, obj in all_groups:
        if key in done:
            continue
        done.add(key)
        lines += ["", f"### `{key}.*`", ""]
        if doc := docstring(cls):
            lines += [_md(doc), ""]
        if "." not in key and conf_file(key).is_dir():
            lines += [f"Presets in `configs/{key}/`, picked with `{key}=NAME`:", "", *preset_lines(key), ""]
        lines += table(cls, obj, key, anchors)
    return lines


def render() -> str:
    """The whole page."""
    lines = [f"_Generated from the config schemas by `{COMMAND}`; do not edit it by hand._", "",
             "# Configuration reference", "", INTRO, ""]
    done: set[str] = set()
    sections = [job_section(name, job, done) for name, job in JOBS.items()]
    lines += ["Commands:", ""] + [f"- [{s[0][3:]}](#{_slug(s[0][3:])}): {s[2]}" for s in sections]
    for section in sections:
        lines += ["", *section]
    return "\n".join(lines) + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
