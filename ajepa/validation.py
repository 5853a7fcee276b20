"""Config values checked where they enter: every dataclass field against its annotated type, with a
:class:`~ajepa.errors.ConfigError` that names the key, before any size derived from it allocates anything."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from typing import Any

from ajepa.errors import ConfigError

__all__ = ["check_fields", "check_range"]


def _plain(hint: Any) -> tuple[type | None, bool]:
    """``(int | float | str | bool | None, optional)`` for a field annotation; None for anything richer."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            return None, optional
        hint = args[0]
    return (hint if hint in (int, float, str, bool) else None), optional


def check_fields(obj: Any, owner: str) -> None:
    """Check (and normalise, in place) each field of the dataclass ``obj`` whose annotation is ``int``, ``float``,
    ``str`` or ``bool`` (or ``X | None``): a bool is not a number, an integral float is an int, an int is a float,
    and a float must be finite. Richer annotations (tuples, ``int | str``) are left to the class's own checks."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        kind, optional = _plain(hints.get(f.name))
        value = getattr(obj, f.name)
        if kind is None or (optional and value is None):
            continue
        where = f"{owner}.{f.name}"
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
        elif kind is str:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
        elif not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
        elif kind is int:
            if value != int(value):
                raise ConfigError(f"{where} must be an integer, got {value!r}")
            setattr(obj, f.name, int(value))
        else:
            setattr(obj, f.name, float(value))


def check_range(where: str, value: float, low: float, high: float) -> None:
    """``low <= value <= high`` or a ConfigError naming ``where`` and the bounds."""
    if not low <= value <= high:
        raise ConfigError(f"{where} must be in [{low:g}, {high:g}], got {value!r}")
