"""Side by side with the official Agnostic EqProp code (bscellier/agnostic-equilibrium-propagation), FMNIST conv_avg.

The official code is imported from a checkout of its public repository at the commit named in
``_common.REFERENCES``, in a folder AEQPROP_REF outside this repository (never vendored here):

    git clone https://github.com/bscellier/agnostic-equilibrium-propagation $AEQPROP_REF && \\
        git -C $AEQPROP_REF checkout e31e74ce8f4251217b71c3a8fe886ee6f25882b1
    .venv/bin/python benchmarks/aeqprop_conv_reference.py --reference-dir $AEQPROP_REF

The official network is built by its own ``run.py:build_network`` (only that function's source is executed, as in
``aeqprop_reference.py``) from ``hyperparameters.py`` FashionMNIST/conv_avg with run.py's CLI defaults that
override it (centered, nudging 0.5): 1×28×28 → conv5 + 2×2 avg pool → 32×12×12 → conv5 + 2×2 avg pool → 64×4×4 →
dense 10, thresholds 1e-3, ≤ 100 sweeps per phase, one parameter iteration, ε weights 0.128/0.032/0.008 and
biases 0.032/0.008/0.002, batch 16. Its step per mini-batch is timed as its ``Trainer.run`` performs it
(``set_data`` with its warm start, ``Aeqprop.inference``, ``Aeqprop.training_step``) over in-memory batches, with
no statistics attached.

Ours: ``run = build(load_preset("fmnist-aeqprop-conv"))`` (``run.optimizer``), the training loop's step
(``rule.gradients(..., out="grad")`` + ``optimizer.step()``, SGD at lr = ε·(β₂ − β₁) per tensor), with the preset's
options (centered, ±β = ±0.25: the official nudging 0.5 is the spread β₂ − β₁). The
preset's ε are the official ones rescaled for the official code's batch-scaling quirks (conv weight update ÷ C_in
instead of ÷ batch, conv bias update with a spatial mean): see the preset's header. A third contender (skip it
with ``--no-variant``) is the same preset with the official procedure's two options switched on
(``train.warm_start = true``, ``rule.phase2_start = "free"``), which the preset leaves off. All contenders start
from the same initial parameters (ours copied into theirs, in its layout) and see the same real Fashion-MNIST
training batches; they alternate in one process. Before timing, ``agreement`` compares one step of each side from
a common start (per tensor: cosine, max |Δθ| difference, least-squares scale), shows the quirks' factors (ours
with the official ε) and repeats the step with both sides in float64. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import eqprop
from _common import REFERENCES, compare, environment, load_average, reference_dir, reference_record, summary
from aeqprop_reference import (
    REFERENCE,
    REFERENCE_HINT,
    NudgedSweepCounter,
    Ours,
    SweepCounter,
    alternate,
    by_beta,
    import_reference,
    mean,
    official_network,
    rate_ours,
    rate_reference,
)
from eqprop.data import load_idx_dataset
from eqprop.train import apply_overrides, build, load_preset

PRESET = "fmnist-aeqprop-conv"
OFFICIAL_PROCEDURE = ["train.warm_start=true", 'rule.phase2_start="free"']
BATCH = 16
# The official side: run.py's --nudging and --method defaults, which override hyperparameters.py. Its nudging is
# the spread β₂ − β₁ of the two phases: ours is the preset's rule, centered at ±β = ±0.25 (the same physics).
NUDGING, MODE = 0.5, "centered"
NAMES = ["biases.0", "biases.1", "biases.2", "weights.0", "weights.1", "weights.2"]  # the official order
Batches = list[tuple[torch.Tensor, torch.Tensor]]


# -- the official code ----------------------------------------------------------------------------------------
def build_reference(ref: Any, init: Any) -> tuple[Any, Any, dict]:
    """(network, Trainer, hparams) as run.py's __main__ builds them for ``--dataset FashionMNIST --architecture
    conv_avg`` with its CLI defaults; ``init``: our ConvHopfield, whose parameters are copied in."""
    network, trainer, hp = official_network(ref, "conv_avg")
    for param, tensor in zip(network.params(), reference_layout(init), strict=True):
        if tuple(param.state.shape) != tuple(tensor.shape):
            raise SystemExit(
                f"layout mismatch: official {tuple(param.state.shape)}, ours {tuple(tensor.shape)}"
            )
        param.state = tensor.clone().contiguous()
    return network, trainer, hp


def reference_layout(system: Any) -> list[torch.Tensor]:
    """Our parameters in the official layout and order: biases (C,1,1), (C,1,1), (10,), then the conv kernels
    (same layout) and the dense weight as (64, 4, 4, 10) (ours is (10, 1024) over the flattened 64×4×4)."""
    b0, b1, b2 = (b.detach() for b in system.biases)
    w0, w1, w2 = (w.detach() for w in system.weights)
    c, h, w = system.shapes[1]
    return [b0.view(-1, 1, 1), b1.view(-1, 1, 1), b2, w0, w1, w2.t().reshape(c, h, w, w2.shape[0])]


# -- ours -------------------------------------------------------------------------------------------------------
def make_ours(seed: int, overrides: list[str] = ()) -> Ours:  # type: ignore[assignment]
    """The preset's run (with ``overrides``) and the initial weights of ``train.seed = seed``, CPU float32."""
    config = apply_overrides(
        load_preset(PRESET),
        [f"train.seed={seed}", "train.device='cpu'", "train.dtype='float32'", *overrides],
    )
    run = build(config)
    return Ours(
        run.system,
        run.cost,
        run.solver,
        run.nudged_solver,
        run.rule,
        run.optimizer,
        warm_start=config.train.warm_start,
    )


