"""Side by side with Gower's oscillator Ising machine code (alexgower/OIM-Equilibrium-Propagation): his
``OIM_MLP([784, 512, 10], epsilon=0.1)`` trained by EqProp with ``--thirdphase`` against our fmnist-oim preset
(a ``PhaseNetwork``), on real Fashion-MNIST.

The reference is imported from a checkout of its public repository at the commit named in ``_common.REFERENCES``,
in a folder OIM_REF outside this repository (never vendored here):

    git clone https://github.com/alexgower/OIM-Equilibrium-Propagation $OIM_REF && \\
        git -C $OIM_REF checkout 06655d0c4f84bf50a44cb5af57652c06314fff86
    .venv/bin/python benchmarks/oim_reference.py --reference-dir $OIM_REF --batches 300

His ``model_utils.py`` imports ``metric_utils``, which imports ``wandb`` at the top (for its logging, which this
script does not use): when wandb is not installed, an empty module stands in for it (the JSON says so). His model
is built by his own class; his training step is the sequence of calls his ``train_minibatch`` makes for
``--alg EP --thirdphase`` (launch.py's defaults otherwise: T1 = 20, T2 = 4, betas (0, 0.01), epsilon 0.1, MSE, SGD
0.01, batch 20): ``optimizer.zero_grad()``, phases at π/2 (``init_neurons``), free phase ``model(x, y, neurons,
T1, beta=0)``, then from a copy of the free phases (each tensor copied, detached, ``requires_grad_``) ``T2`` steps
at +β and, from another copy, ``T2`` steps at −β, then ``compute_syn_grads(x, y, neurons_plus, neurons_minus,
(β, −β), criterion)`` and ``optimizer.step()``. His per-batch metrics (the batch's accuracy and loss) are not run.

Both start from the same parameters (his ``nn.Linear`` initialisation under ``torch.manual_seed(seed)``, copied
into ours: ``weights.j`` from ``synapses[j].weight``, ``fields.k`` from ``biases[k]``, ``syncs.k`` from
``syncs[k]``), see the same batches in the same order, and alternate batch by batch in one process (ours, his,
ours, ...), each step timed on its own: the ratio of the summed times (and the median of the ratios over windows
of ``--window`` batches) is measured under the same machine conditions. The JSON reports how far the parameters
are apart after 1 and 5 steps and at the end (the same dynamics in float32: round-off apart), both estimates of
the first batch's gradient from the same parameters in float64 (the same mathematics: ~1e-12 relative apart) and
in float32, each float32 one against float64 (the hidden layer's contrast, cos φ(+β) − cos φ(−β) divided by 2β,
loses ~1e-3 relative to float32 round-off in both codes: the fields and syncs, which start at 0, are that far
apart after one step), the test accuracy of both after the batches (20 free steps from π/2, argmax of cos φ_out),
the examples/s, their ratio, and with ``--profile N`` where our step's time goes (timers around the free phase,
the two nudged phases, the contrast and the update, single calls, and torch's profiler's top operators by self
time).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

from _common import environment, load_average, reference_dir, reference_howto, reference_record
from eqprop.train import build, evaluate, load_data, load_preset
from eqprop.train.presets import apply_overrides

PRESET = "fmnist-oim"


def _import_reference(ref_dir: Path, hint: str) -> tuple[types.ModuleType, list[str]]:
    if not (ref_dir / "model_utils.py").is_file():
        raise SystemExit(
            f"--reference-dir {ref_dir}: no model_utils.py, not a checkout of the reference; {hint}"
        )
    stubs = []
    if importlib.util.find_spec("wandb") is None and "wandb" not in sys.modules:
        sys.modules["wandb"] = types.ModuleType("wandb")
        stubs.append(
            "wandb (not installed; an empty module stands in for metric_utils' import, which model_utils "
            "imports: its logging is not used)"
        )
    sys.path.insert(0, str(ref_dir))
    mu = importlib.import_module("model_utils")
    if not hasattr(mu, "OIM_MLP"):
        raise SystemExit(f"--reference-dir {ref_dir}: its model_utils.py has no OIM_MLP; {hint}")
    return mu, stubs


def _theirs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """His parameters under our names."""
    out = {f"weights.{j}": syn.weight for j, syn in enumerate(model.synapses)}
    out.update({f"fields.{k}": b for k, b in enumerate(model.biases)})
    out.update({f"syncs.{k}": s for k, s in enumerate(model.syncs)})
    return out


def _copy_weights(theirs: torch.nn.Module, ours: torch.nn.Module) -> None:
    with torch.no_grad():
        mine = dict(ours.named_parameters())
        for name, p in _theirs(theirs).items():
            mine[name].copy_(p)
        missing = set(mine) - set(_theirs(theirs))
        if missing:
            raise SystemExit(f"our parameters {sorted(missing)} have no counterpart in his OIM_MLP")


def _distance(ours: torch.nn.Module, theirs: torch.nn.Module) -> dict[str, Any]:
    """Per parameter tensor: max |ours − his| / max |his| (relative), and the worst of them."""
    with torch.no_grad():
        mine = dict(ours.named_parameters())
        rel = {}
        for name, p in _theirs(theirs).items():
            scale = float(p.detach().double().abs().max())
            diff = float((mine[name].detach().double() - p.detach().double()).abs().max())
            rel[name] = diff / scale if scale > 0 else diff
    worst = max(rel, key=rel.__getitem__)
    return {
        "max_rel_diff": float(f"{rel[worst]:.3g}"),
        "where": worst,
        "per_tensor": {n: float(f"{v:.3g}") for n, v in rel.items()},
    }


def _copy_phases(neurons: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each phase tensor copied, detached and made a leaf that requires grad (what his training loop does
    between phases)."""
    return [n.detach().clone().requires_grad_(True) for n in neurons]


