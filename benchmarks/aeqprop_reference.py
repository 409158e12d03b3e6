"""Side by side with the official Agnostic EqProp code (bscellier/agnostic-equilibrium-propagation), FMNIST 1h.

The official code is imported from a checkout of its public repository at the commit named in
``_common.REFERENCES``, in a folder AEQPROP_REF outside this repository (never vendored here):

    git clone https://github.com/bscellier/agnostic-equilibrium-propagation $AEQPROP_REF && \\
        git -C $AEQPROP_REF checkout e31e74ce8f4251217b71c3a8fe886ee6f25882b1
    .venv/bin/python benchmarks/aeqprop_reference.py --reference-dir $AEQPROP_REF

The official network is built by its own ``run.py:build_network`` (the function's source is read from the
checkout and executed on its own, so that ``run.py``'s module-level argument parsing and its torchvision
dataset loader are not run) from its ``hyperparameters.py`` FashionMNIST/1h entry, with run.py's CLI defaults
that override it (centered, nudging 0.5): 784→2048→10, thresholds 1e-3, ≤ 100 sweeps per phase, 1 parameter
iteration, ε weights 0.1/0.05 and biases 0.02/0.01, batch 32. Its training step for a mini-batch is timed as
its ``training.epoch.Trainer.run`` performs it (``set_data`` with the warm start, ``Aeqprop.inference``,
``Aeqprop.training_step``), over a list of in-memory batches, with no statistics attached (its ``Monitor``
would add per-batch statistics and TensorBoard logging; both are left out, see "excluded").

Ours: the rule, solvers and optimizer of ``run = build(load_preset("fmnist-aeqprop-1h"))`` (``run.optimizer``):
``rule.gradients(system, cost, solver, x, y, nudged_solver=..., init=..., out="grad")`` then ``optimizer.step()``
(SGD at lr = ε·(β₂ − β₁) per tensor), as the training loop does, with the preset's rule (centered, β = 0.25:
phases at −0.25 and +0.25; the official nudging 0.5 is the spread β₂ − β₁, the same physics) and its ``train.warm_start``
(``init`` is the previous batch's ``Estimate.last_state``). A third contender (skip it with ``--no-twin``) is the EqProp twin
preset ``fmnist-aeqprop-1h-eqprop`` run the same way: what the relaxations alone cost. All start from the same
initial parameters and see the same real Fashion-MNIST training batches; the contenders alternate (ours,
official, twin, ours, ...) in one process. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import eqprop
import eqprop.rules.physical
from _common import (
    REFERENCES,
    environment,
    load_average,
    reference_dir,
    reference_howto,
    reference_record,
    summary,
)
from eqprop.data import load_idx_dataset
from eqprop.train import apply_overrides, build, load_preset

PRESET = "fmnist-aeqprop-1h"
TWIN = "fmnist-aeqprop-1h-eqprop"
REFERENCE = "aeqprop"  # its key in _common.REFERENCES
REFERENCE_HINT = reference_howto(REFERENCE)
NEEDED = ("run.py", "hyperparameters.py", "network/network.py", "training/sgd.py", "training/epoch.py")
BATCH = 32
# The official side: run.py's --nudging and --method defaults, which override hyperparameters.py. Its nudging is
# the spread β₂ − β₁ of the two phases: ours is the preset's rule, centered at ±β = ±0.25 (the same physics).
NUDGING, MODE = 0.5, "centered"
Batches = list[tuple[torch.Tensor, torch.Tensor]]


# -- the official code ----------------------------------------------------------------------------------------
def import_reference(ref_dir: Path) -> types.SimpleNamespace:
    """Its modules, imported from ``ref_dir``, and its ``build_network`` taken out of run.py."""
    missing = [p for p in NEEDED if not (ref_dir / p).is_file()]
    if missing:
        raise SystemExit(
            f"--reference-dir {ref_dir}: not a checkout of {REFERENCES[REFERENCE].repository} "
            f"(missing {', '.join(missing)}); {REFERENCE_HINT}"
        )
    sys.path.insert(0, str(ref_dir))
    # datasets.py (torchvision) and training/monitor.py (tensorboard) are not imported: the batches are made
    # here and no Monitor is built, so nothing needs stubbing.
    from hyperparameters import load_hyperparameters
    from network.network import Network
    from training.epoch import Trainer
    from training.sgd import Aeqprop

    # run.py parses sys.argv and imports torchvision at module level: execute only its build_network.
    source = (ref_dir / "run.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_network")
    namespace: dict[str, Any] = {"Network": Network}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(ref_dir / "run.py"), "exec"), namespace)
    return types.SimpleNamespace(
        load_hyperparameters=load_hyperparameters,
        build_network=namespace["build_network"],
        Trainer=Trainer,
        Aeqprop=Aeqprop,
    )


def official_network(ref: types.SimpleNamespace, architecture: str) -> tuple[Any, Any, dict]:
    """(network, Trainer, hparams) exactly as run.py's __main__ builds them for ``--dataset FashionMNIST
    --architecture ARCHITECTURE`` with its CLI defaults (``1h`` here, ``conv_avg`` in the conv benchmark)."""
    hp = ref.load_hyperparameters("FashionMNIST", architecture)
    network = ref.build_network(
        layer_shapes=hp["layer_shapes"],
        edges=hp["edges"],
        weight_types=hp["weight_types"],
        gains=hp["gains"],
        weight_shapes=hp.get("weight_shapes"),
        paddings=hp.get("paddings"),
        min_intervals=hp["min_intervals"],
        max_intervals=hp["max_intervals"],
        learning_rates_biases=hp["learning_rates_biases"],
        learning_rates_weights=hp["learning_rates_weights"],
        weight_penalty=hp["weight_penalty"],
        weight_decay=hp["weight_decay"],
    )
    network.set_device("cpu")
    network.thresholds = [hp["threshold"]] * network.num_layers
    hp["nudging_in_hyperparameters"] = hp.get("nudging")  # before run.py's default overrides it
    hp["training_mode"], hp["nudging"] = MODE, NUDGING
    differentiator = ref.Aeqprop(network)
    differentiator.training_mode = hp["training_mode"]
    differentiator.nudging = hp["nudging"]
    differentiator.max_iterations_first_phase = hp["max_iterations_first_phase"]
    differentiator.max_iterations_second_phase = hp["max_iterations_second_phase"]
    differentiator.max_iterations_params = hp["max_iterations_params"]
    trainer = ref.Trainer(network, [], differentiator)
    trainer.use_soft_targets = hp["use_soft_targets"]
    return network, trainer, hp


def build_reference(ref: types.SimpleNamespace, init: eqprop.DeepHopfield | None) -> tuple[Any, Any, dict]:
    """The official 1h network and Trainer; ``init``: eqprop parameters copied in (same starting point)."""
    network, trainer, hp = official_network(ref, "1h")
    if init is not None:
        for param, tensor in zip(network.params(), reference_layout(init), strict=True):
            param.state = tensor.clone()
    return network, trainer, hp


def reference_layout(system: eqprop.DeepHopfield) -> list[torch.Tensor]:
    """eqprop's parameters in the official layout and order: [b1, b2, W0 (1,28,28,2048), W1 (2048,10)]."""
    W0, W1 = (w.detach() for w in system.weights)
    b1, b2 = (b.detach() for b in system.biases)
    return [b1, b2, W0.t().reshape(1, 28, 28, W0.shape[0]), W1.t()]


