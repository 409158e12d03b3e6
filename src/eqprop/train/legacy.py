"""Run configs stored by eqprop before config version 2, read as today's.

Version 1 wrote one flat table per section with the fields of every kind (``system.channels`` in a dense
network's config, ``optimizer.momentum`` under Adam, AEqprop's ``rule.mode`` beside EqProp's
``rule.variant``), and AEqprop's β was the spread ``β₂ − β₁`` (its centered mode nudged at ±β/2). Version 2
keeps only each kind's own settings, and every two-phase rule shares one β convention (``eqprop.rules.base``).
Only stored runs (checkpoints without ``"config_version"``) go through here; presets and overrides are read
strictly.
"""

from __future__ import annotations

import copy
from typing import Any

from eqprop.train.config import RunConfig
from eqprop.train.schema import kind_table, settings

__all__ = ["upgrade_config"]

_V1_AEQPROP_MODES = {"optimistic": "positive", "pessimistic": "negative", "centered": "centered"}


def upgrade_config(data: dict[str, Any], version: int) -> dict[str, Any]:
    """``data``, a config dict stored under ``version``, in today's schema (a new dict)."""
    if version >= 2:
        return data
    data = copy.deepcopy(data)
    rule = data.get("rule")
    if isinstance(rule, dict) and rule.get("kind") == "aeqprop" and "mode" in rule:
        mode = rule.pop("mode")
        rule["variant"] = _V1_AEQPROP_MODES.get(mode, mode)
        if mode == "centered" and isinstance(rule.get("beta"), int | float):
            rule["beta"] = rule["beta"] / 2  # the spread 2β of today's centered convention was version 1's β
    for f in RunConfig.__dataclass_fields__.values():
        table, section = kind_table(f), data.get(f.name)
        if table is None or not isinstance(section, dict) or section.get("kind") not in table:
            continue
        own = {g.name for g in settings(table[section["kind"]])}
        data[f.name] = {k: v for k, v in section.items() if k == "kind" or k in own}
    return data
