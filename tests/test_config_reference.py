"""docs/configuration.md is what condense.config.reference renders from the schemas now, and it documents every key:
its default, what is allowed, and the comment the schema gives it."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from condense.config import reference, schema
from condense.config.parsing import JOBS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
REGENERATE = "python -m condense.config.reference > docs/configuration.md"


@pytest.fixture(scope="module")
def page() -> str:
    return reference.render()


def rows(page: str, key: str) -> list[list[str]]:
    """The cells of every table row whose key is ``key``."""
    found = [line for line in page.splitlines() if line.startswith(f"| `{key}` |")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in found]


def row(page: str, key: str) -> list[str]:
    (only,) = rows(page, key)  # a group's table is shown once, however many commands share the group
    return only


def schema_keys(cls: type, prefix: str = "") -> list[tuple[str, bool]]:
    """Every key under ``cls`` (walked here, not with the generator's helpers), and whether it is a group."""
    hints, keys = typing.get_type_hints(cls), []
    for spec in dataclasses.fields(cls):
        key = f"{prefix}{spec.name}"
        tp = hints[spec.name]
        nested = next((t for t in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(t)), None)
        keys.append((key, nested is not None))
        if nested is not None:
            keys += schema_keys(nested, f"{key}.")
    return keys


def test_the_committed_page_is_what_the_schemas_render_now(page):
    assert PAGE.read_text() == page, f"docs/configuration.md is out of date with the config schemas: run `{REGENERATE}`"
    first = page.splitlines()[0]
    assert "Generated" in first and REGENERATE in first


def test_a_schema_change_changes_the_page(page, monkeypatch):
    spec = next(f for f in dataclasses.fields(schema.DistillConfig) if f.name == "params")
    monkeypatch.setattr(spec, "metadata", {"choices": (*schema.PARAM_SUBSETS, "lora")})
    changed = reference.render()
    assert "`lora`" in row(changed, "distill.params")[2] and changed != page


def test_every_field_of_every_group_has_a_row(page):
    for name, job in JOBS.items():
        keys = schema_keys(job)
        assert len(keys) > 10, name
        for key, is_group in keys:
            if "." in key or not is_group:  # a command's own groups are linked from its section, not a row
                assert rows(page, key), f"{key} ({name}) has no row in docs/configuration.md"
            if is_group:
                assert f"\n### `{key}.*`\n" in page, f"{key} ({name}) has no table of its own"


def test_a_fields_comment_is_in_its_row(page):
    assert row(page, "distill.ipc")[3] == "synthetic examples per class"  # a trailing comment
    assert "top encoder blocks trained with the heads; those below are cached" in row(page, "continual.trainable_layers")[3]
    # A comment on the line above the field.
    assert "recompute each unrolled step's graph in the outer backward" in row(page, "distill.bptt")[3]


def test_choices_ranges_and_defaults_are_in_the_rows(page):
    key, default, allowed, _ = row(page, "distill.params")
    assert default == "`head`" and allowed == "one of `head`, `last_n_layers`, `all`"
    assert all(f"`{name}`" in row(page, "continual.strategies")[2] for name in schema.STRATEGIES)
    assert row(page, "distill.ipc")[1:3] == ["`1`", "int ≥ 1"]
    assert row(page, "distill.inner_lr")[2] == "float > 0"
    assert row(page, "task.max_train_examples")[1:3] == ["`null`", "int ≥ 1, or `null`"]
    # One standard recipe: the evaluation's and the seed table's rows show the same defaults.
    for key in ("eval.finetune.recipe", "bench.seed_table.recipe"):
        assert row(page, f"{key}.epochs")[1] == "`1`" and row(page, f"{key}.schedule")[1] == "`linear`"


def test_presets_list_what_they_change(page):
    distill = page[page.index("\n### `distill.*`"):page.index("\n### `eval.*`")]
    assert "- `last_layer`: The inner loop trains the last n_layers encoder blocks" in distill
    assert "`distill.params=last_n_layers`, `distill.inner_steps=3`" in distill
    assert "[`distill.*`](#distill) = `last_layer`" in page  # the preset python -m condense.run picks
