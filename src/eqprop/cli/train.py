"""``eqprop train`` and ``eqprop eval``."""

from __future__ import annotations

import argparse
from pathlib import Path

from eqprop.cli._common import add_run_flags, emit, flag_overrides, rules_help
from eqprop.errors import ConfigError

__all__ = ["evaluate_checkpoint", "register", "train"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train",
        help="train a preset",
        description="Train a preset; writes config.json, metrics.jsonl, checkpoint.pt (every epoch) and "
        "summary.json to --out, and prints the summary as one JSON line.",
        epilog=rules_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", help="preset name (see `eqprop presets`); default fmnist-quick")
    p.add_argument(
        "--rule",
        metavar="NAME",
        help="learning rule by its name in the literature: CL, PEP, NEP, CEP, PCpL, NCpL, CCpL, TBP, RBP "
        "(sets rule.kind and rule.variant; see below)",
    )
    p.add_argument("--out", help="run directory (default: runs/<preset>-seed<seed>)")
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR with its own settings (only --epochs, --device, --threads and --data-dir "
        "may be given)",
    )
    add_run_flags(p)
    p.add_argument(
        "--checkpoint-every",
        metavar="N|TIME",
        help="also save a checkpoint every N steps, or every TIME (90s, 10m, 1h), within epochs; a resumed run "
        "continues at the next batch",
    )
    p.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="write no TensorBoard event files (default: OUT/tensorboard)",
    )
    p.add_argument(
        "--probe-every",
        type=int,
        default=1000,
        metavar="N",
        help="steps between gradient-agreement probes in TensorBoard (0: never; default %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=train)

    p = sub.add_parser(
        "eval",
        help="test accuracy of a checkpoint",
        description="Evaluate a checkpoint (a run directory or its checkpoint.pt) on the test set of its dataset.",
    )
    p.add_argument("checkpoint", help="run directory or checkpoint.pt")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--batch-size", type=int, default=1000)
    p.set_defaults(run=evaluate_checkpoint)


def train(args: argparse.Namespace) -> int:
    from eqprop.train import apply_overrides, apply_rule_name, fit, load_preset, resume
    from eqprop.train.monitor import Monitoring

    monitoring = Monitoring(tensorboard=not args.no_tensorboard, probe_every=args.probe_every)
    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise ConfigError("--resume DIR continues the run in DIR: do not also pass a different --out")
        given = [
            flag
            for flag, value in (
                ("--preset", args.preset),
                ("--set", args.overrides),
                ("--batch-size", args.batch_size),
                ("--seed", args.seed),
                ("--rule", args.rule),
            )
            if value is not None and value != []
        ]
        if given:
            raise ConfigError(
                f"--resume continues a run with its own settings: {', '.join(given)} cannot change them "
                "(only --epochs, --device, --threads and --data-dir may be given)",
                hint="start a new run with --out to change other settings",
            )
        summary = resume(
            args.resume,
            epochs=args.epochs,
            device=args.device,
            threads=args.threads,
            data_dir=args.data_dir,
            progress=not args.no_progress,
            checkpoint_every=args.checkpoint_every,
            monitoring=monitoring,
        )
    else:
        config = apply_overrides(load_preset(args.preset or "fmnist-quick"), flag_overrides(args))
        if args.rule:
            # after the other settings, so that TBP counts the nudged sweeps as overridden
            clash = [
                o for o in args.overrides if o.partition("=")[0].strip() in ("rule.kind", "rule.variant")
            ]
            if clash:
                raise ConfigError(
                    f"--rule {args.rule} sets rule.kind and rule.variant: do not also --set {clash[0]}",
                    hint="drop one of the two (rule.beta and rule.steps may still be set)",
                )
            config = apply_rule_name(config, args.rule)
        out = args.out or f"runs/{config.name}-seed{config.train.seed}"
        summary = fit(
            config,
            out,
            progress=not args.no_progress,
            checkpoint_every=args.checkpoint_every,
            monitoring=monitoring,
        )
    from eqprop.train.distributed import World

    if World.from_env().main:  # in a data-parallel run, one summary line: the main process's
        emit(summary)
    return 0


def evaluate_checkpoint(args: argparse.Namespace) -> int:
    from eqprop.train import evaluate, load_data, load_run

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be >= 1")
    run = load_run(args.checkpoint, device=args.device, data_dir=args.data_dir)
    test = load_data(run.config, run.device, run.dtype, validation=False).test  # preprocessed as in training
    result = evaluate(run.system, run.cost, run.solver, test, batch_size=args.batch_size)
    emit(
        {
            "checkpoint": str(args.checkpoint),
            "preset": run.config.name,
            "epoch": run.epoch,
            "test_accuracy": result["accuracy"],
            "test_loss": result["loss"],
            "examples": len(test),
        }
    )
    return 0