def describe_ours(overrides: list[str]) -> str:
    config = apply_overrides(load_preset(PRESET), list(overrides))
    start = "from the previous batch's final state" if config.train.warm_start else "from zero"
    phase2 = (
        "the free state (a relaxation at β = 0 with θ held, from the phase-1 state)"
        if config.rule.phase2_start == "free"
        else "the phase-1 state"
    )
    return (
        f"free phase {start} (≤100 forward sweeps); phase 1 ≤100 backward sweeps + SpringCoupled's built-in "
        f"homeostatic controller; phase 2 from {phase2}, ≤100 backward sweeps + exact parameter relaxation; "
        "−Δθ/(ε·(β₂ − β₁)) written into .grad; SGD step at lr = ε·(β₂ − β₁)"
    )


# -- measurement --------------------------------------------------------------------------------------------------
def real_batches(n: int, seed: int) -> tuple[Batches, str]:
    try:
        ds = load_idx_dataset("fashion-mnist", flatten=False)
    except (eqprop.DataError, eqprop.ConfigError) as err:
        raise SystemExit(
            f"Fashion-MNIST not found ({str(err).splitlines()[0]}): the sweep counts, and so the timings, depend "
            "on the data; install Debian's dataset-fashion-mnist or set $EQPROP_DATA_DIR"
        ) from err
    order = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(seed))[: n * BATCH]
    x, y = ds.train.x[order], ds.train.y[order]
    out = [(x[i : i + BATCH].contiguous(), y[i : i + BATCH].contiguous()) for i in range(0, n * BATCH, BATCH)]
    return (
        out,
        f"Fashion-MNIST train (1×28×28 in [0, 1]), {n} batches of {BATCH} (a fixed random draw, seed {seed})",
    )


