"""Side by side with the reference code: rain-neuromorphics/energy-based-learning's DRN-1H against eqprop's.

The reference is imported from a checkout of its public repository at the commit named in
``_common.REFERENCES``, in a folder RAIN_REF outside this repository (never vendored here):

    git clone https://github.com/rain-neuromorphics/energy-based-learning $RAIN_REF && \\
        git -C $RAIN_REF checkout 6b253fd8a5d267535f58ab79992256ef10031ceb
    .venv/bin/python benchmarks/reference_drn.py --reference-dir $RAIN_REF --threads 1

It builds the reference network exactly as its ``papers/fast-drn/drn.py`` does for ``--model drn-1h
--algorithm EP`` (``DeepResistiveEnergy([(2,28,28),(1024,),(10,)], [1,1], 480)``, ``SquaredError`` on the
output, ``QuadraticMinimizer`` with 4 ``'asynchronous'`` iterations for training and inference, centered
``EquilibriumProp`` with nudging 1, its ``Optimizer`` at 0.006 for every tensor, batch 4) and times its own
``training.epoch.Trainer.run`` over a list of mini-batches against eqprop's step with the ``drn-1h`` preset
(``rule.gradients(..., out="grad")`` + ``optimizer.step()`` + ``system.constrain_parameters()``, as the training loop
does), alternating in one process. Both use the same input gain (default: the reference's 480; ours gets it
through ``system.input_gain``, as the preset's comment says for MNIST-scale inputs). Before timing, one step
of each from the same parameters on the same batch is compared (gradients and updated parameters). Then ours
alone at larger batches (``--scaling``). Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from _common import (
    REFERENCES,
    batches,
    compare,
    environment,
    import_exported,
    input_pool,
    load_average,
    median_ratio,
    reference_dir,
    reference_howto,
    reference_record,
    summary,
    synchronize,
    timed,
)
from eqprop.train import apply_overrides, build, config_to_dict, load_preset

REFERENCE = "rain"  # its key in _common.REFERENCES
REFERENCE_HINT = reference_howto(REFERENCE)
NEEDED = (
    "papers/fast-drn/drn.py",
    "model/resistive/network.py",
    "model/resistive/minimizer.py",
    "training/epoch.py",
    "training/sgd.py",
    "training/monitor.py",
)

PRESET = "drn-1h"
# papers/fast-drn/drn.py, model 'drn-1h', algorithm 'EP' (MNIST, batch 4).
REF_LAYER_SHAPES = [(2, 28, 28), (1024,), (10,)]
REF_WEIGHT_GAINS = [1.0, 1.0]
REF_INPUT_GAIN = 480.0
REF_ITERATIONS = 4
REF_NUDGING = 1.0
REF_LR = 0.006  # learning_rates_biases + learning_rates_weights = [0.006] * 4
REF_BATCH = 4
NAMES = ("biases.0", "biases.1", "conductances.0", "conductances.1")  # the reference's order: b1, b2, W0, W1


def import_reference(ref_dir: Path) -> tuple[types.SimpleNamespace, list[str]]:
    """Import the reference's modules from ``ref_dir``; returns them and what had to be stubbed."""
    return import_exported(
        ref_dir,
        NEEDED,
        REFERENCE_HINT,
        "benchmarks/reference_drn.py",
        {
            "QuadraticMinimizer": "model.resistive.minimizer:QuadraticMinimizer",
            "DeepResistiveEnergy": "model.resistive.network:DeepResistiveEnergy",
        },
    )


def build_reference(ref: Any, device: torch.device, input_gain: float, init: Any = None) -> tuple[Any, Any]:
    """``(energy_fn, trainer)``: the DRN-1H of its papers/fast-drn/drn.py (EP), its Trainer over no data yet.

    ``init``: optional eqprop ``DeepResistive`` whose parameters are copied in (same starting point).
    """
    energy_fn = ref.DeepResistiveEnergy(REF_LAYER_SHAPES, REF_WEIGHT_GAINS, input_gain)
    energy_fn.set_device(str(device))
    if init is not None:
        copy_parameters(energy_fn, init)
    cost_fn = ref.SquaredError(energy_fn.layers()[-1])
    network = ref.Network(energy_fn)
    params = energy_fn.params()
    layers = energy_fn.layers()
    free_layers = network.free_layers()
    augmented_fn = ref.AugmentedFunction(energy_fn, cost_fn)
    minimizer_training = ref.QuadraticMinimizer(augmented_fn, free_layers)
    estimator = ref.EquilibriumProp(params, layers, augmented_fn, cost_fn, minimizer_training)
    estimator.nudging = REF_NUDGING
    estimator.variant = "centered"
    minimizer_training.num_iterations = REF_ITERATIONS
    minimizer_training.mode = "asynchronous"
    optimizer = ref.Optimizer(energy_fn, cost_fn, [REF_LR] * 4, 0.0, 0.0)
    minimizer_inference = ref.QuadraticMinimizer(energy_fn, free_layers)
    minimizer_inference.num_iterations = REF_ITERATIONS
    minimizer_inference.mode = "asynchronous"
    trainer = ref.Trainer(network, cost_fn, params, [], estimator, optimizer, minimizer_inference)
    return energy_fn, trainer


