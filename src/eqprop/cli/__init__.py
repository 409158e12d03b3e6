"""The ``eqprop`` command: ``train``, ``eval``, ``presets``, ``gradcheck``, ``compare``, ``robustness`` and the analyses.

``main(argv)`` builds the parser and runs one subcommand inside the error boundary: a known problem
(:class:`~eqprop.errors.EqpropError`) prints ``eqprop: error: <message>`` and ``hint: <what to do>`` on
stderr and exits 2; tracebacks are kept for bugs. Each subcommand lives in its own module, which adds its parser
(``register``) and imports what it runs only when it runs. Progress goes to stderr; the last line on stdout is
one JSON object.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from eqprop.cli import (
    compare,
    energy,
    gducheck,
    gradcheck,
    minima,
    presets,
    report,
    robustness,
    spice,
    study,
    thermo,
    train,
)
from eqprop.errors import EqpropError, Interrupted

__all__ = ["build_parser", "main"]

COMMANDS = (
    train,
    report,
    presets,
    gradcheck,
    gducheck,
    minima,
    compare,
    robustness,
    energy,
    thermo,
    study,
    spice,
)
"""The subcommand modules, in the order `eqprop --help` lists them (`train` also adds `eval`)."""


def build_parser() -> argparse.ArgumentParser:
    from eqprop import __version__

    parser = argparse.ArgumentParser(
        prog="eqprop",
        description="Train energy-based physical systems with Equilibrium Propagation.",
        epilog="Run `eqprop COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"eqprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        args = build_parser().parse_args(
            argv
        )  # building the parser loads torch (the rules' help): Ctrl-C-able
        return int(args.run(args))
    except Interrupted as err:  # SIGTERM or Ctrl-C: the run saved a checkpoint and says how to resume
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run is saved: another Ctrl-C while exiting is moot
        print(f"eqprop: {err}", file=sys.stderr)
        if err.hint:
            print(err.hint, file=sys.stderr)
        return err.status
    except EqpropError as err:  # a known problem: one line and a hint, no traceback
        print(f"eqprop: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        print(
            "eqprop: stopped at once; a run keeps the last checkpoint it wrote, if any (checkpoints are written "
            "whole or not at all)",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `eqprop presets | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