class SweepCounter:
    """Records the sweeps of every relaxation of the official network, by phase (a thin wrapper around its
    ``homeostatic_relaxation``, which returns the count; ``clamped_relaxation`` adds one sweep)."""

    def __init__(self, network: Any) -> None:
        self.counts: dict[str, list[int]] = {"free": [], "phase1": [], "phase2": []}
        inner = network.homeostatic_relaxation

        def counted(backward=False, max_iterations=100, use_criterion=True, adjust_control_knobs=True):
            n = inner(backward, max_iterations, use_criterion, adjust_control_knobs)
            phase = "free" if not backward else ("phase1" if adjust_control_knobs else "phase2")
            self.counts[phase].append(n)
            return n

        network.homeostatic_relaxation = counted


# -- ours -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Ours:
    system: eqprop.DeepHopfield
    cost: eqprop.SquaredError
    solver: eqprop.Solver
    nudged: eqprop.Solver | None
    rule: eqprop.Rule
    optimizer: torch.optim.Optimizer
    warm_start: bool = False  # the preset's train.warm_start, as the training loop honours it
    free_sweeps: list[int] = dataclasses.field(default_factory=list)
    nudged_sweeps: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    last: tuple[torch.Tensor, ...] | None = None

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        init = self.last if self.last is not None and self.last[0].shape[0] == x.shape[0] else None
        est = self.rule.gradients(
            self.system, self.cost, self.solver, x, y, nudged_solver=self.nudged, init=init, out="grad"
        )
        self.optimizer.step()
        self.last = est.last_state if self.warm_start else None
        self.free_sweeps.append(est.phases[0].stats.iterations)  # a Python int: no host sync