def to_reference_layout(name: str, t: torch.Tensor) -> torch.Tensor:
    """An eqprop tensor in the reference's layout: conductances are stored (out, in) here and (in, out) there,
    the input side of ``g₀`` being ``(2, 28, 28)`` (the +x sources, then the −x ones, as in both codes)."""
    if name == "conductances.0":
        return t.t().reshape(*REF_LAYER_SHAPES[0], REF_LAYER_SHAPES[1][0])
    if name == "conductances.1":
        return t.t()
    return t


def reference_tensors(system: Any) -> list[torch.Tensor]:
    params = dict(system.named_parameters())
    return [to_reference_layout(n, params[n].detach()) for n in NAMES]


def copy_parameters(energy_fn: Any, system: Any) -> None:
    with torch.no_grad():  # in place: its Optimizer holds these very tensors
        for p, t in zip(energy_fn.params(), reference_tensors(system), strict=True):
            p.state.copy_(t)


@dataclass
class Ours:
    """eqprop's training step for the drn-1h preset, as the training loop runs it."""

    system: Any
    cost: Any
    solver: Any
    nudged: Any
    rule: Any
    optimizer: torch.optim.Optimizer

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.rule.gradients(self.system, self.cost, self.solver, x, y, nudged_solver=self.nudged, out="grad")
        self.optimizer.step()
        self.system.constrain_parameters()


def preset_config(input_gain: float) -> Any:
    return apply_overrides(load_preset(PRESET), [f"system.input_gain={input_gain!r}"])


def make_ours(seed: int, device: torch.device, input_gain: float) -> Ours:
    """The preset's run with the initial weights of ``train.seed = seed``, in float32 on ``device``."""
    config = apply_overrides(
        preset_config(input_gain),
        [f"train.seed={seed}", f"train.device={str(device)!r}", "train.dtype='float32'"],
    )
    run = build(config)
    return Ours(run.system, run.cost, run.solver, run.nudged_solver, run.rule, run.optimizer)


