"""DCHN speed (issue 3): eqprop's cifar10-dchn training step under precision, layout and compile variants, the
accuracy of each variant's gradient estimate, and the rain reference's own Trainer side by side.

    .venv/bin/python benchmarks/dchn_speed.py --device cuda --reference-dir $RAIN_REF --out dchn.json
    .venv/bin/python benchmarks/dchn_speed.py --device cpu --small --reference-dir $RAIN_REF   # smoke run

The reference is imported from a checkout of rain-neuromorphics/energy-based-learning at the commit named in
``_common.REFERENCES``, in a folder RAIN_REF outside this repository (never vendored):

    git clone https://github.com/rain-neuromorphics/energy-based-learning $RAIN_REF && \\
        git -C $RAIN_REF checkout 6b253fd8a5d267535f58ab79992256ef10031ceb

What is timed, alternating in one process over the same pre-made batches of random CIFAR-shaped input
(3×32×32, normalised as the preset does, 10 classes):

- ours, per variant: ``rule.gradients(system, cost, solver, x, y, nudged_solver=..., out="grad")`` +
  ``optimizer.step()`` for the ``cifar10-dchn`` preset (free phase 60 odd-even sweeps, two nudged phases of 20,
  centered EqProp β 0.1, SGD momentum 0.9, weight decay 2.5e-4), each variant on its own copy of the same
  initial network. A variant (``--variants``, comma-separated) is ``PRECISION[+cl][+compile]``. PRECISION is
  one of ``fp32`` (TF32 off), ``tf32`` (``torch.backends.cuda.matmul.allow_tf32`` and
  ``torch.backends.cudnn.allow_tf32`` on) and ``bf16`` (``torch.autocast(device, bfloat16)`` around the whole
  estimate, TF32 on for what autocast leaves in float32), or ``FREE/REST`` (``bf16/tf32``, ``bf16/fp32``,
  ``tf32/fp32``): the free phase in FREE, its final state cast back to float32, then the nudged phases and the
  contrast in REST (done by patching ``relax`` as ``eqprop.solvers.phases`` sees it, for that variant's calls
  only). ``cl``: channels_last weights and input. ``compile``: ``torch.compile`` of the system's per-layer
  field ``ConvHopfield._coupling`` (the convolutions, pooling and un-pooling of every sweep).
- the reference (with ``--reference-dir``): its ``training.epoch.Trainer.run`` over the same batches, built as
  ``papers/ebl-algorithms/sota-dchn.py --dataset CIFAR10`` builds it (``ConvHopfieldEnergy32``, gains
  [0.4, 0.7, 0.6, 0.3, 0.4], ``FixedPointMinimizer`` 60 'asynchronous' iterations at inference and 20 in the
  nudged phases, centered ``EquilibriumProp`` nudging 0.1, its ``Optimizer`` at 0.03 with momentum 0.9 and
  weight decay 2.5e-4), under torch's default TF32 flags (its own settings: it sets none), from our initial
  weights.

Gradient accuracy: from the same initial weights and the same batch (zero initial state), each variant's
EqProp estimate is compared with the float32 estimate with TF32 off and with a float64 estimate (cosine and
relative error ``‖g − g_ref‖/‖g_ref‖``, over all parameters and per tensor); with ``--reference-dir`` the
reference's own estimate is compared too. Prints one JSON object on stdout (``--out`` also writes it to a
file); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import math
import statistics
import sys
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import eqprop.solvers.phases as phases_module
from _common import (
    REFERENCES,
    environment,
    import_exported,
    load_average,
    reference_dir,
    reference_howto,
    reference_record,
    synchronize,
)
from eqprop.train import Run, apply_overrides, build, load_preset
from eqprop.train.optim import make_optimizer

PRESET = "cifar10-dchn"
EPOCH = 50_000  # CIFAR-10 training examples
REFERENCE = "rain"  # its key in _common.REFERENCES
REFERENCE_HINT = reference_howto(REFERENCE)
NEEDED = (
    "papers/ebl-algorithms/sota-dchn.py",
    "model/hopfield/network.py",
    "model/hopfield/minimizer.py",
    "training/epoch.py",
    "training/sgd.py",
    "training/monitor.py",
)
PRECISIONS = ("fp32", "tf32", "bf16")
MODIFIERS = ("cl", "compile")
DEFAULT_VARIANTS_CUDA = (
    "fp32,tf32,tf32+cl,tf32+compile,bf16,bf16+cl,bf16/tf32,bf16/tf32+cl,bf16/fp32,tf32/fp32"
)
DEFAULT_VARIANTS_CPU = "fp32,bf16,bf16/fp32,fp32+cl"
SMALL_CHANNELS = (8, 16, 16, 16)
# The preset's normalisation (mean, 3 x std per channel): random pixels in [0, 1] mapped the same way.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.6069, 0.5982, 0.6030)


def log(msg: str) -> None:
    print(f"[dchn_speed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sig(v: float, n: int = 6) -> float:
    """``v`` rounded to ``n`` significant digits (for the JSON)."""
    if not math.isfinite(v) or v == 0:
        return v
    return round(v, n - 1 - math.floor(math.log10(abs(v))))


# -- global flags ----------------------------------------------------------------------------------------------
def tf32_flags() -> dict[str, bool]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "cudnn.benchmark": bool(torch.backends.cudnn.benchmark),
        }


def set_flags(matmul_tf32: bool, cudnn_tf32: bool, benchmark: bool) -> None:
    """The legacy TF32 switches (the only API used here: torch refuses a mix of the legacy and the new one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.backends.cudnn.benchmark = benchmark


# -- data -------------------------------------------------------------------------------------------------------
Batch = tuple[torch.Tensor, torch.Tensor]


def make_batches(n_batches: int, batch_size: int, seed: int, device: torch.device) -> list[Batch]:
    """Random CIFAR-shaped batches: pixels U(0, 1) normalised with the preset's mean and 3x std, labels U{0..9}.
    Every phase runs a fixed number of sweeps, so the data does not change the timing."""
    gen = torch.Generator().manual_seed(seed)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    out = []
    for _ in range(n_batches):
        x = (torch.rand(batch_size, 3, 32, 32, generator=gen) - mean) / std
        y = torch.randint(0, 10, (batch_size,), generator=gen)
        out.append((x.to(device).contiguous(), y.to(device)))
    return out


# -- ours --------------------------------------------------------------------------------------------------------
def preset_config(channels: tuple[int, ...] | None) -> Any:
    cfg = load_preset(PRESET)
    if channels is not None:
        cfg = apply_overrides(cfg, [f"system.channels={list(channels)}"])
    return cfg


def useful_flops_per_step(system: Any, batch: int, sweeps: int) -> float:
    """Nominal FLOPs of one training step: per sweep two passes (the field and the feedback) of every conv and
    dense layer but the input conv, whose drive is computed once per step; the contrast and optimizer are left
    out. (The library's max-pool path used to recompute each conv once more per sweep for the argmax, which was
    not counted; it now reuses the drive's, see maxpool_reuse.py.)"""
    per_sweep = 0.0
    for j, w in enumerate(system.weights):
        if j < system._m:
            hc, wc = system._conv_sizes[j]
            macs = w.numel() * hc * wc  # C_out * C_in * k * k per output position
            if j == 0:
                continue
        else:
            macs = w.numel()
        per_sweep += 2 * 2 * macs
    w0 = system.weights[0]
    hc, wc = system._conv_sizes[0]
    return batch * (sweeps * per_sweep + 2 * w0.numel() * hc * wc)


@dataclasses.dataclass
class Variant:
    """One way to run our step: the precision of the free phase and of the rest (nudged phases and contrast),
    the memory format, and whether the per-layer field is compiled."""

    name: str
    free: str  # "fp32", "tf32" or "bf16"
    rest: str
    channels_last: bool
    compile: bool
    device: torch.device
    system: Any = None
    cost: Any = None
    solver: Any = None
    nudged: Any = None
    rule: Any = None
    optimizer: Any = None
    shim: bool = False  # param_grad_difference outside autocast (see plain_autocast_failure)
    notes: list[str] = dataclasses.field(default_factory=list)
    broken: dict[str, Any] | None = None

    @property
    def autocast_all(self) -> bool:
        return self.rest == "bf16"

    def describe(self) -> str:
        words = {
            "fp32": "float32 with TF32 off",
            "tf32": "float32 with TF32 on (cuda.matmul and cudnn)",
            "bf16": "torch.autocast(bfloat16) (TF32 on for what autocast leaves in float32)",
        }
        if self.free == self.rest:
            text = f"whole estimate in {words[self.free]}"
        else:
            text = (
                f"free phase in {words[self.free]}, its final state cast back to float32; nudged phases and "
                f"contrast in {words[self.rest]}"
            )
        if self.channels_last:
            text += "; channels_last weights and input"
        if self.compile:
            text += (
                "; torch.compile(ConvHopfield._coupling) (the per-layer field: convs, pooling, un-pooling)"
            )
        return text

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """This variant's TF32 flags and autocast for one estimate; a different free-phase precision goes
        through a patch of ``relax`` as the rule's phases see it."""
        set_precision(self.rest)
        with contextlib.ExitStack() as stack:
            if self.rest == "bf16":
                stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
            if self.free != self.rest:
                stack.enter_context(free_phase_in(self.free, self.rest, self.device.type))
            yield

    def prepare_x(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def estimate(self, x: torch.Tensor, y: torch.Tensor, *, write: bool) -> Any:
        x = self.prepare_x(x)
        with self.active():
            return self.rule.gradients(
                self.system,
                self.cost,
                self.solver,
                x,
                y,
                nudged_solver=self.nudged,
                out="grad" if write else None,
            )

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.estimate(x, y, write=True)
        self.optimizer.step()


def parse_variant(spec: str, device: torch.device) -> Variant:
    """``PREC[/PREC][+cl][+compile]``: one precision for the whole estimate, or free-phase/rest."""
    tokens = [t for t in spec.strip().split("+") if t]
    bad = SystemExit(
        f"--variants: {spec!r}: give a precision (fp32, tf32, bf16) or free/rest (e.g. bf16/tf32: free phase "
        f"in bf16, nudged phases and contrast in TF32), then optional modifiers {', '.join(MODIFIERS)}, joined "
        "by + (e.g. tf32+cl+compile)"
    )
    if not tokens or any(t not in MODIFIERS for t in tokens[1:]):
        raise bad
    precision = tokens[0].split("/")
    if len(precision) > 2 or any(q not in PRECISIONS for q in precision):
        raise bad
    free, rest = precision[0], precision[-1]
    if rest == "bf16" and free != "bf16":
        raise SystemExit(f"--variants: {spec!r}: a bf16 rest needs a bf16 free phase (bf16)")
    return Variant(
        name=spec.strip(),
        free=free,
        rest=rest,
        channels_last="cl" in tokens,
        compile="compile" in tokens,
        device=device,
    )


def set_precision(precision: str) -> None:
    """TF32 off for fp32, on for tf32 and bf16 (cudnn.benchmark left as it is)."""
    set_flags(precision != "fp32", precision != "fp32", torch.backends.cudnn.benchmark)


@contextlib.contextmanager
def free_phase_in(free: str, rest: str, device_type: str) -> Iterator[None]:
    """Patch ``relax`` as the rule's phases (``eqprop.solvers.phases``) see it: the free phase (β = 0, nothing
    clamped) in precision ``free`` (bf16: under autocast, its final state cast back to float32), then back to
    ``rest`` for the nudged phases (started from that state) and the contrast. The batch's input drive is
    prepared before the free phase, in ``rest``, as before."""
    original = phases_module.relax

    def relax(problem: Any, solver: Any, **kwargs: Any) -> Any:
        if problem.beta != 0.0 or problem.clamp:
            return original(problem, solver, **kwargs)
        set_precision(free)
        try:
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=free == "bf16"):
                eq = original(problem, solver, **kwargs)
        finally:
            set_precision(rest)
        return dataclasses.replace(eq, state=tuple(s.to(problem.x.dtype) for s in eq.state))

    phases_module.relax = relax  # type: ignore[assignment]
    try:
        yield
    finally:
        phases_module.relax = original  # type: ignore[assignment]


def add_param_grad_shim(system: Any) -> None:
    """Instance-level wrapper: ``param_grad_difference`` with autocast off and the states in the parameters'
    dtype (what a library fix would do; see ``plain_autocast_failure`` in the JSON)."""
    original = system.param_grad_difference
    dtype = system.weights[0].dtype

    def param_grad_difference(x: torch.Tensor, a: Any, b: Any, **kwargs: Any) -> Any:
        with torch.autocast(x.device.type, enabled=False):
            return original(
                x.to(dtype), tuple(s.to(dtype) for s in a), tuple(s.to(dtype) for s in b), **kwargs
            )

    system.param_grad_difference = param_grad_difference


def where_it_failed(err: BaseException) -> dict[str, str]:
    """The innermost frame of the eqprop package in ``err``'s traceback, and the message."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "/eqprop/" in f.filename.replace("\\", "/")]
    frame = (ours or frames)[-1]
    path = frame.filename
    if "/src/" in path:
        path = "src/" + path.split("/src/", 1)[1]
    return {
        "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
        "at": f"{path}:{frame.lineno} in {frame.name}",
        "line": (frame.line or "").strip(),
        "innermost": f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}",
    }


def make_variant(base: Run, variant: Variant) -> Variant:
    """The variant's own copy of the initial network, its optimizer (built as ``build`` builds the run's) and,
    if asked, compile."""
    variant.system = copy.deepcopy(base.system).to(variant.device)
    if variant.channels_last:
        variant.system = variant.system.to(memory_format=torch.channels_last)
    variant.cost = copy.deepcopy(base.cost).to(variant.device)
    variant.solver, variant.nudged, variant.rule = base.solver, base.nudged_solver, base.rule
    variant.optimizer = make_optimizer(base.config.optimizer, variant.system, variant.cost, base.rule)
    if variant.compile:
        variant.system._coupling = torch.compile(variant.system._coupling, dynamic=False)
    return variant


def raise_dynamo_limits() -> None:
    """One compiled graph per layer index (and autocast state): keep torch.compile from giving up."""
    try:
        import torch._dynamo as dynamo
    except ImportError:
        return
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo.config, name):
            setattr(dynamo.config, name, max(getattr(dynamo.config, name), 64))


# -- gradient accuracy ------------------------------------------------------------------------------------------
Grads = dict[str, torch.Tensor]


def as_cpu64(grads: dict[str, torch.Tensor]) -> Grads:
    return {
        n.removeprefix("system."): g.detach().to("cpu", torch.float64).contiguous().clone()
        for n, g in grads.items()
    }


def closeness(g: Grads, ref: Grads) -> dict[str, Any]:
    """Cosine and relative error of ``g`` against ``ref``: over all parameters and per tensor."""

    def pair(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
        a, b = a.flatten(), b.flatten()
        den = float(a.norm() * b.norm())
        cos = float(a @ b) / den if den > 0 else float("nan")
        rel = float((a - b).norm() / b.norm()) if float(b.norm()) > 0 else float("nan")
        return sig(cos), sig(rel)

    names = list(ref)
    cos, rel = pair(torch.cat([g[n].flatten() for n in names]), torch.cat([ref[n].flatten() for n in names]))
    per = {n: list(pair(g[n], ref[n])) for n in names}
    worst = min(names, key=lambda n: per[n][0])
    return {
        "cosine": cos,
        "rel_err": rel,
        "worst_tensor": {"name": worst, "cosine": per[worst][0], "rel_err": per[worst][1]},
        "per_tensor_cosine_rel_err": per,
    }


def float64_estimate(base: Run, batch: Batch, device: torch.device) -> Grads:
    s64 = copy.deepcopy(base.system).to(device=device, dtype=torch.float64)
    c64 = copy.deepcopy(base.cost).to(device=device, dtype=torch.float64)
    x, y = batch
    with torch.autocast(device.type, enabled=False):
        est = base.rule.gradients(
            s64, c64, base.solver, x.to(torch.float64), y, nudged_solver=base.nudged_solver
        )
    return as_cpu64(est.grads)


# -- the reference -----------------------------------------------------------------------------------------------
def import_reference(ref_dir: Path) -> tuple[types.SimpleNamespace, list[str]]:
    """Import the reference's modules from ``ref_dir``; returns them and what had to be stubbed."""
    return import_exported(
        ref_dir,
        NEEDED,
        REFERENCE_HINT,
        "benchmarks/dchn_speed.py",
        {
            "FixedPointMinimizer": "model.hopfield.minimizer:FixedPointMinimizer",
            "ConvHopfieldEnergy32": "model.hopfield.network:ConvHopfieldEnergy32",
        },
    )