def make_ours(seed: int, preset: str = PRESET, **rule_changes: Any) -> Ours:
    """The preset's run with the initial weights of ``train.seed = seed`` (on the CPU, in float32)."""
    config = apply_overrides(
        load_preset(preset), [f"train.seed={seed}", "train.device='cpu'", "train.dtype='float32'"]
    )
    run = build(config)
    rule = dataclasses.replace(run.rule, **rule_changes) if rule_changes else run.rule
    return Ours(
        run.system,
        run.cost,
        run.solver,
        run.nudged_solver,
        rule,
        run.optimizer,
        warm_start=config.train.warm_start,
    )


def describe_ours() -> str:
    """How our step runs with the preset's options (warm start, where phase 2 starts)."""
    config = load_preset(PRESET)
    start = "from the previous batch's final state" if config.train.warm_start else "from zero"
    phase2 = (
        "the free state (restored, θ held)" if config.rule.phase2_start == "free" else "the phase-1 state"
    )
    return (
        f"ours: rule.gradients(system, cost, solver, x, y, nudged_solver, init, out='grad') (free phase {start}, "
        "≤100 forward sweeps; SpringCoupled phase 1 ≤100 backward sweeps + its built-in homeostatic controller; "
        f"phase 2 from {phase2}, ≤100 sweeps + exact parameter relaxation; the displacement sensor writes "
        "−Δθ/(ε·(β₂ − β₁)) into .grad; θ untouched) + SGD step"
    )


class NudgedSweepCounter:
    """Records (beta, sweeps) of every relaxation our SpringCoupled makes into ``sink`` (wraps
    ``eqprop.rules.physical.relax``, whose first argument is the nudged ``TotalEnergy`` with its ``beta``;
    ``stats.iterations`` is a Python int, so the wrapper adds no host sync)."""

    def __init__(self) -> None:
        self.sink: list[tuple[float, int]] = []
        self._inner = eqprop.rules.physical.relax

        def counted(problem: Any, *args: Any, **kwargs: Any) -> eqprop.Equilibrium:
            eq = self._inner(problem, *args, **kwargs)
            self.sink.append((float(problem.beta), eq.stats.iterations))
            return eq

        eqprop.rules.physical.relax = counted  # type: ignore[assignment]

    def remove(self) -> None:
        eqprop.rules.physical.relax = self._inner  # type: ignore[assignment]


def by_beta(records: list[tuple[float, int]], beta: float) -> list[int]:
    return [n for b, n in records if b == beta]


# -- measurement --------------------------------------------------------------------------------------------------
def real_batches(n: int, seed: int) -> tuple[Batches, str]:
    try:
        ds = load_idx_dataset("fashion-mnist")
    except (eqprop.DataError, eqprop.ConfigError) as err:
        raise SystemExit(
            f"Fashion-MNIST not found ({str(err).splitlines()[0]}): the sweep counts, and so the timings, depend "
            "on the data; install Debian's dataset-fashion-mnist or set $EQPROP_DATA_DIR"
        ) from err
    order = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(seed))[: n * BATCH]
    x, y = ds.train.x[order], ds.train.y[order]
    out = [(x[i : i + BATCH].contiguous(), y[i : i + BATCH].contiguous()) for i in range(0, n * BATCH, BATCH)]
    return out, f"Fashion-MNIST train, {n} batches of {BATCH} (a fixed random draw, seed {seed})"


def rate_ours(ours: Ours, data: Batches, counter: NudgedSweepCounter | None = None) -> float:
    if counter is not None:
        counter.sink = ours.nudged_sweeps
    t0 = time.perf_counter()
    for x, y in data:
        ours.step(x, y)
    return sum(len(x) for x, _ in data) / (time.perf_counter() - t0)


def rate_reference(trainer: Any, data: Batches) -> float:
    trainer._dataloader = data  # its Trainer.run iterates `for x, y in self._dataloader`
    t0 = time.perf_counter()
    trainer.run(verbose=False)
    return sum(len(x) for x, _ in data) / (time.perf_counter() - t0)


