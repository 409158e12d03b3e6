"""``eqprop report RUN_DIR``: a run's self-contained HTML page (see :mod:`eqprop.analysis.report`)."""

from __future__ import annotations

import argparse
import sys

from eqprop.cli._common import emit

__all__ = ["register", "report"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page about a run",
        description="Write RUN_DIR/report.html: the summary, learning curves, relaxation statistics (sweeps, "
        "residuals, energies of each phase), saturation and norms, the gradient-agreement curve and the "
        "configuration, with the plots embedded (no network needed to view it).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of an `eqprop train` run")
    p.add_argument("--out", help="where to write the page (default RUN_DIR/report.html)")
    p.set_defaults(run=report)


def report(args: argparse.Namespace) -> int:
    from eqprop.analysis.report import write_report

    path = write_report(args.run_dir, args.out)
    print(f"eqprop: wrote {path}", file=sys.stderr)
    emit({"report": str(path)})
    return 0