def _update(ours: Ours, batch: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
    before = [t.clone() for t in reference_layout(ours.system)]
    ours.step(*batch)
    return [a - b for a, b in zip(reference_layout(ours.system), before, strict=True)]


def agreement(ref: Any, batch: tuple[torch.Tensor, torch.Tensor], seed: int, variant: bool) -> dict[str, Any]:
    """One training step of each side from the same parameters and a zero state, on the same batch."""
    ours = make_ours(seed)
    network, trainer, hp = build_reference(ref, ours.system)
    before = [t.clone() for t in network.params_state()]
    sweeps = SweepCounter(network)
    trainer._dataloader = [batch]
    trainer.run(verbose=False)
    d_ref = [a - b for a, b in zip(network.params_state(), before, strict=True)]
    counter = NudgedSweepCounter()
    try:
        sides: dict[str, list[torch.Tensor]] = {}
        runs: dict[str, Ours] = {"preset": ours}
        if variant:
            runs["official_procedure"] = make_ours(seed, OFFICIAL_PROCEDURE)
        # The official ε on our true batch-mean / spatial-sum gradients: shows the quirks' factors.
        eps_w, eps_b = hp["learning_rates_weights"], hp["learning_rates_biases"]
        runs["official_epsilon_unrescaled"] = make_ours(
            seed, [f"rule.epsilon={eps_w}", f"rule.epsilon_biases={eps_b}"]
        )
        our_sweeps: dict[str, dict[str, Any]] = {}
        b1, b2 = runs["preset"].rule.betas  # type: ignore[attr-defined]
        for name, run in runs.items():
            counter.sink = run.nudged_sweeps
            sides[name] = _update(run, batch)
            our_sweeps[name] = {
                "free": run.free_sweeps[0],
                "phase1": by_beta(run.nudged_sweeps, b1),
                "return_to_free": by_beta(run.nudged_sweeps, 0.0),
                "phase2": by_beta(run.nudged_sweeps, b2),
            }
    finally:
        counter.remove()

    def table(d_ours: list[torch.Tensor]) -> dict[str, Any]:
        out = {}
        for name, a, b in zip(NAMES, d_ours, d_ref, strict=True):
            c = compare(a, b)  # cosine, max |Δθ_ours − Δθ_ref|, max |Δθ_ref|
            bb = b.double().flatten()
            out[name] = {
                "cosine": round(c["cosine"], 9),
                "max_abs_diff": float(f"{c['max_abs_diff']:.3g}"),
                "max_abs_official": float(f"{c['max_abs']:.3g}"),
                "scale_ours_over_official": round(float(a.double().flatten() @ bb) / float(bb @ bb), 6),
            }
        return out

    n = batch[0].shape[0]
    hw = [s[1] * s[2] for s in hp["layer_shapes"][1:3]]
    c_in = [hp["layer_shapes"][0][0], hp["layer_shapes"][1][0]]
    expected = {  # official step / (official ε × our true-gradient step), the official code's update rule (see the module docstring)
        "biases.0": 1 / hw[0],
        "biases.1": 1 / hw[1],
        "biases.2": 1.0,
        "weights.0": n / c_in[0],
        "weights.1": n / c_in[1],
        "weights.2": 1.0,
    }
    unrescaled = table(sides.pop("official_epsilon_unrescaled"))

    # float64 twins of both sides (same start, same batch): separates float32 rounding from what the two
    # procedures do differently (the official extra sweep before θ moves, where each relaxation stops).
    x64 = (batch[0].double(), batch[1])
    ours64 = make_ours(seed)
    ours64.system.double()  # in place: the optimizer keeps the same Parameters
    net64, trainer64, _ = build_reference(ref, ours64.system)
    for param in net64.params():
        param.state = param.state.double()
    for knob in net64._control_knobs:
        knob.state = knob.state.double()
    net64.set_data(*x64)  # sets the batch size and zero layers; its Trainer.run then keeps them
    net64.layers_state = [s.double() for s in net64.layers_state]
    before64 = [t.clone() for t in net64.params_state()]
    trainer64._dataloader = [x64]
    trainer64.run(verbose=False)
    d_ref64 = [a - b for a, b in zip(net64.params_state(), before64, strict=True)]
    d_ours64 = _update(ours64, x64)

    def close(a_list: list[torch.Tensor], b_list: list[torch.Tensor]) -> dict[str, Any]:
        out = {}
        for name, a, b in zip(NAMES, a_list, b_list, strict=True):
            c = compare(a, b)
            out[name] = {"cosine": round(c["cosine"], 9), "max_abs_diff": float(f"{c['max_abs_diff']:.3g}")}
        return out

    float64 = {
        "what": (
            "the same step with both sides in float64: each float32 side against its own float64 twin "
            "(rounding), and ours against the official code both in float64 (procedure)"
        ),
        "ours_f32_vs_ours_f64": close(sides["preset"], d_ours64),
        "official_f32_vs_official_f64": close(d_ref, d_ref64),
        "ours_f64_vs_official_f64": close(d_ours64, d_ref64),
    }
    return {
        "what": (
            "one training step of each side from the same parameters and a zero layer state, on the same batch "
            "of 16: per tensor (official layout), cosine between Δθ_ours and Δθ_official, max |Δθ_ours − "
            "Δθ_official|, max |Δθ_official|, and the least-squares scale <Δθ_ours, Δθ_off>/‖Δθ_off‖²"
        ),
        "ours": {name: table(d) for name, d in sides.items()},
        "batch_scaling": {
            "what": (
                "with the official ε on our true-gradient parameter forces (batch mean, conv bias summed over "
                "space), the official step is bigger by the documented factors: 1/scale_ours_over_official "
                "below against 'expected' (N/C_in for the conv weights, 1/(H·W) for the conv biases)"
            ),
            "expected_official_over_ours": {k: round(v, 6) for k, v in expected.items()},
            "measured_official_over_ours": {
                k: round(1 / v["scale_ours_over_official"], 6) for k, v in unrescaled.items()
            },
            "preset_epsilon_over_official": {
                k: round(float(eps) / float(off), 6)
                for k, eps, off in zip(
                    NAMES,
                    [*load_preset(PRESET).rule.epsilon_biases, *load_preset(PRESET).rule.epsilon],  # type: ignore[misc]
                    [*eps_b, *eps_w],
                    strict=True,
                )
            },
            "unrescaled_table": unrescaled,
        },
        "float64": float64,
        "sweeps_in_this_step": {
            "official": {
                "free": sweeps.counts["free"],
                "phase1": sweeps.counts["phase1"],
                "phase2": sweeps.counts["phase2"],
                "phase2_extra_sweep_before_theta_moves": 1,
            },
            **our_sweeps,
        },
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--reference-dir",
        type=Path,
        default=None,
        help=f"(required) a checkout of {REFERENCES[REFERENCE].repository} at commit "
        f"{REFERENCES[REFERENCE].commit[:7]}, outside this repo",
    )
    p.add_argument("--batches", type=int, default=10, help="mini-batches of 16 per measurement")
    p.add_argument("--repeats", type=int, default=5, help="measurements per contender (alternating)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for the comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-variant",
        action="store_true",
        help="skip the third contender (the preset with train.warm_start and rule.phase2_start='free')",
    )
    args = p.parse_args(argv)
    ref_dir = reference_dir(p, args.reference_dir, REFERENCE_HINT)
    if args.batches < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--batches, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    ref = import_reference(ref_dir)

    warm = 3
    data, data_note = real_batches(args.batches + warm, args.seed)
    warm_data, data = data[:warm], data[warm:]
    check = agreement(ref, data[0], args.seed, not args.no_variant)

    load_before = load_average()
    ours = make_ours(args.seed)
    network, trainer, hp = build_reference(ref, ours.system)
    sweeps_ref = SweepCounter(network)
    variant = None if args.no_variant else make_ours(args.seed, OFFICIAL_PROCEDURE)
    for x, y in warm_data:  # warm up (first calls, allocator); also the warm-start state of both
        ours.step(x, y)
        if variant is not None:
            variant.step(x, y)
    rate_reference(trainer, warm_data)
    for run in (ours, variant):
        if run is not None:
            run.free_sweeps.clear()
            run.nudged_sweeps.clear()
    for counts in sweeps_ref.counts.values():
        counts.clear()
    counter = NudgedSweepCounter()
    contenders: dict[str, Callable[[], float]] = {
        "ours": lambda: rate_ours(ours, data, counter),
        "official": lambda: rate_reference(trainer, data),
    }
    if variant is not None:
        contenders["ours_official_procedure"] = lambda: rate_ours(variant, data, counter)
    try:
        rates = alternate(contenders, args.repeats)
    finally:
        counter.remove()
    b1, b2 = ours.rule.betas  # type: ignore[attr-defined]

    def ratio(a: str, b: str) -> tuple[float, list[float]]:
        per = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
        return round(statistics.median(per), 2), [round(r, 2) for r in per]

    def our_sweeps(run: Ours) -> dict[str, Any]:
        return {
            "free": mean(run.free_sweeps),
            "phase1": mean(by_beta(run.nudged_sweeps, b1)),
            "return_to_free": mean(by_beta(run.nudged_sweeps, 0.0)),
            "phase2": mean(by_beta(run.nudged_sweeps, b2)),
            "phase2_extra_sweep_before_theta_moves": 0,
        }

    r_main, r_per = ratio("ours", "official")
    ratios: dict[str, Any] = {"ours_over_official": r_main, "ours_over_official_per_repeat": r_per}
    if variant is not None:
        ratios["ours_official_procedure_over_official"], ratios["ours_official_procedure_per_repeat"] = ratio(
            "ours_official_procedure", "official"
        )
    sweeps = {
        "official": {
            "free": mean(sweeps_ref.counts["free"]),
            "phase1": mean(sweeps_ref.counts["phase1"]),
            "phase2": mean(sweeps_ref.counts["phase2"]),
            "phase2_extra_sweep_before_theta_moves": 1,
        },
        "ours": our_sweeps(ours),
    }
    if variant is not None:
        sweeps["ours_official_procedure"] = our_sweeps(variant)

    result: dict[str, Any] = {
        "benchmark": "aeqprop_conv_reference",
        "preset": PRESET,
        "config": {
            "network": "1x28x28 -conv5+avgpool2-> 32x12x12 -conv5+avgpool2-> 64x4x4 -dense-> 10; hidden [0, 1], "
            "output [-1, 2]",
            "variant": ours.rule.variant,  # type: ignore[attr-defined]
            "beta": ours.rule.beta,  # type: ignore[attr-defined]
            "betas": [b1, b2],
            "official_nudging": NUDGING,
            "epsilon_official": {
                "weights": hp["learning_rates_weights"],
                "biases": hp["learning_rates_biases"],
            },
            "epsilon_ours": {
                "weights": load_preset(PRESET).rule.epsilon,
                "biases": load_preset(PRESET).rule.epsilon_biases,
            },
            "threshold": "per-layer L1 change summed over the batch < 1e-3, at most 100 sweeps per phase",
            "parameter_iterations": 1,
            "batch_size": BATCH,
            "dtype": "float32",
        },
        "reference": {
            **reference_record(REFERENCE, ref_dir),
            "dir": str(ref_dir),
            "built_as": (
                "run.py build_network(**hyperparameters.load_hyperparameters('FashionMNIST', 'conv_avg')), "
                "set_device('cpu'), thresholds [1e-3]*3, Aeqprop(training_mode='centered', nudging=0.5 (run.py "
                "defaults), max_iterations 100/100, max_iterations_params 1), Trainer(network, batches, "
                "differentiator), use_soft_targets False; initial parameters copied from ours"
            ),
            "hyperparameters_nudging_overridden": hp.get("nudging_in_hyperparameters"),
            "stubs": [],
        },
        "included": [
            "official: its Trainer.run over a list of batches: per batch network.set_data(x, y) (warm start from "
            "the previous batch's state), Aeqprop.inference() (≤100 forward sweeps), Aeqprop.training_step() "
            "(phase 1 ≤100 backward sweeps + knob adjustment, phase 2 from the saved free state ≤100 sweeps, one "
            "more sweep + parameter relaxation, the per-layer/per-parameter change .item() it returns)",
            "ours: rule.gradients(system, cost, solver, x, y, nudged_solver, init, out='grad') + "
            "optimizer.step(): " + describe_ours([]),
            "ours_official_procedure (unless --no-variant): the same with "
            + ", ".join(OFFICIAL_PROCEDURE)
            + ": "
            + describe_ours(OFFICIAL_PROCEDURE),
            "sweep counting: a thin wrapper on each side (its homeostatic_relaxation, our "
            "eqprop.rules.physical.relax)",
        ],
        "excluded": [
            "data loading: all read the same pre-made in-memory batches (its torchvision DataLoader and "
            "RandomHorizontalFlip are not used)",
            "its per-batch statistics and everything its Monitor does per epoch",
            "our training loop's bookkeeping (loss/accuracy accumulation, logging, checkpoints)",
        ],
        "data": data_note,
        "batches_per_measurement": args.batches,
        "repeats": args.repeats,
        "warmup_batches": warm,
        "threads": args.threads,
        "order": "alternating " + ", ".join(contenders) + ", ... in one process",
        "agreement": check,
        "ex_per_s": {name: summary(v) for name, v in rates.items()},
        **ratios,
        "mean_sweeps_per_phase": sweeps,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    result.update(environment(torch.device("cpu")))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
