"""Side by side with the reference code: rain-neuromorphics/energy-based-learning's DHN-1H against eqprop's.

The reference is imported from a checkout of its public repository at the commit named in
``_common.REFERENCES``, in a folder RAIN_REF outside this repository (never vendored here):

    git clone https://github.com/rain-neuromorphics/energy-based-learning $RAIN_REF && \\
        git -C $RAIN_REF checkout 6b253fd8a5d267535f58ab79992256ef10031ceb
    .venv/bin/python benchmarks/reference_rain.py --reference-dir $RAIN_REF

It builds the reference network exactly as its ``papers/fast-drn/dhn.py`` does for ``--model dhn-1h`` and
times its own ``training.epoch.Trainer.run`` over a list of mini-batches (so the per-batch work is the
Trainer's own code: ``set_input``, the inference relaxation, ``estimator.compute_gradient()``, writing
``.grad``, ``optimizer.step()``, ``param.clamp_()``). Contenders, alternating in one process: eqprop's
step; the reference Trainer with no statistics attached; and (unless ``--no-statistics``) the reference
Trainer with the training statistics its ``Monitor`` attaches (energy, cost, error, top-5 error, layer
norms and saturations, gradient norms: one host sync each per batch). Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import types
from pathlib import Path

import torch

from _common import (
    BETA,
    GAIN,
    ITERATIONS,
    LR,
    PRESET,
    REFERENCES,
    SIZES,
    batches,
    environment,
    import_exported,
    input_pool,
    load_average,
    make_library,
    reference_dir,
    reference_howto,
    reference_record,
    summary,
    synchronize,
    timed,
)

REFERENCE = "rain"  # its key in _common.REFERENCES
REFERENCE_HINT = reference_howto(REFERENCE)
NEEDED = ("model/hopfield/network.py", "training/epoch.py", "training/sgd.py", "training/monitor.py")


def import_reference(ref_dir: Path) -> tuple[types.SimpleNamespace, list[str]]:
    """Import the reference's modules from ``ref_dir``; returns them and what had to be stubbed."""
    return import_exported(
        ref_dir,
        NEEDED,
        REFERENCE_HINT,
        "benchmarks/reference_rain.py",
        {
            "FixedPointMinimizer": "model.hopfield.minimizer:FixedPointMinimizer",
            "DeepHopfieldEnergy": "model.hopfield.network:DeepHopfieldEnergy",
            "stats": "training.statistics",
        },
    )


def build_reference(ref, device: torch.device, init=None, dataset_size: int = 60000, with_stats=False):
    """The DHN-1H of its papers/fast-drn/dhn.py (model 'dhn-1h'), with its Trainer over no data yet.

    ``init``: optional eqprop ``DeepHopfield`` whose parameters are copied in (same initialisation).
    """
    energy_fn = ref.DeepHopfieldEnergy([(1, 28, 28), (SIZES[1],), (SIZES[2],)], [GAIN, GAIN])
    energy_fn.set_device(str(device))
    if init is not None:
        copy_parameters(energy_fn, init)
    cost_fn = ref.SquaredError(energy_fn.layers()[-1])
    network = ref.Network(energy_fn)
    params = energy_fn.params()
    layers = energy_fn.layers()
    free_layers = network.free_layers()
    augmented_fn = ref.AugmentedFunction(energy_fn, cost_fn)
    minimizer_training = ref.FixedPointMinimizer(augmented_fn, free_layers)
    estimator = ref.EquilibriumProp(params, layers, augmented_fn, cost_fn, minimizer_training)
    estimator.nudging = BETA
    estimator.variant = "centered"
    minimizer_training.num_iterations = ITERATIONS
    minimizer_training.mode = "asynchronous"
    optimizer = ref.Optimizer(energy_fn, cost_fn, [LR] * 4, 0.0, 0.0)  # [b1, b2, W0, W1]
    minimizer_inference = ref.FixedPointMinimizer(energy_fn, free_layers)
    minimizer_inference.num_iterations = ITERATIONS
    minimizer_inference.mode = "asynchronous"
    trainer = ref.Trainer(network, cost_fn, params, [], estimator, optimizer, minimizer_inference)
    if with_stats:  # what its Monitor._build_series attaches to the trainer (dhn.py passes energy_fn)
        s = ref.stats
        for stat in [
            s.Counter(energy_fn, dataset_size),
            s.EnergyStat(energy_fn),
            s.CostStat(cost_fn),
            s.ErrorStat(cost_fn),
            s.TopFiveErrorStat(cost_fn),
            *[s.NormStat(layer) for layer in energy_fn.layers()],
            *[s.SaturationStat(layer) for layer in energy_fn.layers()],
        ]:
            trainer.add_statistic(stat, 0)
        for param in energy_fn.params():
            trainer.add_statistic(s.GradientStat(param), 1)
    return energy_fn, trainer