class Reference:
    """His training step for one batch (``--alg EP --thirdphase``), as his ``train_minibatch`` calls it."""

    def __init__(self, model: torch.nn.Module, t1: int, t2: int, beta: float, lr: float) -> None:
        self.model, self.T1, self.T2, self.beta = model, t1, t2, beta
        self.criterion = torch.nn.MSELoss(reduction="none")
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        model, crit, beta = self.model, self.criterion, self.beta
        self.optimizer.zero_grad()
        neurons = model.init_neurons(x.size(0), x.device)
        neurons, _ = model(x, y, neurons, self.T1, beta=0.0, criterion=crit)
        free = _copy_phases(neurons)
        plus, _ = model(x, y, _copy_phases(free), self.T2, beta=beta, criterion=crit)
        plus = _copy_phases(plus)
        minus, _ = model(x, y, _copy_phases(free), self.T2, beta=-beta, criterion=crit)
        minus = _copy_phases(minus)
        model.compute_syn_grads(x, y, plus, minus, (beta, -beta), crit)
        self.optimizer.step()

    def accuracy(self, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
        """His ``evaluate``: T1 free steps from π/2, argmax of cos φ_out."""
        correct = 0
        for i in range(0, len(x), batch):
            xb, yb = x[i : i + batch], y[i : i + batch]
            neurons = self.model.init_neurons(xb.size(0), xb.device)
            neurons, _ = self.model(xb, yb, neurons, self.T1, beta=0.0, criterion=self.criterion)
            with torch.no_grad():
                correct += int((self.model.activation(neurons[-1]).argmax(1) == yb).sum())
        return correct / len(x)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|, 3 significant digits."""
    a, b = a.detach().double(), b.detach().double()
    scale = float(b.abs().max())
    return float(f"{float((a - b).abs().max()) / (scale if scale > 0 else 1.0):.3g}")


def _one_step_gradients(
    theirs: torch.nn.Module, run: Any, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Both estimates (ours, his; our names) for one batch from copies of the same parameters, in ``dtype``
    (his code builds its phases and energies in torch's default dtype: it is ``dtype`` for the duration)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        his = copy.deepcopy(theirs).to(dtype)
        ours, cost = copy.deepcopy(run.system).to(dtype), copy.deepcopy(run.cost).to(dtype)
        est = run.rule.gradients(ours, cost, run.solver, x.to(dtype), y, nudged_solver=run.nudged_solver)
        ref = Reference(
            his, run.config.solver.iterations, run.config.nudged_solver.iterations, run.rule.beta, 0.0
        )
        ref.step(x.to(dtype), y)
        mine = {n[len("system.") :]: g for n, g in est.grads.items() if n.startswith("system.")}
        return mine, {n: p.grad.detach().clone() for n, p in _theirs(his).items()}
    finally:
        torch.set_default_dtype(previous)


def _one_step_check(theirs: torch.nn.Module, run: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """The first batch's gradient estimates, from the same parameters: ours against his in float64 (the same
    mathematics: round-off of float64 apart), and each float32 estimate against the float64 one (how much of
    the float32 gap is float32 round-off that both codes make, amplified by the 1/(2β) of the contrast)."""
    ours64, his64 = _one_step_gradients(theirs, run, x, y, torch.float64)
    ours32, his32 = _one_step_gradients(theirs, run, x, y, torch.float32)
    return {
        "max_rel_diff_ours_vs_his": {
            "float64": {n: _rel(ours64[n], g) for n, g in his64.items()},
            "float32": {n: _rel(ours32[n], g) for n, g in his32.items()},
        },
        "float32_vs_float64_max_rel_error": {
            "ours": {n: _rel(ours32[n], g) for n, g in his64.items()},
            "reference": {n: _rel(his32[n], g) for n, g in his64.items()},
        },
    }


def _copy_run(run: Any, lr: float) -> types.SimpleNamespace:
    """Copies of our system and cost with their own SGD (the same step as the run's), for the profile."""
    system, cost = copy.deepcopy(run.system), copy.deepcopy(run.cost)
    opt = torch.optim.SGD(system.parameters(), lr=lr)

    def update() -> None:
        opt.step()
        system.constrain_parameters()

    return types.SimpleNamespace(
        system=system,
        cost=cost,
        solver=run.solver,
        nudged_solver=run.nudged_solver,
        rule=run.rule,
        optimizer=opt,
        update=update,
    )


def _breakdown(
    run: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], repeats: int = 200
) -> dict[str, Any]:
    """Milliseconds per batch of the pieces our centered EqProp step is made of, run one after the other as the
    rule runs them (free phase, −β phase, +β phase, contrast, optimizer step + constraints), and of the full step
    (``rule.gradients`` + ``run.update()``) on the same batch right after; then, at the last batch's free state,
    the median time of one Euler step and of one ``∂F/∂φ`` evaluation, free and nudged, of the system's part of
    it, of one cosine of the hidden phases and of the ``weights[1:]`` slice ``state_grad`` takes."""
    from eqprop.solvers.phases import Phases

    parts = dict.fromkeys(
        ("free_20_steps", "nudged_minus_4_steps", "nudged_plus_4_steps", "contrast", "update"), 0.0
    )
    beta = run.rule.beta
    full = 0.0
    for x, y in batches:
        with torch.no_grad():
            t0 = time.perf_counter()
            phases = Phases(run.system, run.cost, run.solver, x, y, nudged_solver=run.nudged_solver)
            free = phases.free
            t1 = time.perf_counter()
            lo = phases.nudged(-beta)
            t2 = time.perf_counter()
            hi = phases.nudged(beta)
            t3 = time.perf_counter()
            grads = run.system.param_grad_difference(x, lo.state, hi.state, scale=0.5 / beta)
            t4 = time.perf_counter()
            for n, p in run.system.named_parameters():
                p.grad = grads[n]
            run.update()
            t5 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            parts[key] += dt
        t0 = time.perf_counter()
        run.rule.gradients(
            run.system, run.cost, run.solver, x, y, nudged_solver=run.nudged_solver, out="grad"
        )
        run.update()
        full += time.perf_counter() - t0
    n = len(batches)

    def median_us(f: Any) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return round(statistics.median(times) * 1e6, 1)

    with torch.no_grad():
        free_problem = phases.problem
        nudged_problem = free_problem.with_nudging(beta)
        state = free.state
        free_sweep = run.solver.make_sweep(free_problem)
        nudged_sweep = run.nudged_solver.make_sweep(nudged_problem)
        micro = {
            "euler_step_free": median_us(lambda: free_sweep(state)),
            "euler_step_nudged": median_us(lambda: nudged_sweep(state)),
            "dF_dphi_free": median_us(lambda: free_problem.grad(state)),
            "dF_dphi_nudged": median_us(lambda: nudged_problem.grad(state)),
            "system_state_grad": median_us(lambda: run.system.state_grad(x, state, free_problem.drive)),
            "cos_of_hidden_phases": median_us(lambda: torch.cos(state[0])),
            "weights_slice": median_us(lambda: run.system.weights[1:]),
        }
    return {
        "ms_per_batch": {k: round(v / n * 1e3, 3) for k, v in parts.items()},
        "sum_of_parts_ms": round(sum(parts.values()) / n * 1e3, 3),
        "full_step_ms": round(full / n * 1e3, 3),
        "us_per_call": micro,
    }


