"""What the subcommands share: the JSON result line, the flags that set run settings, and the rule help."""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any

__all__ = ["add_overrides", "add_run_flags", "emit", "flag_overrides", "load_model", "rules_help"]


def emit(result: dict[str, Any]) -> None:
    """The last stdout line: one JSON object."""
    print(json.dumps(result), flush=True)


_FLAGS = (
    ("epochs", "train.epochs"),
    ("batch_size", "train.batch_size"),
    ("device", "train.device"),
    ("seed", "train.seed"),
    ("threads", "train.threads"),
    ("data_dir", "data.data_dir"),
)


def add_run_flags(p: argparse.ArgumentParser, *, what: str = "run") -> None:
    """``--epochs --batch-size --device --seed --threads --data-dir`` and ``--set KEY=VALUE``."""
    p.add_argument("--epochs", type=int, help=f"epochs per {what} (preset: train.epochs)")
    p.add_argument("--batch-size", type=int, help="training batch size (preset: train.batch_size)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (preset: train.device)")
    p.add_argument(
        "--seed", type=int, help="seed of the initialisation and of the data order (preset: train.seed)"
    )
    p.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: one per core; use 1 on a busy machine)"
    )
    p.add_argument(
        "--data-dir", help="folder holding the dataset files (default: $EQPROP_DATA_DIR, then Debian's)"
    )
    add_overrides(p)


def add_overrides(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field, e.g. --set rule.beta=0.1 --set optimizer.lr=[0.1,0.05] (repeatable)",
    )


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` items, then one per run flag given (the flags win)."""
    sets = list(getattr(args, "overrides", []))
    for flag, key in _FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            sets.append(f"{key}={json.dumps(value)}")
    return sets


def rules_help() -> str:
    """The epilog of `train` and `compare`: every rule kind with its settings, then the literature's names."""
    import dataclasses

    from eqprop.rules import RULE_NAMES, RULES

    lines = [
        "learning rules (--set rule.kind=KIND, and the settings of that kind; two-phase rules nudge or clamp at",
        "(0, +beta) for variant=positive, (-beta, 0) negative, (-beta, +beta) centered):",
    ]
    for kind, cls in RULES.items():
        fields = ", ".join(
            f"{f.name}={f.default!r}" if f.default is not dataclasses.MISSING else f.name
            for f in dataclasses.fields(cls)
            if f.metadata.get("config", True)
        )
        lines.append(
            textwrap.fill(
                f"{cls.__name__}({fields})", 110, initial_indent=f"  {kind:<12} ", subsequent_indent=" " * 15
            )
        )
    lines += [
        "",
        "rule names (--rule NAME; Scellier, Ernoult, Kendall & Kumar 2023, Table 1, then the rules through time and "
        "holomorphic EqProp; beta from rule.beta):",
    ]
    for row in RULE_NAMES.values():
        kind = f"{row.kind} {row.variant or ''}".strip()
        text = f"{row.title}: {row.computes}"
        lines.append(
            textwrap.fill(
                text, 110, initial_indent=f"  {row.name:<5} {kind:<18} ", subsequent_indent=" " * 27
            )
        )
    lines += [
        "",
        "CEP is centered EqProp, not the continual EqProp that Laborieux et al.'s code calls 'CEP' (here: rule.kind "
        "continual).",
    ]
    return "\n".join(lines)


def load_model(args: argparse.Namespace, *, default_preset: str) -> Any:
    """The model a check examines, in ``args.dtype``: a checkpoint's (``args.checkpoint``, with its own
    settings) or a fresh one of ``args.preset`` (default ``default_preset``) with ``args.overrides`` and
    ``args.seed``; ``args.rule`` (where the command has it) and ``args.data_dir`` apply to both."""
    import dataclasses

    from eqprop.errors import ConfigError
    from eqprop.train import apply_overrides, apply_rule_name, build, load_preset, load_run

    rule = getattr(args, "rule", None)
    if args.checkpoint:
        if args.preset or args.overrides:
            raise ConfigError(
                "--checkpoint checks the run's own model: do not also give --preset or --set",
                hint="--data-dir, --dtype and the check's own options may be given",
            )
        run = load_run(args.checkpoint, data_dir=args.data_dir, dtype=args.dtype)
        return dataclasses.replace(run, rule=apply_rule_name(run.config, rule).rule) if rule else run
    sets = [*args.overrides, f"train.seed={args.seed}", f"train.dtype={args.dtype}"]
    if args.data_dir:
        sets.append(f"data.data_dir={json.dumps(args.data_dir)}")
    config = apply_overrides(load_preset(args.preset or default_preset), sets)
    return build(apply_rule_name(config, rule) if rule else config)


def test_data(run: Any) -> Any:
    """The test split a check draws its batch from; a fresh model whose cost sets itself from the untrained network
    (class-mean targets) is calibrated on the training split first, as a run would be."""
    from eqprop.train import load_data
    from eqprop.train.calibrate import calibrate

    data = load_data(run.config, run.device, run.dtype, validation=False)
    calibrate(run, data.train, run.config.train.eval_batch_size)
    return data.test