def agreement(
    ref: Any, pool: tuple[torch.Tensor, torch.Tensor], device: torch.device, seed: int, gain: float
) -> dict[str, object]:
    """One training step of each from the same parameters on the same batch, both from a zero state; and
    both gradients against ours in float64 (to tell which side the float32 differences come from)."""
    x, y = (t[:REF_BATCH].to(device) for t in pool)
    ours = make_ours(seed, device, gain)
    exact = make_ours(seed, device, gain)  # the same initialisation, in float64
    exact.system.double()
    grads64 = exact.rule.gradients(
        exact.system, exact.cost, exact.solver, x.double(), y, nudged_solver=exact.nudged
    )
    energy_fn, trainer = build_reference(ref, device, gain, init=ours.system)
    ours.step(x, y)
    trainer._dataloader = [(x.view(-1, 1, 28, 28), y)]
    trainer.run(verbose=False)
    params = dict(ours.system.named_parameters())
    grads, updated, vs64 = {}, {}, {}
    for name, theirs in zip(NAMES, energy_fn.params(), strict=True):
        p = params[name]
        grads[name] = compare(to_reference_layout(name, p.grad), theirs.state.grad)
        updated[name] = compare(to_reference_layout(name, p.detach()), theirs.state)
        g64 = to_reference_layout(name, grads64.grads[f"system.{name}"])
        vs64[name] = {
            "ours_float32": compare(to_reference_layout(name, p.grad), g64),
            "reference_float32": compare(theirs.state.grad, g64),
        }
    return {
        "what": (
            f"one training step of each from the same parameters (ours copied into theirs) on the same batch of "
            f"{REF_BATCH}, both from a zero state: the gradients (ours: .grad after rule.gradients(..., out='grad'); "
            "theirs: param.state.grad set by its Trainer, a batch mean like ours) and the parameters after the "
            "SGD step and the clip at 0, in its layout (conductances transposed to (in, out), g0's input side "
            "reshaped to (2, 28, 28)); compare() gives the cosine, max |ours - theirs| and max |theirs|"
        ),
        "gradients": grads,
        "updated_parameters": updated,
        "min_gradient_cosine": min(v["cosine"] for v in grads.values()),
        "against_float64": {
            "what": "each side's float32 gradient against ours computed in float64 from the same start",
            **vs64,
        },
        "why_not_identical": (
            "float32 rounding. The reference forms ½⟨(V_i − V_j)²⟩ per phase as a (batch, in, out) tensor and "
            "subtracts the two phases: with inputs of up to ±gain (480 V) the squares are ~1e5 and the "
            "difference loses about 1e-2 absolute in float32 (see against_float64). eqprop expands the square, "
            "so the clamped inputs' V_i² cancel exactly and only ½Δ⟨V_j²⟩ − Δ⟨V_j⟩·V_i remain. Also another "
            "operation order: eqprop computes the input drive g0·V_in + b1 once per batch; the reference "
            "recomputes tensordot(V_in, g0) and the total conductances every sweep. Same circuit, same exact "
            "node-voltage updates, same nudged output (Σg·V + b + βy)/(Σg + β)"
        ),
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
    p.add_argument("--steps", type=int, default=40, help="training steps (batches of 4) per measurement")
    p.add_argument("--repeats", type=int, default=7, help="measurements per contender (alternating)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-gain", type=float, default=REF_INPUT_GAIN, help="both sides (drn.py: 480)")
    p.add_argument(
        "--scaling",
        type=int,
        nargs="*",
        default=[4, 16, 64, 256],
        help="batch sizes for ours alone (empty: skip)",
    )
    p.add_argument(
        "--scaling-examples", type=int, default=1024, help="examples per scaling measurement (>= 5 steps)"
    )
    args = p.parse_args(argv)
    ref_dir = reference_dir(p, args.reference_dir, REFERENCE_HINT)
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0 or any(b < 1 for b in args.scaling):
        p.error("--steps, --repeats and --scaling batch sizes must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = load_average()
    ref, stubs = import_reference(ref_dir)

    B = REF_BATCH
    steps_for = {b: max(5, -(-args.scaling_examples // b)) for b in args.scaling}
    pool_size = max(B * args.steps, 8 * max([B, *args.scaling]), 1024)  # timed() cycles through the batches
    x, y, data_note = input_pool(pool_size, args.seed)
    data = batches(x, y, B, device)
    ref_data = [(xb.view(-1, 1, 28, 28), yb) for xb, yb in data]  # its input layer is (1, 28, 28) per sign
    run_batches = [ref_data[i % len(ref_data)] for i in range(args.steps)]

    check = agreement(ref, (x, y), device, args.seed, args.input_gain)

    ours = make_ours(args.seed, device, args.input_gain)
    trainer = build_reference(ref, device, args.input_gain, init=ours.system)[1]

    def run_reference() -> float:  # its Trainer.run over `steps` batches: the clock covers its per-batch loop
        synchronize(device)
        t0 = time.perf_counter()
        trainer.run(verbose=False)
        synchronize(device)
        return B * len(run_batches) / (time.perf_counter() - t0)

    contenders = {"ours": lambda: timed(ours.step, data, args.steps, device), "reference": run_reference}
    for i in range(args.warmup):  # first calls, allocator, thread pool
        ours.step(*data[i % len(data)])
    trainer._dataloader = run_batches[: max(args.warmup, 1)]
    trainer.run(verbose=False)
    trainer._dataloader = run_batches
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):  # ours, reference, ours, reference, ... in one process
        for name, fn in contenders.items():
            rates[name].append(fn())
    load_mid = load_average()

    scaling: dict[str, object] = {}
    if args.scaling:  # ours alone, batch sizes alternating round-robin (the reference at 256 needs GBs)
        contestants = {}
        for b in args.scaling:
            sub = ours if b == B else make_ours(args.seed, device, args.input_gain)
            bdata = batches(x, y, b, device)
            for i in range(args.warmup):
                sub.step(*bdata[i % len(bdata)])
            contestants[b] = (sub, bdata)
        srates: dict[int, list[float]] = {b: [] for b in args.scaling}
        for _ in range(args.repeats):
            for b, (sub, bdata) in contestants.items():
                srates[b].append(timed(sub.step, bdata, steps_for[b], device))
        base = args.scaling[0]
        scaling = {
            "what": (
                "ours alone (same preset and gain), examples/s per batch size; each measurement "
                f"~{args.scaling_examples} examples (at least 5 steps); batch sizes measured round-robin"
            ),
            "ex_per_s": {str(b): summary(srates[b]) for b in args.scaling},
            f"speedup_over_batch_{base}": {
                str(b): round(median_ratio(srates[b], srates[base]), 2) for b in args.scaling
            },
            "steps_per_measurement": {str(b): steps_for[b] for b in args.scaling},
        }

    ratio = round(median_ratio(rates["ours"], rates["reference"]), 2)
    cfg = config_to_dict(preset_config(args.input_gain))
    result: dict[str, object] = {
        "benchmark": "reference_drn",
        "config": {
            "preset": PRESET,
            "system": {k: cfg["system"][k] for k in ("kind", "sizes", "input_gain", "gains")},
            "solver": {k: cfg["solver"][k] for k in ("kind", "iterations", "order", "tol")},
            "rule": {k: cfg["rule"][k] for k in ("kind", "beta", "variant")},
            "optimizer": {
                k: cfg["optimizer"][k] for k in ("kind", "lr", "lr_biases", "momentum", "weight_decay")
            },
            "cost": cfg["cost"],
            "batch_size": B,
            "step": "rule.gradients(system, cost, solver, x, y, nudged_solver=..., out='grad') + "
            "optimizer.step() + system.constrain_parameters()",
        },
        "reference": {
            **reference_record(REFERENCE, ref_dir),
            "dir": str(ref_dir),
            "built_as": (
                "papers/fast-drn/drn.py --model drn-1h --algorithm EP: DeepResistiveEnergy([(2,28,28),(1024,),"
                f"(10,)], [1.0,1.0], {args.input_gain:g}), SquaredError(output layer), AugmentedFunction, "
                f"QuadraticMinimizer {REF_ITERATIONS} iterations 'asynchronous' for training and inference, "
                f"EquilibriumProp centered nudging {REF_NUDGING:g}, its Optimizer lrs [{REF_LR}]*4 momentum 0 "
                "weight decay 0, batch 4"
                + ("" if args.input_gain == REF_INPUT_GAIN else f" (input gain {args.input_gain:g}, not 480)")
            ),
            "stubs": stubs,
        },
        "included": [
            "reference: its Trainer.run over a list of batches, i.e. per batch network.set_input(x, reset=False), "
            "the inference relaxation (4 sweeps), cost_fn.set_target(y), estimator.compute_gradient() (two "
            "nudged phases of 4 sweeps from the free state, the gradients at both), param.state.grad = grad, "
            "optimizer.step(), param.clamp_()",
            "ours: rule.gradients(..., out='grad') (free phase of 4 sweeps, then -β and +β phases of 4 sweeps from the "
            "free state, the contrast written into .grad) + optimizer.step() (torch SGD, one group per tensor) "
            "+ system.constrain_parameters() (conductances clipped at 0)",
        ],
        "excluded": [
            "data loading (both read pre-made in-memory batches; its DataLoader/torchvision not used)",
            "the Monitor's per-epoch work and statistics (none attached), progress printing",
        ],
        "difference_in_procedure": (
            "the reference starts each batch's free phase from the previous batch's final state "
            "(set_input(reset=False)), ours from zero: the same work per batch, but after the first batch the "
            "two trainings follow slightly different trajectories (4 sweeps do not fully converge)"
        ),
        "data": data_note,
        "steps_per_measurement": args.steps,
        "repeats": args.repeats,
        "order": "alternating ours, reference, ... in one process",
        "agreement": check,
        "ex_per_s": {name: summary(v) for name, v in rates.items()},
        "ours_ex_per_s": round(statistics.median(rates["ours"]), 1),
        "reference_ex_per_s": round(statistics.median(rates["reference"]), 1),
        "ratio_ours_over_reference": ratio,
        "ratio_per_repeat": [round(a / b, 2) for a, b in zip(rates["ours"], rates["reference"], strict=True)],
        "bar": {
            "ratio_ours_over_reference_at_least": 10.0 if device.type == "cuda" else 6.0,
            "quoted_reference_ex_per_s": 480 if device.type == "cuda" else 120,
            "met": ratio >= (10.0 if device.type == "cuda" else 6.0),
        },
        "batch_scaling_ours": scaling,
        "load_average": {"before": load_before, "after_side_by_side": load_mid, "end": load_average()},
    }
    result.update(environment(device))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
