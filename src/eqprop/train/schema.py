"""Plain tables (parsed TOML or JSON) to typed, frozen dataclasses and back, checked field by field.

A section with *kinds* (``rule``, ``solver``, ``system``, ...) names its kind table in its field's metadata
(:func:`kinds`): the table's ``kind`` chooses the dataclass, whose own fields are that kind's settings. Unknown
keys, wrong types and bad choices are :class:`~eqprop.ConfigError` with the path (``rule.beta``) and a
suggestion; the dataclasses' own ``__post_init__`` checks run as they are built.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from eqprop.errors import ConfigError

__all__ = ["change_kind", "from_table", "kind_table", "kinds", "to_table"]

_KINDS = "kinds"


def kinds(table: Mapping[str, type]) -> dict[str, Any]:
    """Field metadata: the field holds one of ``table``'s classes, chosen by the ``kind`` key."""
    return {_KINDS: table}


def kind_table(field: dataclasses.Field[Any]) -> Mapping[str, type] | None:
    """The kind table of a field (see :func:`kinds`), or None."""
    return field.metadata.get(_KINDS)


def is_per_layer(field: dataclasses.Field[Any]) -> bool:
    """Whether a list given for the field must hold one value per layer (metadata :data:`eqprop._types.PER_LAYER`)."""
    return bool(field.metadata.get("per_layer"))


def settings(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls`` that a configuration sets (fields with the metadata :data:`eqprop._types.RUN_STATE`
    are the object's own run-time state, e.g. AEqprop's ``epsilon_scale``)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("config", True)]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widened to float where wanted)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path} = {value!r}: expected {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path} = {value!r}: expected None")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        raise ConfigError(
            f"{path} = {value!r}: choose one of {', '.join(map(repr, choices))}",
            hint=f"did you mean {close[0]!r}?" if close else None,
        )
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path} = {value!r}: expected a list of {_type_name(item)}")
        return [coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path} = {value!r}: expected a table")
        return {coerce(k, key_type, path): coerce(v, item, f"{path}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path} = {value!r}: expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path} = {value!r}: expected an integer")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{path} = {value!r}: expected a finite number")
            return float(value)
        raise ConfigError(f"{path} = {value!r}: expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path} = {value!r}: expected a string")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} = {value!r}: expected a table of {_type_name(tp)} fields")
        return from_table(tp, value, path)  # type: ignore[arg-type]
    raise ConfigError(f"{path}: unsupported field type {tp!r}")  # a bug in the dataclasses, not user input


def _kind_of(table: Mapping[str, type], data: dict[str, Any], default: type | None, path: str) -> type:
    if "kind" not in data:
        if default is None:
            raise ConfigError(f"{path}: say which kind, e.g. kind = {next(iter(table))!r}")
        return default
    kind = data["kind"]
    if kind not in table:
        close = difflib.get_close_matches(str(kind), list(table), n=1)
        raise ConfigError(
            f"{path}.kind = {kind!r}: choose one of {', '.join(map(repr, table))}",
            hint=f"did you mean {close[0]!r}?" if close else None,
        )
    return table[kind]


def from_table(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """Build the dataclass ``cls`` from the table ``data``, checking every key and value against its fields.

    Raises:
        ConfigError: an unknown key (with the closest known one), a value of the wrong type, a bad choice, or
            whatever the dataclass's own checks refuse (prefixed with ``path``).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in settings(cls)}
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key == "kind" and isinstance(getattr(cls, "kind", None), str) and key not in fields:
            continue  # a kind's own name, read by the section that chose it
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            raise ConfigError(
                f"unknown setting {where!r}",
                hint=(f"did you mean {(path + '.' if path else '') + close[0]!r}? " if close else "")
                + f"known {('fields of ' + path) if path else 'sections'}: {', '.join(fields)}",
            )
        table = kind_table(fields[key])
        if table is not None and value is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{where} = {value!r}: expected a table with a kind")
            default = fields[key].default_factory() if callable(fields[key].default_factory) else None
            kind_cls = _kind_of(table, value, None if default is None else type(default), where)
            kwargs[key] = from_table(kind_cls, value, where)
        else:
            kwargs[key] = coerce(value, hints[key], where)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if not path or err.message.startswith(path):
            raise
        raise ConfigError(f"{path}: {err.message}", hint=err.hint) from err


def to_table(obj: Any) -> Any:
    """The inverse of :func:`from_table`: nested dicts of plain values (JSON- and TOML-friendly), a kind's
    ``kind`` first."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        kind = getattr(type(obj), "kind", None)
        if isinstance(kind, str):
            out["kind"] = kind
        for f in settings(type(obj)):
            out[f.name] = to_table(getattr(obj, f.name))
        return out
    if isinstance(obj, list | tuple):
        return [to_table(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_table(v) for k, v in obj.items()}
    return obj


def change_kind(table: dict[str, Any], kind: Any, kinds_table: Mapping[str, type]) -> dict[str, Any]:
    """``table`` switched to ``kind``: the new kind's defaults, with the settings it shares with the old kind
    kept; the old kind's own ones are dropped (they were chosen for it). An unknown ``kind`` is kept as given,
    for :func:`from_table` to refuse with a suggestion."""
    if table.get("kind") == kind or kind not in kinds_table:
        return {**table, "kind": kind}
    cls = kinds_table[kind]
    defaults = to_table(cls())
    hints = typing.get_type_hints(cls)

    def fits(
        key: str, value: Any
    ) -> bool:  # a shared name whose value the new kind accepts (e.g. an activation)
        try:
            coerce(value, hints[key], key)
        except (ConfigError, KeyError):
            return False
        return True

    kept = {k: v for k, v in table.items() if k in defaults and fits(k, v)}
    return {**defaults, **kept, "kind": kind}
