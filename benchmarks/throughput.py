"""Training throughput of the fmnist-dhn1h preset: the library's step against a hand-written loop of the same math.

Prints one JSON object on stdout. Both contenders run in this process, alternating (library, hand loop,
library, hand loop, ...), each measurement being ``--steps`` training steps; the figures are examples per
second, with the median over ``--repeats`` and the ratio library / hand loop (the median of the per-repeat
ratios, each pair measured back to back).

    .venv/bin/python benchmarks/throughput.py
    .venv/bin/python benchmarks/throughput.py --batch-sizes 16 64 256 --steps 40 --repeats 11 --threads 2
    .venv/bin/python benchmarks/throughput.py --device cuda
    .venv/bin/python benchmarks/throughput.py --batch-sizes 16 --profile 30   # cProfile of the library on stderr
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys

import torch
from torch import Tensor

from _common import (
    BETA,
    ITERATIONS,
    LR,
    PRESET,
    SIZES,
    batches,
    environment,
    input_pool,
    load_average,
    make_library,
    summary,
    timed,
)


class HandLoop:
    """The same training step written out by hand: the "bar" a library step is compared with.

    Parameters are plain tensors laid out like the library's (``W0 (1024, 784)``, ``W1 (10, 1024)``).
    """

    def __init__(self, W0: Tensor, b1: Tensor, W1: Tensor, b2: Tensor) -> None:
        self.W0, self.b1, self.W1, self.b2 = (t.detach().clone() for t in (W0, b1, W1, b2))

    def relax(self, drive: Tensor, h: Tensor, o: Tensor, c: Tensor, a: float) -> tuple[Tensor, Tensor]:
        W1 = self.W1
        for _ in range(ITERATIONS):  # odd-even: the hidden layer, then the output layer
            h = torch.addmm(drive, o, W1).clamp_(0.0, 1.0)
            o = torch.addmm(c, h, W1.t(), alpha=a)
        return h, o

    def step(self, x: Tensor, y: Tensor) -> None:
        W0, b1, W1, b2 = self.W0, self.b1, self.W1, self.b2
        B = x.shape[0]
        y1h = torch.nn.functional.one_hot(y, SIZES[-1]).to(x.dtype)
        drive = torch.addmm(b1, x, W0.t())  # the input drive W0x + b1, once per batch
        zeros_h = x.new_zeros(B, SIZES[1])
        zeros_o = x.new_zeros(B, SIZES[2])
        h0, o0 = self.relax(drive, zeros_h, zeros_o, b2, 1.0)  # free phase
        # Nudged phases from the free state: the output's exact minimiser is (h + b2 + βy) / (1 + β).
        hm, om = self.relax(drive, h0, o0, (b2 - BETA * y1h) / (1.0 - BETA), 1.0 / (1.0 - BETA))
        hp, op = self.relax(drive, h0, o0, (b2 + BETA * y1h) / (1.0 + BETA), 1.0 / (1.0 + BETA))
        # Centered EqProp: ∇ = [∂E/∂θ(s⁺) − ∂E/∂θ(s⁻)] / 2β, with ∂E/∂W = −⟨s_above s_belowᵀ⟩.
        c = 1.0 / (2.0 * BETA * B)
        dh = (hm - hp).mul_(c)
        gW0 = dh.t() @ x
        gb1 = dh.sum(0)
        gW1 = (om.t() @ hm - op.t() @ hp).mul_(c)
        gb2 = (om - op).sum(0).mul_(c)
        W0.sub_(gW0, alpha=LR)  # SGD, in place
        b1.sub_(gb1, alpha=LR)
        W1.sub_(gW1, alpha=LR)
        b2.sub_(gb2, alpha=LR)


def hand_from_library(lib) -> HandLoop:
    s = lib.system
    return HandLoop(s.weights[0], s.biases[0], s.weights[1], s.biases[1])


def equivalence(data, device: torch.device, steps: int, seed: int) -> dict[str, object]:
    """Train both from the same initialisation on the same batches; the largest weight difference."""
    lib = make_library(seed, device)
    hand = hand_from_library(lib)
    init = [p.detach().clone() for p in lib.system.parameters()]
    for i in range(steps):
        x, y = data[i % len(data)]
        lib.step(x, y)
        hand.step(x, y)
    names = ["weights.0", "biases.0", "weights.1", "biases.1"]
    ours = dict(lib.system.named_parameters())
    theirs = dict(zip(names, (hand.W0, hand.b1, hand.W1, hand.b2), strict=True))
    diffs = {n: float((ours[n].detach() - theirs[n]).abs().max()) for n in names}
    moved = {n: float((ours[n].detach() - p0).abs().max()) for n, p0 in zip(names, init, strict=True)}
    return {
        "steps": steps,
        "batch_size": data[0][0].shape[0],
        "dtype": str(data[0][0].dtype),
        "max_abs_diff": max(diffs.values()),
        "max_abs_diff_per_parameter": {n: f"{d:.2e}" for n, d in diffs.items()},
        "max_abs_weight_change_per_parameter": {n: f"{d:.2e}" for n, d in moved.items()},
    }


def measure(batch_size: int, pool, args, device: torch.device) -> dict[str, object]:
    x, y = pool
    data = batches(x, y, batch_size, device)
    lib = make_library(args.seed, device)
    hand = hand_from_library(lib)
    for i in range(args.warmup):  # allocator, thread pool, first-call costs
        lib.step(*data[i % len(data)])
        hand.step(*data[i % len(data)])
    lib_rates: list[float] = []
    hand_rates: list[float] = []
    for _ in range(args.repeats):  # A B A B ...: both see the same machine conditions
        lib_rates.append(timed(lib.step, data, args.steps, device))
        hand_rates.append(timed(hand.step, data, args.steps, device))
    ratios = [a / b for a, b in zip(lib_rates, hand_rates, strict=True)]
    return {
        "batch_size": batch_size,
        "library_ex_per_s": summary(lib_rates),
        "hand_loop_ex_per_s": summary(hand_rates),
        "ratio_library_over_hand": round(statistics.median(ratios), 3),
        "ratio_per_repeat": [round(r, 3) for r in ratios],
    }


def profile_library(batch_size: int, pool, args, device: torch.device) -> None:
    """cProfile of ``--profile`` library steps, the top entries by own time, on stderr."""
    data = batches(*pool, batch_size, device)
    lib = make_library(args.seed, device)
    for i in range(args.warmup):
        lib.step(*data[i % len(data)])
    prof = cProfile.Profile()
    prof.enable()
    for i in range(args.profile):
        lib.step(*data[i % len(data)])
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    out.write(f"cProfile of {args.profile} library steps at batch {batch_size}, by own time:\n")
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)
    print(out.getvalue(), file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--steps", type=int, default=40, help="training steps per measurement")
    p.add_argument("--repeats", type=int, default=11, help="measurements per contender (alternating)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per contender first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-steps", type=int, default=5, help="steps of the library-vs-hand weight check")
    p.add_argument(
        "--profile", type=int, default=0, metavar="N", help="also cProfile N library steps (stderr)"
    )
    args = p.parse_args(argv)
    if min(args.batch_sizes) < 1 or args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("batch sizes, --steps and --repeats must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    n = max(max(args.batch_sizes) * min(args.steps, 64), 1024)
    x, y, data_note = input_pool(n, args.seed)
    load_before = load_average()
    check = equivalence(batches(x, y, 16, device), device, args.check_steps, args.seed)
    results = [measure(b, (x, y), args, device) for b in args.batch_sizes]
    out = {
        "benchmark": "throughput",
        "config": PRESET,
        "contenders": {
            "library": "eqprop: " + PRESET["step"],
            "hand_loop": (
                "plain torch: W0x+b1 once per batch, 15 sweeps of h=addmm(drive,o,W1).clamp_(0,1), "
                "o=addmm(b2,h,W1.T) free, then the two nudged phases (±β) from the free state, Hebbian "
                "contrast, in-place SGD"
            ),
        },
        "data": data_note,
        "steps_per_measurement": args.steps,
        "repeats": args.repeats,
        "warmup_steps": args.warmup,
        "order": "alternating library, hand loop, library, hand loop, ... in one process",
        "equivalence": check,
        "results": results,
        "load_average_before_after": [load_before, load_average()],
        **environment(device),
    }
    if args.profile:
        profile_library(args.batch_sizes[0], (x, y), args, device)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