def agreement(ref: types.SimpleNamespace, batch: tuple[torch.Tensor, torch.Tensor], seed: int) -> dict:
    """One step of each from the same parameters and a zero state, on the same batch: how close the updates are."""
    ours = make_ours(seed)
    network, trainer, _ = build_reference(ref, ours.system)
    before = [t.clone() for t in reference_layout(ours.system)]
    ours.step(*batch)
    trainer._dataloader = [(batch[0].view(-1, 1, 28, 28), batch[1])]
    trainer.run(verbose=False)
    names = ["biases.0", "biases.1", "weights.0", "weights.1"]
    diff = {}
    for name, b0, mine, theirs in zip(
        names, before, reference_layout(ours.system), network.params_state(), strict=True
    ):
        d_ours, d_ref = mine - b0, theirs - b0
        diff[name] = f"{float((d_ours - d_ref).norm() / d_ref.norm()):.2e}"
    return {
        "what": "one step from the same parameters and a zero state on the same batch: ‖Δθ_ours − Δθ_ref‖/‖Δθ_ref‖",
        "relative_update_difference": diff,
        "why_not_zero": (
            "both stop each relaxation at a summed L1 change < 1e-3 (not at the equilibrium), "
            + (
                ""
                if load_preset(PRESET).rule.phase2_start == "free"
                else "the official code restarts phase 2 from the free state and ours continues from the "
                "phase-1 state, "
            )
            + "the official code sweeps once more before moving θ, and float32 rounding differs (it recomputes "
            "x·W0 every sweep)"
        ),
    }


