"""The ``eqprop`` command: ``train``, ``eval``, ``presets``, ``gradcheck``, ``compare`` and the analyses.

``main(argv)`` builds the parser and runs one subcommand inside the error boundary: a known problem
(:class:`~eqprop.errors.EqpropError`) prints ``eqprop: error: <message>`` and ``hint: <what to do>`` on
stderr and exits 2; tracebacks are kept for bugs. torch is imported inside the subcommands, so
``eqprop --help`` is instant. Progress goes to stderr; the last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from eqprop.errors import EqpropError

__all__ = ["build_parser", "main"]

RULES_HELP = """learning rules (--set rule.kind=KIND, with rule.variant and rule.beta where they apply):
  eqprop       Equilibrium Propagation: [dF/dθ(s^β2) − dF/dθ(s^β1)]/(β2 − β1) from relaxations nudged
               at β1, β2; rule.variant = positive (0, β), negative (−β, 0) or centered (−β, +β). 'centered'
               is the symmetric estimator of Laborieux et al. 2021 (bias O(β²)); note that Laborieux's code
               uses 'CEP' for *continual* EqProp.
  contrastive  contrastive learning: the output clamped at its free value o*, then at the target y, the
               hidden layers relaxed; dE/dθ(s^y) − dE/dθ(s^o*), the gradient of the contrastive objective
               E(clamped at y) − E(free), not of the loss. Needs cost.kind = squared_error.
  coupled      coupled learning: the output clamped at o* + β_i(y − o*) for the pairs of rule.variant,
               [dE/dθ(s²) − dE/dθ(s¹)]/(β2 − β1). As β → 0 it tends to the loss gradient with the output's
               curvature replaced by the identity (not an estimator of it). Needs cost.kind = squared_error.
  implicit     the exact gradient at the free equilibrium by implicit differentiation (recurrent backprop)
  backprop     backpropagation through the relaxation (rule.steps = sweeps from the free equilibrium,
               or the whole relaxation when unset)

