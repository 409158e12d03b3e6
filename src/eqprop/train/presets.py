"""Presets (commented TOML files in ``eqprop/presets/``) and ``--set section.field=value`` overrides.

A preset is read with :mod:`tomllib`; ``base = "other-preset"`` inherits the other's tables. An override's value
is parsed as a TOML literal (a bare word is a string). Changing a section's ``kind`` keeps the settings the new
kind shares with the old one and drops the old kind's own ones.
"""

from __future__ import annotations

import difflib
import tomllib
from importlib import resources
from typing import Any

from eqprop.errors import ConfigError
from eqprop.rules.names import lookup
from eqprop.train.config import FREE_FORM, RunConfig, config_from_dict, config_to_dict
from eqprop.train.schema import change_kind, kind_table

__all__ = ["apply_overrides", "apply_rule_name", "list_presets", "load_preset"]


def _kinds_of(section: str) -> Any:
    for f in RunConfig.__dataclass_fields__.values():
        if f.name == section:
            return kind_table(f)
    return None


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child``'s tables over ``base``'s (a section's kind changed by ``child`` drops ``base``'s own fields)."""
    merged = dict(base)
    for key, value in child.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            table = _kinds_of(key)
            if table is not None and "kind" in value:
                old = change_kind(old, value["kind"], table)
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return merged


# -- presets ----------------------------------------------------------------------------------------------------
def _preset_files() -> dict[str, Any]:
    folder = resources.files("eqprop.presets")
    return {p.name[: -len(".toml")]: p for p in folder.iterdir() if p.name.endswith(".toml")}


def list_presets() -> list[str]:
    """The names of the shipped presets, sorted."""
    return sorted(_preset_files())


def load_preset(name: str) -> RunConfig:
    """Read and validate the preset ``name`` (see ``eqprop presets``).

    Raises:
        ConfigError: no such preset (with the closest name and the list), invalid TOML or settings.
    """
    files = _preset_files()
    if name not in files:
        close = difflib.get_close_matches(name, list(files), n=1)
        raise ConfigError(
            f"no preset named {name!r}",
            hint=(f"did you mean {close[0]!r}? " if close else "") + f"available: {', '.join(sorted(files))}",
        )
    data = _preset_dict(name, files, ())
    data["name"] = name
    return config_from_dict(data)


def _preset_dict(name: str, files: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    """A preset's table, with ``base = "other-preset"`` resolved (the base's tables, then this file's)."""
    if name in seen:
        raise ConfigError(f"preset {name!r} inherits from itself through {' -> '.join((*seen, name))}")
    if name not in files:
        raise ConfigError(f"preset {seen[-1]!r} names base {name!r}, which does not exist")
    try:
        data = tomllib.loads(files[name].read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"preset {name!r} is not valid TOML: {err}") from err
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _preset_dict(str(base), files, (*seen, name))
    merged.pop("measured", None)  # measurements belong to the preset that produced them
    return _merge(merged, data)


# -- overrides ----------------------------------------------------------------------------------------------------
def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: take it as a string (e.g. --set rule.variant=centered)


def _split(item: str) -> tuple[list[str], Any]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. rule.beta=0.1")
    return key.split("."), _parse_value(text.strip())


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` overrides (value parsed as a TOML literal), re-validating everything.

    A ``kind`` is applied before the other fields of its section (``--set rule.beta=0.1 --set rule.kind=coupled``
    keeps β); ``nudged_solver.*`` on a run without its own nudged solver starts from the free one.

    Raises:
        ConfigError: a malformed item, an unknown section or field (with the closest known one), a bad value.
    """
    data = config_to_dict(config)
    items = [_split(item) for item in overrides]
    items.sort(key=lambda kv: kv[0][-1] != "kind")  # stable: kinds first, the rest in the order given
    for parts, value in items:
        node = data
        for i, part in enumerate(parts[:-1]):
            if part == "nudged_solver" and node.get(part) is None and i == 0:
                node[part] = dict(data["solver"])  # start from the free-phase solver
            child = node.get(part)
            if not isinstance(child, dict):
                names = [k for k, v in node.items() if isinstance(v, dict) or k == "nudged_solver"]
                close = difflib.get_close_matches(part, names, n=1)
                raise ConfigError(
                    f"--set {'.'.join(parts)}: unknown section {'.'.join(parts[: i + 1])!r}",
                    hint=(f"did you mean {close[0]!r}? " if close else "") + f"sections: {', '.join(names)}",
                )
            node = child
        leaf = parts[-1]
        prefix = ".".join(parts[:-1])
        if leaf == "kind" and len(parts) == 2 and _kinds_of(parts[0]) is not None:
            data[parts[0]] = change_kind(node, value, _kinds_of(parts[0]))
            continue
        if leaf not in node and parts[0] not in FREE_FORM:
            close = difflib.get_close_matches(leaf, list(node), n=1)
            raise ConfigError(
                f"--set {'.'.join(parts)}: unknown setting {leaf!r}" + (f" in {prefix!r}" if prefix else ""),
                hint=(f"did you mean {prefix + '.' if prefix else ''}{close[0]}? " if close else "")
                + f"known: {', '.join(sorted(node))}",
            )
        node[leaf] = value
    return config_from_dict(data)


def apply_rule_name(config: RunConfig, name: str) -> RunConfig:
    """``config`` with the rule the literature calls ``name`` (CL, PEP, NEP, CEP, PCpL, NCpL, CCpL, TBP, RBP):
    ``rule.kind`` and ``rule.variant`` from :data:`eqprop.rules.names.RULE_NAMES`; β and the other settings the
    new rule shares are kept. TBP without ``rule.steps`` differentiates as many sweeps as the nudged phase has.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    row = lookup(name)
    sets = [f"rule.kind={row.kind}"]
    if row.variant is not None:
        sets.append(f"rule.variant={row.variant}")
    if row.steps_of_nudged_phase and getattr(config.rule, "steps", None) is None:
        sets.append(f"rule.steps={(config.nudged_solver or config.solver).iterations}")
    return apply_overrides(config, sets)