def mean(values: list[int]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def alternate(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):  # A, B, A, B, ... in one process
        for name, fn in contenders.items():
            rates[name].append(fn())
    return rates


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--reference-dir",
        type=Path,
        default=None,
        help=f"(required) a checkout of {REFERENCES[REFERENCE].repository} at commit "
        f"{REFERENCES[REFERENCE].commit[:7]}, outside this repo",
    )
    p.add_argument("--batches", type=int, default=10, help="mini-batches of 32 per measurement")
    p.add_argument("--repeats", type=int, default=3, help="measurements per contender (alternating)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for the comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-thread-scaling", action="store_true", help="skip our 2-threads-vs-1 measurement at batch 32"
    )
    p.add_argument(
        "--no-twin", action="store_true", help="skip the EqProp twin preset's step as a third contender"
    )
    args = p.parse_args(argv)
    ref_dir = reference_dir(p, args.reference_dir, REFERENCE_HINT)
    if args.batches < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--batches, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    ref = import_reference(ref_dir)

    data, data_note = real_batches(args.batches, args.seed)
    ref_data = [(x.view(-1, 1, 28, 28), y) for x, y in data]  # its input layer is (1, 28, 28)
    check = agreement(ref, data[0], args.seed)

    load_before = load_average()
    ours = make_ours(args.seed)
    network, trainer, hp = build_reference(ref, ours.system)
    sweeps_ref = SweepCounter(network)
    warm = max(1, min(3, len(data)))
    for x, y in data[:warm]:  # warm up: first calls, allocator; also the official warm start state
        ours.step(x, y)
    rate_reference(trainer, ref_data[:warm])
    ours.free_sweeps.clear()
    for counts in sweeps_ref.counts.values():
        counts.clear()
    counter = NudgedSweepCounter()
    contenders = {
        "ours": lambda: rate_ours(ours, data, counter),
        "official": lambda: rate_reference(trainer, ref_data),
    }
    if not args.no_twin:
        twin = make_ours(args.seed, preset=TWIN)
        for x, y in data[:warm]:
            twin.step(x, y)
        contenders["eqprop_twin"] = lambda: rate_ours(twin, data)
    rates = alternate(contenders, args.repeats)
    counter.remove()
    assert isinstance(ours.rule, eqprop.AgnosticEqProp)
    b1, b2 = ours.rule.betas
    ratio = round(statistics.median(a / b for a, b in zip(rates["ours"], rates["official"], strict=True)), 2)
    twin_ratio = (
        None
        if args.no_twin
        else round(
            statistics.median(a / b for a, b in zip(rates["ours"], rates["eqprop_twin"], strict=True)), 2
        )
    )

    threads: dict[str, Any] | None = None
    if not args.no_thread_scaling:
        scaling = make_ours(args.seed)
        for x, y in data[:warm]:
            scaling.step(x, y)

        def at(n: int) -> Callable[[], float]:
            def run() -> float:
                torch.set_num_threads(n)
                try:
                    return rate_ours(scaling, data)
                finally:
                    torch.set_num_threads(args.threads)

            return run

        t_rates = alternate({"threads_1": at(1), "threads_2": at(2)}, args.repeats)
        threads = {
            "batch_size": BATCH,
            "ex_per_s": {k: summary(v) for k, v in t_rates.items()},
            "speedup_2_over_1": round(
                statistics.median(
                    b / a for a, b in zip(t_rates["threads_1"], t_rates["threads_2"], strict=True)
                ),
                2,
            ),
        }

    result: dict[str, Any] = {
        "benchmark": "aeqprop_reference",
        "preset": PRESET,
        "config": {
            "network": "784-2048-10, hidden [0, 1], output [-1, 2]",
            "variant": ours.rule.variant,
            "beta": ours.rule.beta,
            "betas": [b1, b2],
            "official_nudging": NUDGING,
            "epsilon": {"weights": [0.1, 0.05], "biases": [0.02, 0.01]},
            "threshold": "per-layer L1 change summed over the batch < 1e-3, at most 100 sweeps per phase",
            "parameter_iterations": 1,
            "batch_size": BATCH,
            "dtype": "float32",
        },
        "reference": {
            **reference_record(REFERENCE, ref_dir),
            "dir": str(ref_dir),
            "built_as": (
                "run.py build_network(**hyperparameters.load_hyperparameters('FashionMNIST', '1h')), "
                "set_device('cpu'), thresholds [1e-3]*2, Aeqprop(training_mode='centered', nudging=0.5 (run.py "
                "defaults), max_iterations 100/100, max_iterations_params 1), Trainer(network, batches, "
                "differentiator), use_soft_targets False; initial parameters copied from ours"
            ),
            "hyperparameters_nudging_overridden": hp.get("nudging_in_hyperparameters"),
            "stubs": [],
        },
        "included": [
            "official: its Trainer.run over a list of batches: per batch network.set_data(x, y) (warm start from "
            "the previous batch's state), Aeqprop.inference() (≤100 forward sweeps), Aeqprop.training_step() "
            "(phase 1 ≤100 backward sweeps + knob adjustment, phase 2 from the free state ≤100 sweeps, one more "
            "sweep + parameter relaxation, the per-layer/per-parameter change .item() it returns)",
            describe_ours(),
            f"eqprop_twin (unless --no-twin): the {TWIN} preset's step, the same way (centered EqProp ±β, "
            "both nudged phases from the free state, SGD at lr = ε·(β₂ − β₁)): the cost of the relaxations alone",
            "sweep counting: a thin wrapper on each side (its homeostatic_relaxation, our "
            "eqprop.rules.physical.relax)",
        ],
        "excluded": [
            "data loading: both read the same pre-made in-memory batches (its torchvision DataLoader and "
            "RandomHorizontalFlip are not used)",
            "its per-batch statistics (no Statistic attached to its Trainer: energy, cost, error, violation, "
            "saturation, changes, counters) and everything its Monitor does per epoch (evaluation, lr decay, "
            "TensorBoard, checkpoints, printing)",
            "our training loop's bookkeeping (loss/accuracy accumulation, logging, checkpoints)",
        ],
        "data": data_note,
        "batches_per_measurement": args.batches,
        "repeats": args.repeats,
        "warmup_batches": warm,
        "threads": args.threads,
        "order": "alternating ours, official, ours, official, ... in one process",
        "agreement": check,
        "ex_per_s": {name: summary(v) for name, v in rates.items()},
        "ours_ex_per_s": round(statistics.median(rates["ours"]), 1),
        "official_ex_per_s": round(statistics.median(rates["official"]), 1),
        "ratio_ours_over_official": ratio,
        "ratio_per_repeat": [round(a / b, 2) for a, b in zip(rates["ours"], rates["official"], strict=True)],
        "ratio_ours_over_eqprop_twin": twin_ratio,
        "bar": {"ratio_at_least": 6.0, "quoted_official_ex_per_s": 670, "met": ratio >= 6.0},
        "mean_sweeps_per_phase": {
            "official": {
                "free": mean(sweeps_ref.counts["free"]),
                "phase1": mean(sweeps_ref.counts["phase1"]),
                "phase2": mean(sweeps_ref.counts["phase2"]),
                "phase2_extra_sweep_before_theta_moves": 1,
            },
            "ours": {
                "free": mean(ours.free_sweeps),
                "phase1": mean(by_beta(ours.nudged_sweeps, b1)),
                "phase2": mean(by_beta(ours.nudged_sweeps, b2)),
                "phase2_extra_sweep_before_theta_moves": 0,
            },
        },
        "ours_threads_2_vs_1": threads,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    result.update(environment(torch.device("cpu")))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