def _top_ops(step: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], k: int = 12) -> dict[str, Any]:
    """torch's profiler over ``batches``: the top ``k`` operators by self CPU time (ms per batch, calls per
    batch), and the wall time per batch under the profiler (inflated by its per-op cost)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for x, y in batches:
            step(x, y)
        wall = time.perf_counter() - t0
    n = len(batches)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_self = sum(e.self_cpu_time_total for e in events)
    return {
        "wall_ms_per_batch": round(wall / n * 1e3, 3),
        "self_ms_per_batch_all_ops": round(total_self / n / 1e3, 3),
        "ops_per_batch": round(sum(e.count for e in events) / n, 1),
        "top": [
            {
                "op": e.key,
                "self_ms": round(e.self_cpu_time_total / n / 1e3, 3),
                "calls": round(e.count / n, 1),
            }
            for e in events[:k]
        ],
    }


def main() -> None:
    hint = reference_howto("gower", "$OIM_REF")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-dir", type=Path)
    p.add_argument("--batches", type=int, default=300, help="training batches (0: one epoch)")
    p.add_argument("--window", type=int, default=20, help="batches per window of the median ratio")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after the run, time the pieces of our step and profile its operators over N more batches "
        "(both on copies: the compared models are not touched)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    ref_dir = reference_dir(p, args.reference_dir, hint)
    torch.set_num_threads(args.threads)
    mu, stubs = _import_reference(ref_dir, hint)

    config = apply_overrides(load_preset(PRESET), [f"train.seed={args.seed}"])
    run = build(config)
    if run.dtype != torch.float32:
        raise SystemExit(f"{PRESET} runs in {run.dtype}; this comparison is written for float32")
    if config.rule.variant != "centered" or config.nudged_solver.step_size != config.solver.step_size:
        raise SystemExit(
            f"{PRESET}: this comparison is written for the centered rule and one Euler step size"
        )
    data = load_data(config, run.device, run.dtype, validation=False)
    t1, t2 = config.solver.iterations, config.nudged_solver.iterations
    eps = config.solver.step_size
    beta, lr, bs = config.rule.beta, config.optimizer.lr, config.train.batch_size
    torch.manual_seed(args.seed)  # his init: manual_seed, then the model (nn.Linear's default draws)
    theirs = mu.OIM_MLP(list(config.system.sizes), epsilon=eps).to(run.device)
    _copy_weights(theirs, run.system)

    n = len(data.train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + 1))
    steps = n // bs if args.batches <= 0 else min(args.batches, n // bs)
    pick0 = order[:bs]
    one_step = _one_step_check(theirs, run, data.train.x[pick0], data.train.y[pick0])
    reference = Reference(theirs, t1, t2, beta, lr)

    def ours_step(x: torch.Tensor, y: torch.Tensor) -> None:
        run.rule.gradients(
            run.system, run.cost, run.solver, x, y, nudged_solver=run.nudged_solver, out="grad"
        )
        run.update()

    ours_t: list[float] = []
    theirs_t: list[float] = []
    checkpoints: dict[str, Any] = {}
    for i in range(steps):
        pick = order[i * bs : (i + 1) * bs]
        x, y = data.train.x[pick], data.train.y[pick]
        t0 = time.perf_counter()
        ours_step(x, y)
        t_mid = time.perf_counter()
        reference.step(x, y)
        t_end = time.perf_counter()
        ours_t.append(t_mid - t0)
        theirs_t.append(t_end - t_mid)
        if i + 1 in (1, 5):
            checkpoints[f"after_{i + 1}_steps"] = _distance(run.system, theirs)
    checkpoints["at_end"] = _distance(run.system, theirs)
    examples = steps * bs
    ours_s, theirs_s = sum(ours_t), sum(theirs_t)
    w = max(1, args.window)
    windows = [sum(theirs_t[i : i + w]) / sum(ours_t[i : i + w]) for i in range(0, steps - w + 1, w)] or [
        theirs_s / ours_s
    ]
    ours_acc = evaluate(run.system, run.cost, run.solver, data.test, batch_size=config.train.eval_batch_size)
    result: dict[str, Any] = {
        "benchmark": "oim_reference",
        "preset": config.name,
        "reference": {
            **reference_record("gower", ref_dir),
            "stubbed": stubs,
            "model": f"OIM_MLP({list(config.system.sizes)}, epsilon={eps})",
            "step": "train_minibatch with --alg EP --thirdphase: free T1, +beta T2 and -beta T2 from the free "
            "phases, compute_syn_grads(x, y, plus, minus, (beta, -beta)), SGD step",
        },
        "settings": {
            "T1": t1,
            "T2": t2,
            "epsilon": eps,
            "beta": beta,
            "variant": config.rule.variant,
            "batch": bs,
            "optimizer": f"SGD({lr}) on every parameter",
            "dtype": str(run.dtype),
            "threads": torch.get_num_threads(),
        },
        "batches": steps,
        "examples": examples,
        "test_accuracy": {
            "ours": ours_acc["accuracy"],
            "reference": reference.accuracy(data.test.x, data.test.y, config.train.eval_batch_size),
        },
        "examples_per_s": {"ours": round(examples / ours_s, 1), "reference": round(examples / theirs_s, 1)},
        "ms_per_batch": {
            "ours": round(ours_s / steps * 1e3, 3),
            "reference": round(theirs_s / steps * 1e3, 3),
        },
        "speed_ratio": round(theirs_s / ours_s, 2),
        "speed_ratio_windows": {
            "window": w,
            "median": round(statistics.median(windows), 2),
            "min": round(min(windows), 2),
            "max": round(max(windows), 2),
        },
        "weights": checkpoints,
        "first_batch_gradients": one_step,
        "load_average": load_average(),
        "environment": environment(run.device),
    }
    if args.profile > 0:  # on copies of our run, from where the comparison ended
        prof_run = _copy_run(run, lr)
        picks = [(steps + i) % (n // bs) for i in range(args.profile)]
        batches = [
            (data.train.x[order[i * bs : (i + 1) * bs]], data.train.y[order[i * bs : (i + 1) * bs]])
            for i in picks
        ]

        def prof_step(x: torch.Tensor, y: torch.Tensor) -> None:
            prof_run.rule.gradients(
                prof_run.system,
                prof_run.cost,
                prof_run.solver,
                x,
                y,
                nudged_solver=prof_run.nudged_solver,
                out="grad",
            )
            prof_run.update()

        result["profile"] = {
            "batches": args.profile,
            "ours_breakdown": _breakdown(prof_run, batches),
            "ours_ops": _top_ops(prof_step, batches),
            "reference_ms_per_batch": round(theirs_s / steps * 1e3, 3),
            "note": "ours only: torch's profiler slows the reference's autograd-heavy step 1.5-7x (more the more "
            "batches it records), so its operator table would mislead",
        }
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