def reference_tensors(system) -> list[torch.Tensor]:
    """eqprop's parameters in the reference's layout and order: [b1, b2, W0 (1,28,28,1024), W1 (1024,10)]."""
    W0, W1 = (w.detach() for w in system.weights)
    b1, b2 = (b.detach() for b in system.biases)
    return [b1, b2, W0.t().reshape(1, 28, 28, SIZES[1]), W1.t()]


def copy_parameters(energy_fn, system) -> None:
    with torch.no_grad():  # in place: its Optimizer holds these very tensors
        for p, t in zip(energy_fn.params(), reference_tensors(system), strict=True):
            p.state.copy_(t)


def agreement(ref, pool, device: torch.device, seed: int) -> dict[str, object]:
    """One training step of each from the same initialisation on the same batch: how close the updates are."""
    x, y = pool
    x, y = x[:16].to(device), y[:16].to(device)
    lib = make_library(seed, device)
    energy_fn, trainer = build_reference(ref, device, init=lib.system)
    before = reference_tensors(lib.system)
    before = [t.clone() for t in before]
    lib.step(x, y)
    trainer._dataloader = [(x.view(-1, 1, 28, 28), y)]
    trainer.run(verbose=False)
    names = ["biases.0", "biases.1", "weights.0", "weights.1"]
    out = {}
    for name, b0, ours, theirs in zip(
        names, before, reference_tensors(lib.system), [p.state for p in energy_fn.params()], strict=True
    ):
        d_ours, d_ref = ours - b0, theirs - b0
        out[name] = f"{float((d_ours - d_ref).norm() / d_ref.norm()):.2e}"
    return {
        "what": (
            "one training step from the same initial weights on the same batch of 16 (both from a zero "
            "state): ‖Δθ_ours − Δθ_ref‖ / ‖Δθ_ref‖ per parameter"
        ),
        "relative_update_difference": out,
        "why_not_zero": (
            "float32 rounding (other operation order: eqprop computes W0x + b1 once per batch and uses addmm, "
            "the reference tensordot per sweep), and the reference's nudged output update is the fixed-point "
            "step o ← b + W h − β(o − y) (autograd of the cost) where eqprop's is the exact block minimiser "
            "o ← (b + W h + βy)/(1 + β): the same equilibrium, reached along a slightly different path"
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
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=40, help="training steps (batches) per measurement")
    p.add_argument("--repeats", type=int, default=7, help="measurements per contender (alternating)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-statistics", action="store_true", help="skip the reference-with-Monitor-statistics contender"
    )
    args = p.parse_args(argv)
    ref_dir = reference_dir(p, args.reference_dir, REFERENCE_HINT)
    if args.batch_size < 1 or args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--batch-size, --steps and --repeats must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ref, stubs = import_reference(ref_dir)

    B = args.batch_size
    x, y, data_note = input_pool(max(B * args.steps, 1024), args.seed)
    data = batches(x, y, B, device)
    ref_data = [(xb.view(-1, 1, 28, 28), yb) for xb, yb in data]  # its input layer is (1, 28, 28)
    run_batches = [ref_data[i % len(ref_data)] for i in range(args.steps)]

    check = agreement(ref, (x, y), device, args.seed)

    lib = make_library(args.seed, device)
    contenders = {"ours": lambda: timed(lib.step, data, args.steps, device)}
    trainers = {"reference": build_reference(ref, device, init=lib.system)[1]}
    if not args.no_statistics:
        trainers["reference_with_statistics"] = build_reference(
            ref, device, init=lib.system, with_stats=True
        )[1]

    def ref_runner(trainer):
        def run() -> float:  # its Trainer.run over `steps` batches: the clock covers its per-batch loop
            synchronize(device)
            t0 = time.perf_counter()
            trainer.run(verbose=False)
            synchronize(device)
            return B * len(run_batches) / (time.perf_counter() - t0)

        return run

    for name, trainer in trainers.items():
        contenders[name] = ref_runner(trainer)
    # warm up: first calls, allocator, thread pool
    for i in range(args.warmup):
        lib.step(*data[i % len(data)])
    for trainer in trainers.values():
        trainer._dataloader = run_batches[: max(args.warmup, 1)]
        trainer.run(verbose=False)
        trainer._dataloader = run_batches
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):  # ours, reference, reference+stats, ours, ... in one process
        for name, fn in contenders.items():
            rates[name].append(fn())

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True)), 2)

    result: dict[str, object] = {
        "benchmark": "reference_rain",
        "config": {**PRESET, "batch_size": B},
        "reference": {
            **reference_record(REFERENCE, ref_dir),
            "dir": str(ref_dir),
            "built_as": (
                "papers/fast-drn/dhn.py --model dhn-1h: DeepHopfieldEnergy([(1,28,28),(1024,),(10,)], "
                "[0.7,0.7]), SquaredError(output layer), AugmentedFunction, FixedPointMinimizer 15 "
                "iterations 'asynchronous' for training and inference, EquilibriumProp centered nudging 0.2, "
                "its Optimizer lrs [0.05]*4 momentum 0 weight decay 0"
            ),
            "stubs": stubs,
        },
        "included": [
            "reference: its Trainer.run over a list of batches, i.e. per batch network.set_input(x, "
            "reset=False), inference relaxation (15 sweeps), cost_fn.set_target(y), "
            "estimator.compute_gradient() (two nudged phases of 15 sweeps from the free state), "
            "param.state.grad = grad, optimizer.step(), param.clamp_()",
            "reference_with_statistics: the same plus the training statistics its Monitor attaches "
            "(Counter, Energy, Cost, Error, Top5Error, Norm and Saturation per layer, Gradient per param)",
            "ours: rule.gradients(system, cost, solver, x, y, out='grad') + optimizer.step() (45 sweeps per batch "
            "too: free, then -β and +β from the free state)",
        ],
        "excluded": [
            "data loading (both read pre-made in-memory batches; its DataLoader/torchvision not used)",
            "the Monitor's per-epoch work (scheduler, evaluation, tensorboard, printing, saving)",
            "progress printing (Trainer.run(verbose=False))",
        ]
        + (["the reference_with_statistics contender (--no-statistics)"] if args.no_statistics else []),
        "data": data_note,
        "steps_per_measurement": args.steps,
        "repeats": args.repeats,
        "order": "alternating " + ", ".join(contenders) + ", ... in one process",
        "agreement": check,
        "ex_per_s": {name: summary(v) for name, v in rates.items()},
        "ours_ex_per_s": round(statistics.median(rates["ours"]), 1),
        "reference_ex_per_s": round(statistics.median(rates["reference"]), 1),
        "ratio_ours_over_reference": ratio("ours", "reference"),
        "ratio_per_repeat": [round(a / b, 2) for a, b in zip(rates["ours"], rates["reference"], strict=True)],
    }
    if "reference_with_statistics" in rates:
        result["ratio_ours_over_reference_with_statistics"] = ratio("ours", "reference_with_statistics")
    result["bar"] = {
        "ratio_ours_over_reference_at_least": 6.0,
        "quoted_reference_ex_per_s": 800,
        "met": result["ratio_ours_over_reference"] >= 6.0,
    }
    result["load_average_after"] = load_average()
    result.update(environment(device))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