@dataclasses.dataclass
class Reference:
    energy_fn: Any
    network: Any
    cost_fn: Any
    estimator: Any
    inference: Any
    trainer: Any


def build_reference(ref: Any, config: Any, system: Any, device: torch.device) -> Reference:
    """As papers/ebl-algorithms/sota-dchn.py builds it for CIFAR10, with our initial parameters copied in."""
    s, o = config.system, config.optimizer
    energy_fn = ref.ConvHopfieldEnergy32(3, s.dense[-1], *s.channels, weight_gains=list(s.gains))
    energy_fn.set_device(str(device))
    copy_parameters(energy_fn, system)
    cost_fn = ref.SquaredError(energy_fn.layers()[-1])
    network = ref.Network(energy_fn)
    params, layers, free_layers = energy_fn.params(), energy_fn.layers(), network.free_layers()
    augmented_fn = ref.AugmentedFunction(energy_fn, cost_fn)
    training_minimizer = ref.FixedPointMinimizer(augmented_fn, free_layers)
    training_minimizer.num_iterations = (config.nudged_solver or config.solver).iterations
    estimator = ref.EquilibriumProp(params, layers, augmented_fn, cost_fn, training_minimizer)
    estimator.variant = "centered"
    estimator.nudging = config.rule.beta
    lrs = list(o.lr) if isinstance(o.lr, list) else [o.lr] * (len(params) // 2)
    optimizer = ref.Optimizer(energy_fn, cost_fn, lrs + lrs, o.momentum, o.weight_decay)  # biases, weights
    inference = ref.FixedPointMinimizer(energy_fn, free_layers)
    inference.num_iterations = config.solver.iterations
    trainer = ref.Trainer(network, cost_fn, params, [], estimator, optimizer, inference)
    return Reference(energy_fn, network, cost_fn, estimator, inference, trainer)


def reference_layout(system: Any) -> list[torch.Tensor]:
    """Our parameters in the reference's order and layout: biases 0-4, conv weights as they are, and the dense
    weight (10, C·2·2) as (C, 2, 2, 10)."""
    n = len(system.weights)
    out = [b.detach() for b in system.biases]
    for j, w in enumerate(system.weights):
        w = w.detach()
        out.append(w if j < n - 1 else w.t().reshape(system.channels[-1], 2, 2, w.shape[0]))
    return out


def copy_parameters(energy_fn: Any, system: Any) -> None:
    with torch.no_grad():  # in place: its Optimizer holds these very tensors
        for p, t in zip(energy_fn.params(), reference_layout(system), strict=True):
            p.state.copy_(t)


def reference_grads(ref: Reference, system: Any, batch: Batch) -> Grads:
    """Its EP estimate from our initial parameters on ``batch``, from a zero state, in our names and layout."""
    x, y = batch
    ref.network.set_input(x, reset=True)
    ref.inference.compute_equilibrium()
    ref.cost_fn.set_target(y)
    grads = ref.estimator.compute_gradient()
    n = len(system.weights)
    out: Grads = {}
    for j in range(n):
        out[f"biases.{j}"] = grads[j]
    for j in range(n):
        g = grads[n + j]
        out[f"weights.{j}"] = g if j < n - 1 else g.reshape(-1, g.shape[-1]).t()
    order = [name for name, _ in system.named_parameters()]
    return as_cpu64({k: out[k] for k in order})


# -- timing -----------------------------------------------------------------------------------------------------
def rate(
    step: Callable[[torch.Tensor, torch.Tensor], None], data: list[Batch], device: torch.device
) -> float:
    """Examples per second over one pass of ``step`` through ``data`` (synchronized before and after)."""
    synchronize(device)
    t0 = time.perf_counter()
    for x, y in data:
        step(x, y)
    synchronize(device)
    return sum(x.shape[0] for x, _ in data) / (time.perf_counter() - t0)


def stats(rates: list[float]) -> dict[str, Any]:
    med = statistics.median(rates)
    return {
        "s_per_epoch": sig(EPOCH / med, 4),
        "ex_per_s": sig(med, 4),
        "s_per_epoch_repeats": [sig(EPOCH / r, 4) for r in rates],
        "ms_per_step": None,  # filled in by the caller, who knows the batch size
    }


def main(argv: list[str] | None = None) -> None:
    t_start = time.perf_counter()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument(
        "--small", action="store_true", help="tiny smoke run: channels 8-16-16-16, batch 8, few steps"
    )
    p.add_argument(
        "--channels", type=int, nargs="+", default=None, help="conv channels (default: the preset's)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="default 128 (8 with --small)")
    p.add_argument(
        "--variants", default=None, help=f"comma-separated; default on cuda {DEFAULT_VARIANTS_CUDA}"
    )
    p.add_argument(
        "--steps", type=int, default=None, help="training steps per measurement (default 10, 3 small)"
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="measurements per contender (default 5, 2 small)"
    )
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps per contender (default 3, 1 small)"
    )
    p.add_argument(
        "--reference-dir",
        type=Path,
        default=None,
        help=f"a checkout of {REFERENCES[REFERENCE].repository} at commit {REFERENCES[REFERENCE].commit[:7]}, "
        "outside this repo (without it, the reference is not run)",
    )
    p.add_argument("--no-accuracy", action="store_true", help="skip the gradient-accuracy comparison")
    p.add_argument("--no-float64", action="store_true", help="skip the float64 estimate")
    p.add_argument("--max-minutes", type=float, default=8.0, help="stop starting new repeats after this")
    p.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="torch.backends.cudnn.benchmark on for every contender, the reference too (default: off, as "
        "torch's default and the reference leave it; cuDNN caches its choice per convolution for the whole "
        "process, so it cannot differ between contenders of one run)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available (use --device cpu --small for a smoke run)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    small = args.small
    channels = tuple(args.channels) if args.channels else (SMALL_CHANNELS if small else None)
    batch_size = args.batch_size or (8 if small else 128)
    steps = args.steps or (3 if small else 10)
    repeats = args.repeats if args.repeats is not None else (2 if small else 5)
    warmup = args.warmup if args.warmup is not None else (1 if small else 3)
    if min(batch_size, steps) < 1 or min(warmup, repeats) < 0:
        p.error("--batch-size and --steps must be >= 1, --warmup and --repeats >= 0 (0 repeats: no timing)")
    specs = args.variants or (DEFAULT_VARIANTS_CUDA if device.type == "cuda" else DEFAULT_VARIANTS_CPU)
    variants = [parse_variant(s, device) for s in specs.split(",") if s.strip()]
    if len({v.name for v in variants}) != len(variants):
        p.error("--variants: a variant is named twice")
    ref_dir = reference_dir(p, args.reference_dir, REFERENCE_HINT) if args.reference_dir is not None else None
    default_flags = tf32_flags()  # torch's defaults: the reference runs under these
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    def restore_flags() -> None:  # the reference's own settings: torch's default TF32 flags
        set_flags(
            default_flags["cuda.matmul.allow_tf32"], default_flags["cudnn.allow_tf32"], args.cudnn_benchmark
        )

    load_before = load_average()
    raise_dynamo_limits()

    # The initial weights of train.seed = --seed, in float32 on the device; every variant copies them.
    config = apply_overrides(
        preset_config(channels),
        [f"train.seed={args.seed}", f"train.device={str(device)!r}", "train.dtype='float32'"],
    )
    base = build(config)
    sweeps = config.solver.iterations + 2 * (config.nudged_solver or config.solver).iterations
    flops = useful_flops_per_step(base.system, batch_size, sweeps)
    data = make_batches(max(steps, 1), batch_size, args.seed + 1, device)
    first = data[0]
    log(
        f"{PRESET} channels={list(config.system.channels)} batch={batch_size} sweeps/step={sweeps} "
        f"device={device} variants={[v.name for v in variants]}"
    )

    # -- build every variant and estimate once from the same weights and batch (this is also the warm-up) ----
    accuracy: dict[str, Any] = {}
    grads: dict[str, Grads] = {}
    plain_failure: dict[str, str] | None = None
    for v in variants:
        make_variant(base, v)
        t0 = time.perf_counter()
        try:
            try:
                est = v.estimate(*first, write=False)
            except Exception as err:
                if not v.autocast_all:
                    raise
                plain_failure = where_it_failed(err)
                log(
                    f"{v.name}: the library fails under autocast ({plain_failure['at']}); retrying with the shim"
                )
                add_param_grad_shim(v.system)
                v.shim = True
                v.notes.append(
                    "the library's param_grad_difference fails under autocast (see plain_autocast_failure); "
                    "this variant runs it with autocast off on the states cast to float32 (benchmark shim)"
                )
                est = v.estimate(*first, write=False)
            grads[v.name] = as_cpu64(est.grads)
            v.notes.append(
                f"state dtypes after the estimate: {sorted({str(s.dtype) for s in est.phases[-1].state})}"
            )
        except Exception as err:
            v.broken = where_it_failed(err)
            log(f"{v.name}: broken: {v.broken}")
        synchronize(device)
        log(f"{v.name}: first estimate (incl. compile / cuDNN setup) {time.perf_counter() - t0:.1f} s")
    live = [v for v in variants if v.broken is None]

    fp32_ref: Grads | None = None
    f64: Grads | None = None
    if not args.no_accuracy:
        fp32_probe = Variant("fp32 (reference estimate)", "fp32", False, False, False, device)
        make_variant(base, fp32_probe)
        fp32_ref = as_cpu64(fp32_probe.estimate(*first, write=False).grads)
        del fp32_probe
        if not args.no_float64:
            t0 = time.perf_counter()
            f64 = float64_estimate(base, first, device)
            log(f"float64 estimate {time.perf_counter() - t0:.1f} s")
            accuracy["fp32_vs_float64"] = closeness(fp32_ref, f64)
        for v in live:
            accuracy[v.name] = {"vs_fp32": closeness(grads[v.name], fp32_ref)}
            if f64 is not None:
                accuracy[v.name]["vs_float64"] = closeness(grads[v.name], f64)

    # -- the reference ----------------------------------------------------------------------------------------
    ref_mods = stubs = None
    reference: Reference | None = None
    ref_info: dict[str, Any] = {}
    if ref_dir is not None:
        ref_mods, stubs = import_reference(ref_dir)
        restore_flags()
        try:
            reference = build_reference(ref_mods, config, base.system, device)
            if not args.no_accuracy:
                t0 = time.perf_counter()
                g_ref = reference_grads(reference, base.system, first)
                ref_info["gradient"] = {"vs_ours_fp32": closeness(g_ref, fp32_ref)}
                if f64 is not None:
                    ref_info["gradient"]["vs_ours_float64"] = closeness(g_ref, f64)
                log(f"reference estimate {time.perf_counter() - t0:.1f} s")
            # fresh, from our initial weights
            reference = build_reference(ref_mods, config, base.system, device)
            reference.trainer._dataloader = data
        except Exception as err:
            ref_info["broken"] = where_it_failed(err) | {
                "traceback": traceback.format_exc().splitlines()[-6:]
            }
            log(f"reference: broken: {ref_info['broken']}")
            reference = None

    # -- warm-up, then alternate -----------------------------------------------------------------------------
    contenders: dict[str, Callable[[], float]] = {}
    for v in live:
        for i in range(warmup):
            v.step(*data[i % len(data)])
        contenders[v.name] = lambda v=v: rate(v.step, data, device)
    if reference is not None:
        trainer = reference.trainer

        def run_reference() -> float:
            restore_flags()
            return _reference_rate(trainer, data, device)

        if warmup:
            restore_flags()
            trainer._dataloader = data[: max(1, min(warmup, len(data)))]
            trainer.run(verbose=False)
            trainer._dataloader = data
        contenders["reference"] = run_reference
    synchronize(device)
    log(
        f"warm-up done at {time.perf_counter() - t_start:.0f} s; timing {repeats} x {steps} steps per contender"
    )

    rates: dict[str, list[float]] = {name: [] for name in contenders}
    stopped_early = None
    for r in range(repeats):
        if r and time.perf_counter() - t_start > 60 * args.max_minutes:
            stopped_early = f"after {r} repeats: --max-minutes {args.max_minutes} reached"
            log(stopped_early)
            break
        for name, fn in contenders.items():
            rates[name].append(fn())
        log(
            f"repeat {r + 1}/{repeats}: "
            + ", ".join(f"{n} {EPOCH / rates[n][-1]:.1f} s/epoch" for n in contenders)
        )
    restore_flags()

    # -- report -----------------------------------------------------------------------------------------------
    out_variants: dict[str, Any] = {}
    for v in variants:
        entry: dict[str, Any] = {"what": v.describe(), "notes": v.notes}
        if v.broken is not None:
            entry["broken"] = v.broken
        elif rates.get(v.name):
            st = stats(rates[v.name])
            st["ms_per_step"] = sig(1000 * batch_size / st["ex_per_s"], 4)
            st["useful_tflop_per_s"] = sig(flops * st["ex_per_s"] / batch_size / 1e12, 3)
            entry.update(st)
            if rates.get("reference"):
                per = [a / b for a, b in zip(rates[v.name], rates["reference"], strict=True)]
                entry["reference_s_per_epoch_over_ours"] = sig(statistics.median(per), 3)
                entry["reference_over_ours_repeats"] = [sig(x, 3) for x in per]
        if v.name in accuracy:
            entry["gradient_accuracy"] = accuracy[v.name]
        out_variants[v.name] = entry

    result: dict[str, Any] = {
        "benchmark": "dchn_speed",
        "preset": PRESET,
        "config": {
            "channels": list(config.system.channels),
            "small": small,
            "batch_size": batch_size,
            "input": "random CIFAR-shaped (3x32x32) pixels U(0,1) normalised with the preset's mean / 3x std, 10 classes",
            "iterations": {
                "free": config.solver.iterations,
                "nudged": (config.nudged_solver or config.solver).iterations,
            },
            "sweeps_per_step": sweeps,
            "rule": f"EqProp(beta={config.rule.beta}, variant={config.rule.variant!r})",
            "optimizer": f"SGD lr {config.optimizer.lr} momentum {config.optimizer.momentum} wd {config.optimizer.weight_decay}",
            "step": "rule.gradients(system, cost, solver, x, y, nudged_solver=..., out='grad') + optimizer.step()",
            "useful_tflop_per_step": sig(flops / 1e12, 4),
            "useful_flops_definition": useful_flops_per_step.__doc__.replace("\n    ", " ").strip(),
            "epoch_examples": EPOCH,
            "steps_per_measurement": steps,
            "repeats_done": min((len(x) for x in rates.values()), default=0),
            "warmup_steps": warmup,
            "order": "alternating " + ", ".join(contenders) + ", ... in one process",
        },
        "torch_default_flags": default_flags,
        "cudnn_benchmark": args.cudnn_benchmark,
        "variants": out_variants,
    }
    if plain_failure is not None:
        result["plain_autocast_failure"] = plain_failure | {
            "fix_proposal": (
                "in ConvHopfield.param_grad_difference / _weight_correlation, bring `below` and `above` to one "
                "dtype before conv2d_weight (e.g. both to the weight's dtype, or run the contrast with "
                "torch.autocast(..., enabled=False) on states cast to float32): under autocast the input x is "
                "float32 while the un-pooled state factors are bfloat16, and aten.convolution_backward needs "
                "one dtype"
            )
        }
    if "fp32_vs_float64" in accuracy:
        result["fp32_vs_float64"] = accuracy["fp32_vs_float64"]
    if ref_dir is not None:
        ref_entry: dict[str, Any] = {
            **reference_record(REFERENCE, ref_dir),
            "dir": str(ref_dir),
            "built_as": (
                "papers/ebl-algorithms/sota-dchn.py --dataset CIFAR10: ConvHopfieldEnergy32(3, 10, "
                f"{', '.join(map(str, config.system.channels))}, weight_gains={list(config.system.gains)}), "
                "SquaredError(output), AugmentedFunction, FixedPointMinimizer 20 iterations 'asynchronous' "
                "(training) and 60 (inference), EquilibriumProp centered nudging 0.1, Optimizer lr 0.03 x 10 "
                "momentum 0.9 weight decay 2.5e-4; our initial parameters copied in"
            ),
            "timed": (
                "its Trainer.run over the same batches: set_input(reset=False), 60 inference sweeps, set_target, "
                "compute_gradient() (two nudged phases of 20 from the free state), .grad, optimizer.step(), "
                "clamp_(); no statistics attached"
            ),
            "flags": "torch's defaults (torch_default_flags): the reference sets none",
            "stubs": stubs,
            **ref_info,
        }
        if rates.get("reference"):
            st = stats(rates["reference"])
            st["ms_per_step"] = sig(1000 * batch_size / st["ex_per_s"], 4)
            st["useful_tflop_per_s"] = sig(flops * st["ex_per_s"] / batch_size / 1e12, 3)
            ref_entry.update(st)
        result["reference"] = ref_entry
    result["bar"] = {
        "ours_s_per_epoch_at_most": 25.0,
        "reference_s_per_epoch_quoted": 74.0,
        "note": "the issue's bar is for an H100 at batch 128 with the preset's channels; a --small or CPU run says nothing about it",
    }
    if stopped_early:
        result["stopped_early"] = stopped_early
    result["load_average_before"] = load_before
    result["load_average_after"] = load_average()
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    result.update(environment(device))
    if device.type == "cuda":
        result["cuda"] = {
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "cudnn": torch.backends.cudnn.version(),
            "max_memory_allocated_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        }
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    print_summary(result)


def print_summary(result: dict[str, Any]) -> None:
    """A short table on stderr (the JSON on stdout is the record)."""
    rows = [("contender", "s/epoch", "ex/s", "ref/ours", "cos vs fp32", "cos vs f64", "worst tensor vs f64")]
    entries = dict(result["variants"])
    if "reference" in result:
        ref = result["reference"]
        entries["reference"] = {
            **ref,
            "gradient_accuracy": {
                k.replace("vs_ours_", "vs_"): v for k, v in ref.get("gradient", {}).items()
            },
        }
    for name, e in entries.items():
        acc = e.get("gradient_accuracy", {})
        f32, f64 = acc.get("vs_fp32", {}), acc.get("vs_float64", {})
        worst = f64.get("worst_tensor")
        rows.append(
            (
                name,
                str(e.get("s_per_epoch", "broken" if "broken" in e else "-")),
                str(e.get("ex_per_s", "-")),
                str(e.get("reference_s_per_epoch_over_ours", "-")),
                str(f32.get("cosine", "-")),
                str(f64.get("cosine", "-")),
                f"{worst['name']} {worst['cosine']}" if worst else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)), file=sys.stderr)


def _reference_rate(trainer: Any, data: list[Batch], device: torch.device) -> float:
    """Examples per second of its Trainer.run over ``data`` (its own per-batch loop inside the clock)."""
    synchronize(device)
    t0 = time.perf_counter()
    trainer.run(verbose=False)
    synchronize(device)
    return sum(x.shape[0] for x, _ in data) / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