rule names (--rule NAME; Scellier, Ernoult, Kendall & Kumar 2023, Table 1; beta from rule.beta):
  CL    contrastive         contrastive learning (clamped at o*, then at y)
  PEP   eqprop positive     EqProp, nudged at (0, +β); bias O(β)
  NEP   eqprop negative     EqProp, nudged at (−β, 0); bias O(β)
  CEP   eqprop centered     EqProp, nudged at (−β, +β); bias O(β²). Centered EqProp, NOT the continual
                            EqProp that Laborieux's code calls 'CEP'
  PCpL  coupled positive    coupled learning, output clamped at o* and o* + β(y − o*)
  NCpL  coupled negative    coupled learning, output clamped at o* − β(y − o*) and o*
  CCpL  coupled centered    coupled learning, output clamped at o* ∓ β(y − o*)
  TBP   backprop            truncated backprop through rule.steps sweeps from the free equilibrium
                            (default: as many as the nudged phase has)
  RBP   implicit            recurrent backprop: the exact gradient by implicit differentiation"""


def build_parser() -> argparse.ArgumentParser:
    from eqprop import __version__

    parser = argparse.ArgumentParser(
        prog="eqprop",
        description="Train energy-based physical systems with Equilibrium Propagation.",
        epilog="Run `eqprop COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"eqprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a preset",
        description="Train a preset; writes config.json, metrics.jsonl, checkpoint.pt (every epoch) and "
        "summary.json to --out, and prints the summary as one JSON line.",
        epilog=RULES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset", default="fmnist-quick", help="preset name (see `eqprop presets`); default %(default)s"
    )
    p.add_argument("--epochs", type=int, help="number of epochs (preset: train.epochs)")
    p.add_argument("--batch-size", type=int, help="training batch size (preset: train.batch_size)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (preset: train.device)")
    p.add_argument("--seed", type=int, help="seed of the initialisation and of the data order")
    p.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: one per core; use 1 on a busy machine)"
    )
    p.add_argument(
        "--data-dir", help="folder holding the dataset files (default: $EQPROP_DATA_DIR, then Debian's)"
    )
    p.add_argument(
        "--rule",
        metavar="NAME",
        help="learning rule by its name in the literature: CL, PEP, NEP, CEP, PCpL, NCpL, CCpL, TBP, RBP "
        "(sets rule.kind and rule.variant; see below)",
    )
    p.add_argument("--out", help="run directory (default: runs/<preset>-<seed>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR (other settings come from it)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field, e.g. --set rule.beta=0.1 --set optimizer.lr=[0.1,0.05] (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_lazy("eqprop.cli.commands:train"))

    p = sub.add_parser(
        "eval",
        help="test accuracy of a checkpoint",
        description="Evaluate a checkpoint "
        "(a run directory or its checkpoint.pt) on the test set of its dataset.",
    )
    p.add_argument("checkpoint", help="run directory or checkpoint.pt")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--batch-size", type=int, default=1000)
    p.set_defaults(run=_lazy("eqprop.cli.commands:evaluate_checkpoint"))

    p = sub.add_parser(
        "presets",
        help="list the presets",
        description="List the presets with their "
        "architecture, rule, hyperparameters, measured and published numbers.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=_lazy("eqprop.cli.commands:presets"))

    p = sub.add_parser(
        "gradcheck",
        help="EqProp estimators vs the implicit-differentiation gradient",
        description="For one batch: cosine and relative error of each EqProp estimator (positive, negative, "
        "centered) against the implicit-differentiation gradient for each beta, the fitted log-log slope of "
        "error vs beta (expected 1 one-sided, 2 centered), and truncated backprop for comparison.",
    )
    p.add_argument("--preset", default="fmnist-dhn1h")
    p.add_argument(
        "--rule",
        metavar="NAME",
        help="check one named estimator instead of the preset's family: PEP, NEP, CEP (EqProp) or PCpL, "
        "NCpL, CCpL (coupled learning; bias_order None, so its error need not vanish with beta)",
    )
    p.add_argument(
        "--betas", type=float, nargs="+", default=[0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001]
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=["positive", "negative", "centered"],
        help="EqProp variants (for an aeqprop preset: optimistic, pessimistic, centered; the default maps to these)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--iterations",
        type=int,
        default=300,
        help="sweeps per phase (enough to reach the equilibrium; default %(default)s)",
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--checkpoint", help="use the weights of this run instead of a fresh initialisation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=_lazy("eqprop.cli.commands:gradcheck"))

    p = sub.add_parser(
        "compare",
        help="train several learning rules on one preset and tabulate them",
        description="Train the preset with each rule (named as in Scellier, Ernoult, Kendall & Kumar 2023) "
        "and each seed into OUT-DIR/<rule>/seed<k>/; finished runs are skipped and interrupted ones resumed "
        "when the command is run again. Prints the table (rule, test and train error in % as mean ± std over "
        "seeds, training seconds per epoch), writes compare.csv, compare.md, compare.json and compare.png "
        "(test error against epochs, one line per rule) to OUT-DIR, and ends with one JSON line.",
        epilog=RULES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset", default="fmnist-quick", help="preset name (see `eqprop presets`); default %(default)s"
    )
    p.add_argument(
        "--rules",
        default="CL,PEP,NEP,CEP,PCpL,NCpL,CCpL,TBP,RBP",
        help="comma-separated rule names (default: all nine, %(default)s)",
    )
    p.add_argument("--epochs", type=int, help="epochs per run (preset: train.epochs)")
    p.add_argument(
        "--seeds", type=int, default=1, help="runs per rule, seeds seed..seed+K-1 (default %(default)s)"
    )
    p.add_argument("--seed", type=int, help="first seed (preset: train.seed)")
    p.add_argument("--batch-size", type=int, help="training batch size (preset: train.batch_size)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (preset: train.device)")
    p.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: one per core; use 1 on a busy machine)"
    )
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--out-dir", help="comparison folder (default: runs/compare-<preset>)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field for every run, e.g. --set rule.beta=0.25 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=_lazy("eqprop.cli.commands:compare"))

    p = sub.add_parser(
        "arch-thermo",
        help="statistical-mechanics analysis of an iso-energetic family of architectures",
        description="Enumerate the architectures n_in -> hidden -> n_out whose parameter count solves U = "
        "budget (exactly, or within --tol), score each (energy, permutation / linear-region / Gaussian "
        "entropies, effectiveness, efficiency, stability, ensemble temperature), rank them by maximum "
        "entropy subject to rho <= rho_max, print the top rows, and write family.csv and plots to "
        "--out-dir. The definitions reconstruct Chinea (2020/2023); see docs/architecture-thermodynamics.md.",
    )
    p.add_argument("--in", dest="n_in", type=int, default=784, help="input width (default %(default)s)")
    p.add_argument("--out", dest="n_out", type=int, default=10, help="output width (default %(default)s)")
    p.add_argument("--budget", type=int, default=60000, help="energy U: parameters (default %(default)s)")
    p.add_argument(
        "--depths", default="1-8", help="hidden-layer counts: 1-8, 1,2,4 or 1-3,6 (default %(default)s)"
    )
    p.add_argument(
        "--tol", type=float, default=0.02, help="relative band |U - budget| <= tol*budget; 0 = exact"
    )
    p.add_argument("--top", type=int, default=10, help="rows to print (default %(default)s)")
    p.add_argument("--n-min", type=int, default=1, help="narrowest hidden layer (default %(default)s)")
    p.add_argument("--n-max", type=int, default=1024, help="widest hidden layer (default %(default)s)")
    p.add_argument("--no-bias", action="store_true", help="count interactions only (no biases) in U")
    p.add_argument(
        "--entropy",
        choices=["gauss", "regions", "perm"],
        default="gauss",
        help="ranking entropy (default %(default)s)",
    )
    p.add_argument(
        "--rho-max",
        type=float,
        default=0.02,
        help="effectiveness constraint rho = L/geo-mean width <= rho_max; inf = none (default %(default)s)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=float("inf"),
        help="design temperature of F = U - T*S (default inf)",
    )
    p.add_argument(
        "--family",
        choices=["band", "shapes"],
        default="band",
        help="band: every solution (sampled above --max-per-depth); shapes: scaled width profiles",
    )
    p.add_argument(
        "--max-per-depth", type=int, default=500, help="enumerate up to this many per depth, else sample"
    )
    p.add_argument(
        "--random-shapes", type=int, default=0, help="extra random profiles per depth (--family shapes)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    p.add_argument(
        "--out-dir", help="folder for family.csv and the plots (default runs/arch-thermo-IN-OUT-BUDGET)"
    )
    p.add_argument("--no-plots", action="store_true", help="write no PNG")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.set_defaults(run=_lazy("eqprop.cli.thermo:arch_thermo"))

    p = sub.add_parser(
        "arch-study",
        help="train an iso-energetic family (BP MLPs, EqProp DHNs) and test the analyzer's measures",
        description="Train every architecture of a study preset as a backprop ReLU MLP and as an EqProp deep "
        "Hopfield net, several seeds, and report how each arch-thermo measure predicts test accuracy, "
        "final train loss and train-test gap (Kendall tau, Spearman rho, rho partialled on depth, top-k, "
        "seed spread). Resumable: finished runs are kept in OUT/results.jsonl and skipped when rerun.",
    )
    p.add_argument("--preset", default="ci", help="ci, fmnist-60k or fmnist-200k (default %(default)s)")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--out", help="study folder (default runs/arch-study-<preset>)")
    p.add_argument("--seeds", type=int, help="number of seeds (more extends a finished study)")
    p.add_argument("--methods", nargs="+", choices=["bp", "eqprop"], help="train only these methods")
    p.add_argument("--data-dir", help="folder holding the dataset files")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_lazy("eqprop.cli.thermo:arch_study"))

    p = sub.add_parser(
        "spice-check",
        help="one example's steady state vs ngspice",
        description="Export one example's circuit to SPICE, run ngspice -b on it, and compare every node "
        "potential with our steady state, against a tolerance derived from the near-ideal SPICE diodes (forward "
        "drop, leakage), SPICE's tolerances and our solver's residual (see eqprop.spice). Either a "
        "deep_resistive preset (fresh initialisation, or --checkpoint) and a test example, or --random N. "
        "Exit status 0 when within the tolerance, 1 when not. Needs ngspice (apt-get install ngspice).",
    )
    p.add_argument("--preset", help="a deep_resistive preset (default drn-xs unless --random is given)")
    p.add_argument("--checkpoint", metavar="RUN_DIR", help="use the weights (and preset) of this run")
    p.add_argument("--example", type=int, default=0, help="index into the test set (default %(default)s)")
    p.add_argument("--data-dir", help="folder holding the IDX files")
    p.add_argument(
        "--random", type=int, metavar="N", help="a seeded random layered network of about N nodes instead"
    )
    p.add_argument("--seed", type=int, default=0, help="of --random, or of the preset's initialisation")
    p.add_argument(
        "--iterations", type=int, default=5000, help="our solver's sweeps at most (default %(default)s)"
    )
    p.add_argument("--diode-is", type=float, default=1e-9, help="SPICE diode IS in A (default %(default)g)")
    p.add_argument("--diode-n", type=float, default=1e-4, help="SPICE diode N (default %(default)g)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for ngspice (default %(default)g)")
    p.add_argument("--netlist-out", metavar="FILE", help="also write the SPICE deck to FILE")
    p.set_defaults(run=_lazy("eqprop.cli.spice:spice_check"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except EqpropError as err:  # a known problem: one line and a hint, no traceback
        print(f"eqprop: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eqprop: interrupted (the last completed epoch is in the checkpoint)", file=sys.stderr)
        return 130


def _lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """The subcommand ``"module:function"``, imported only when it runs (so ``eqprop --help`` stays instant)."""

    def run(args: argparse.Namespace) -> int:
        module, _, name = target.partition(":")
        return int(getattr(importlib.import_module(module), name)(args))

    return run
