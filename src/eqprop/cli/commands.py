"""The subcommands behind ``eqprop`` (imported lazily by :mod:`eqprop.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from eqprop.errors import ConfigError
from eqprop.train.config import (
    RunConfig,
    apply_overrides,
    apply_rule_name,
    build,
    config_to_dict,
    list_presets,
    load_preset,
)

EQPROP_VARIANTS = ["positive", "negative", "centered"]
RULE_KEYS = {  # what `eqprop presets` shows of each kind of rule
    "eqprop": ("kind", "beta", "variant"),
    "aeqprop": (
        "kind",
        "beta",
        "mode",
        "epsilon",
        "epsilon_biases",
        "parameter_iterations",
        "parameter_relaxation",
    ),
    "contrastive": ("kind",),
    "coupled": ("kind", "beta", "variant"),
    "implicit": ("kind", "cg_iterations"),
    "backprop": ("kind", "steps"),
}
RULE_FIELDS = ("rule.kind", "rule.variant")  # what a rule name sets (--rule, compare --rules)


def _emit(result: dict[str, Any]) -> None:
    """The last stdout line: one JSON object."""
    print(json.dumps(result), flush=True)


def _with_flags(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    sets = list(args.overrides)
    for flag, key in (
        ("epochs", "train.epochs"),
        ("batch_size", "train.batch_size"),
        ("device", "train.device"),
        ("seed", "train.seed"),
        ("threads", "train.threads"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            sets.append(f"{key}={json.dumps(value)}")
    if getattr(args, "data_dir", None):
        sets.append(f"data.data_dir={json.dumps(args.data_dir)}")
    return apply_overrides(config, sets)


def _clashing_sets(overrides: list[str]) -> list[str]:
    return [key for key in (o.partition("=")[0].strip() for o in overrides) if key in RULE_FIELDS]


def _with_rule(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """``--rule NAME``: the rule's kind and variant from its literature name (after the other flags, so that
    TBP counts the sweeps of the solver as overridden)."""
    name = getattr(args, "rule", None)
    if not name:
        return config
    clash = _clashing_sets(args.overrides)
    if clash:
        raise ConfigError(
            f"--rule {name} sets rule.kind and rule.variant: do not also --set {clash[0]}",
            hint="drop one of the two (rule.beta and rule.steps may still be set)",
        )
    return apply_rule_name(config, name)


def train(args: argparse.Namespace) -> int:
    from eqprop.train.loop import fit, load_run

    if args.resume:
        if args.out and Path(args.out) != Path(args.resume):
            raise ConfigError("--resume DIR continues the run in DIR: do not also pass a different --out")
        if args.overrides or args.batch_size is not None or args.seed is not None or args.rule:
            raise ConfigError(
                "--resume continues a run with its own settings: only --epochs, --device, --threads and --data-dir may be given",
                hint="start a new run with --out to change other settings",
            )
        saved, _ = load_run(args.resume)
        config = _with_flags(
            saved,
            argparse.Namespace(
                overrides=[],
                epochs=args.epochs,
                batch_size=None,
                device=args.device,
                threads=args.threads,
                seed=None,
                data_dir=args.data_dir,
            ),
        )
        summary = fit(config, args.resume, resume=True, progress=not args.no_progress)
    else:
        config = _with_rule(_with_flags(load_preset(args.preset), args), args)
        out = args.out or f"runs/{config.name}-seed{config.train.seed}"
        summary = fit(config, out, progress=not args.no_progress)
    _emit(summary)
    return 0


def evaluate_checkpoint(args: argparse.Namespace) -> int:
    from eqprop.data import load_dataset
    from eqprop.train.checkpoint import check_compatible
    from eqprop.train.config import data_options
    from eqprop.train.loop import _device, evaluate, load_run

    config, ckpt = load_run(args.checkpoint)
    if args.data_dir:
        config = apply_overrides(config, [f"data.data_dir={json.dumps(args.data_dir)}"])
    device = _device(args.device or config.train.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[config.train.dtype]
    system, cost, solver, _, _ = build(config)
    check_compatible(ckpt["system"], system, what="system")
    check_compatible(ckpt["cost"], cost, what="cost")
    system.load_state_dict(ckpt["system"])
    cost.load_state_dict(ckpt["cost"])
    system.to(device=device, dtype=dtype)
    cost.to(device=device, dtype=dtype)
    data = load_dataset(**{**data_options(config), "validation": 0})  # padding and normalisation as in training
    from eqprop.data import Split

    test = Split(x=data.test.x.to(device=device, dtype=dtype), y=data.test.y.to(device))
    result = evaluate(system, cost, solver, test, batch_size=args.batch_size)
    _emit(
        {
            "checkpoint": str(args.checkpoint),
            "preset": config.name,
            "epoch": int(ckpt["epoch"]),
            "test_accuracy": result["accuracy"],
            "test_loss": result["loss"],
            "examples": len(test),
        }
    )
    return 0


def _architecture(config: RunConfig) -> str:
    s = config.system
    if s.kind == "conv_hopfield":
        convs = "-".join(f"conv{c}" for c in s.channels)
        return f"{'x'.join(map(str, s.input_shape))}-{convs}-{'-'.join(map(str, s.dense))} conv_hopfield (k{s.kernel_size}, {s.pool}-pool)"
    return "-".join(map(str, s.sizes)) + f" {s.kind}"


def _describe(config: RunConfig) -> dict[str, Any]:
    d = config_to_dict(config)
    solver = d["solver"]
    nudged = d["nudged_solver"] or solver
    return {
        "name": config.name,
        "description": config.description,
        "dataset": config.data.dataset,
        "architecture": _architecture(config),
        "cost": config.cost.kind,
        "rule": {k: v for k, v in d["rule"].items() if k in RULE_KEYS[config.rule.kind]},
        "solver": f"{solver['kind']} {solver['order']} x{solver['iterations']} free / x{nudged['iterations']} nudged",
        "optimizer": d["optimizer"],
        "schedule": d["schedule"],
        "batch_size": config.train.batch_size,
        "epochs": config.train.epochs,
        "measured": config.measured,
        "published": config.published,
    }


def presets(args: argparse.Namespace) -> int:
    rows = [_describe(load_preset(name)) for name in list_presets()]
    if args.json:
        _emit({"presets": rows})
        return 0
    for r in rows:
        print(f"{r['name']}: {r['description']}")
        print(
            f"  data {r['dataset']} | {r['architecture']} | cost {r['cost']} | batch {r['batch_size']} | "
            f"{r['epochs']} epochs"
        )
        print(f"  rule {r['rule']} | {r['solver']}")
        o, s = r["optimizer"], r["schedule"]
        lr = "eps·beta per tensor" if r["rule"]["kind"] == "aeqprop" else o["lr"]
        if o.get("lr_biases") is not None and r["rule"]["kind"] != "aeqprop":
            lr = f"{o['lr']} (biases {o['lr_biases']})"
        print(
            f"  optimizer {o['kind']} lr {lr} momentum {o['momentum']} | schedule {s['kind']}"
            + (f" gamma {s['gamma']}" if s["kind"] == "exponential" else "")
        )
        if r["measured"]:
            print("  measured: " + json.dumps(r["measured"]))
        else:
            print("  measured: (no run recorded yet)")
        if r["published"]:
            print("  published: " + json.dumps(r["published"]))
        print()
    return 0


def gradcheck(args: argparse.Namespace) -> int:
    from eqprop.analysis.gradcheck import gradcheck as run_check
    from eqprop.data import load_dataset
    from eqprop.solvers import BlockCoordinate, GradientFlow
    from eqprop.train.checkpoint import check_compatible
    from eqprop.train.config import data_options
    from eqprop.train.loop import load_run

    if args.checkpoint:
        config, ckpt = load_run(args.checkpoint)
    else:
        config, ckpt = load_preset(args.preset), None
    sets = list(args.overrides)
    if args.data_dir:
        sets.append(f"data.data_dir={json.dumps(args.data_dir)}")
    config = apply_overrides(config, sets)
    if args.batch_size < 1 or args.iterations < 1:
        raise ConfigError("--batch-size and --iterations must be >= 1")
    family = config.rule.kind
    variants = args.variants
    if args.rule:
        from eqprop.rules.names import lookup

        row = lookup(args.rule)
        if row.kind not in ("eqprop", "coupled") or row.variant is None:
            raise ConfigError(
                f"gradcheck sweeps beta, and --rule {row.name} ({row.title}) has none",
                hint="choose PEP, NEP, CEP, PCpL, NCpL or CCpL",
            )
        family, variants = row.kind, [row.variant]
    if family not in ("eqprop", "aeqprop", "coupled"):
        raise ConfigError(
            f"gradcheck compares EqProp-type estimators; the preset's rule is {config.rule.kind!r}",
            hint="use a preset whose rule.kind is eqprop, aeqprop or coupled, or pass --rule NAME",
        )
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    system, cost, solver, _, rule = build(config, generator=torch.Generator().manual_seed(args.seed))
    estimator = None
    if family == "coupled":
        from eqprop.rules import CoupledLearning

        def estimator(variant: str, beta: float) -> Any:
            return CoupledLearning(beta=beta, variant=variant)  # type: ignore[arg-type]

    elif family == "aeqprop":
        if variants == EQPROP_VARIANTS:
            variants = ["optimistic", "pessimistic", "centered"]

        def estimator(mode: str, beta: float) -> Any:
            return dataclasses.replace(rule, beta=beta, mode=mode)

    if ckpt is not None:
        check_compatible(ckpt["system"], system, what="system")
        system.load_state_dict(ckpt["system"])
        cost.load_state_dict(ckpt["cost"])
    system.to(dtype=dtype)
    cost.to(dtype=dtype)
    if isinstance(solver, BlockCoordinate):
        solver = BlockCoordinate(iterations=args.iterations, order=solver.order)
    elif isinstance(solver, GradientFlow):
        solver = GradientFlow(iterations=args.iterations, step_size=solver.step_size)
    data = load_dataset(**{**data_options(config), "validation": 0})  # padding and normalisation as in training
    pick = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(args.seed))[
        : args.batch_size
    ]
    x = data.test.x[pick].to(dtype)
    y = data.test.y[pick]
    result = run_check(system, cost, solver, x, y, betas=args.betas, variants=variants, estimator=estimator)
    result = {"preset": config.name, "rule": family, "iterations": args.iterations, **result}
    if not args.json:
        ref = result["reference"]
        print(
            f"reference: implicit differentiation, |g| = {ref['gradient_norm']:.4g}, free residual "
            f"{ref['free_residual']:.2g}, batch {result['batch']} ({result['dtype']})",
            file=sys.stderr,
        )
        print(f"{'variant':>10} {'beta':>8} {'cosine':>12} {'rel. error':>12}", file=sys.stderr)
        for r in result["eqprop"]:
            print(
                f"{r['variant']:>10} {r['beta']:>8.4g} {r['cosine']:>12.8f} {r['relative_error']:>12.4e}",
                file=sys.stderr,
            )
        for v, slope in result["slopes"].items():
            expected = result["expected_slopes"][v]
            print(
                f"slope of log error vs log beta, {v}: {slope:.3f} (expected "
                f"{'none: not an estimator of the gradient as beta -> 0' if expected is None else expected})",
                file=sys.stderr,
            )
        b = result["backprop"]
        print(
            f"truncated backprop ({b['steps']} sweeps): cosine {b['cosine']:.8f}, rel. error "
            f"{b['relative_error']:.3e}",
            file=sys.stderr,
        )
    _emit(result)
    return 0


def compare(args: argparse.Namespace) -> int:
    from eqprop.train.compare import compare_rules

    clash = _clashing_sets(args.overrides)
    if clash:
        raise ConfigError(
            f"compare sets rule.kind and rule.variant from --rules: do not also --set {clash[0]}",
            hint="list the rules with --rules, e.g. --rules CEP,PCpL (rule.beta and rule.steps may be set)",
        )
    config = _with_flags(load_preset(args.preset), args)
    out = args.out_dir or f"runs/compare-{config.name}"
    result = compare_rules(config, args.rules, out, seeds=args.seeds, progress=not args.no_progress)
    if not args.json:
        print(Path(result["markdown"]).read_text(encoding="utf-8"), end="")
    _emit(result)
    return 0
