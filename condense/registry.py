"""Registries: an object the config chooses by name is built from a plain dict of name -> builder.

A registry's keys are the allowed values of its config key, so the config schema can validate against them at
start-up, and looking up anything else fails with the key, the value and the choices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


def unknown_choice(key: str, value: object, choices: Iterable[str]) -> ValueError:
    return ValueError(f"{key}: unknown {value!r}; choose from {sorted(choices)}")


def lookup(registry: Mapping[str, T], key: str, value: str) -> T:
    """``registry[value]``, or a ValueError naming the config ``key``, the value and the allowed names."""
    try:
        return registry[value]
    except (KeyError, TypeError):  # TypeError: an unhashable value, such as a list where one name belongs
        raise unknown_choice(key, value, registry) from None
