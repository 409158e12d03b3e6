"""Hamiltonian echo against BPTT and a plain forward pass on a HamiltonianRNN: time and extra memory vs sequence length.

The model: ``HamiltonianRNN(units, outputs=..., input_shape=(L, features), boundary="initial", observe="final")``
integrated by ``Leapfrog()``, with a ``CrossEntropyReadout`` (default) or ``SquaredError`` cost on the final output
positions, and couplings ``--coupling-scale 0.5``: the library's default 1.0 is chaotic at these sizes (BPTT's
gradient grows to ~1e8 by L = 1024 and the echo's finite-β contrast leaves its linear regime, so the two gradients
disagree); the cost of a call does not depend on the values. Three methods, each one call on the same batch
``x (batch, L, features)``, ``y (batch,)``:

- ``forward``: ``solve(system, x, Leapfrog())`` under ``torch.no_grad()`` (the trajectory, nothing kept);
- ``echo``: ``HamiltonianEcho(beta).gradients(system, cost, Leapfrog(), x, y)`` (the forward pass, then two echoes
  batched as one ``2·batch`` pass that integrate ``∂V/∂θ`` as they go: no trajectory stored);
- ``bptt``: ``BackpropThroughSolver().gradients(system, cost, Leapfrog(), x, y)`` (autograd through the leapfrog
  integration: every step's activations are kept for the backward pass).

Time: seconds per call, the median of ``--repeats`` samples of ``--number`` calls (by default enough calls for
a forward sample of >= 20 ms) after ``--warmup`` untimed calls, the three methods alternating within one process
(the order rotates from repeat to repeat), so that the load of a shared machine hits them alike; the ratios
``echo / forward`` and ``bptt / forward`` are medians of per-repeat ratios.

Extra memory: what a call needs beyond what already existed before it, the input tensors included in that
baseline (the input grows with L for every method; the question is what each method adds on top of it).

- ``extra_memory_bytes``, CPU: torch's CPU allocator keeps no statistics and ``tracemalloc`` does not see it, so
  the call is run under ``torch.profiler.profile(profile_memory=True)`` (after two warm-up calls) and the peak of
  the running sum of its ``[memory]`` events (+bytes on allocation, −bytes on free, in time order) is the figure:
  the tensors' bytes, exact, counted from the call's start. It leaves out what is not a tensor: autograd's graph
  nodes (C++ objects), Python objects, allocator slack.
- ``extra_rss_bytes``, CPU, the operating system's view, which includes those: each (method, L) in a fresh
  subprocess of this script (``--rss-jobs`` at a time; none with ``--no-rss`` or ``--quick``), which builds the
  model, then the inputs (``VmRSS`` read before and after them: ``input_rss_bytes``, printed next to the inputs'
  ``nbytes`` as a check of the resolution), makes two warm-up calls, hands freed heap back (``gc.collect()``,
  glibc's ``malloc_trim(0)``), resets the peak resident set size to the current one (``echo 5 >
  /proc/self/clear_refs``, Linux >= 4.0), makes the call and reads the peak ``VmHWM``: extra = peak − ``VmRSS``
  just before the call. Pages, so 4 KiB resolution, and a noise of a few hundred KiB (allocator and interpreter
  churn); a fresh process per figure keeps earlier figures' free lists from absorbing the call's allocations.
  Where the reset is refused, the figure is ``ru_maxrss`` since the process started, after a warm-up at 4 points
  only (a floor under every figure; the JSON says so).
- ``extra_memory_bytes``, CUDA: ``torch.cuda.max_memory_allocated() − torch.cuda.memory_allocated()`` around the
  call after two warm-up calls and ``reset_peak_memory_stats`` (the inputs are allocated before, in the baseline).

The growth of the extra memory with L is fitted two ways: the log-log slope (≈ 0 flat, ≈ 1 linear) and a
straight line ``extra = a + b·L`` (``b``: bytes per time step). The echo also reports the gradients' agreement
with BPTT (cosine, max |difference|) at each L. ``--breakdown`` adds where an echo call's time goes (the forward
integration, the echo's force evaluations, its ``potential_param_grads`` calls, the rest), from wrappers with a
clock around the system's methods (on CUDA they synchronize, which slows the call).

    .venv/bin/python benchmarks/echo_memory.py --quick                  # a few seconds
    .venv/bin/python benchmarks/echo_memory.py                          # L = 64 … 1024, units 64, batch 32
    .venv/bin/python benchmarks/echo_memory.py --breakdown --plot echo_memory.png
    .venv/bin/python benchmarks/echo_memory.py --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from _common import compare, environment, load_average, median_ratio, synchronize
from eqprop.costs import CrossEntropyReadout, SquaredError
from eqprop.rules import BackpropThroughSolver, HamiltonianEcho
from eqprop.solvers import Leapfrog, solve
from eqprop.systems import HamiltonianRNN

METHODS = ("forward", "echo", "bptt")
WARM_POINTS = 4  # the sequence length of the memory worker's warm-up
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# -- the model and the three calls ------------------------------------------------------------------------------
def build(settings: dict, points: int, device: torch.device) -> tuple[HamiltonianRNN, torch.nn.Module]:
    gen = torch.Generator().manual_seed(settings["seed"])
    system = HamiltonianRNN(
        settings["units"],
        outputs=settings["outputs"],
        input_shape=(points, settings["features"]),
        dt=settings["dt"],
        coupling_scale=settings["coupling_scale"],
        input_scale=settings["input_scale"],
        boundary="initial",
        observe="final",
        generator=gen,
    )
    if settings["cost"] == "cross_entropy":
        cost: torch.nn.Module = CrossEntropyReadout(settings["outputs"], settings["classes"], generator=gen)
    else:
        cost = SquaredError()
    return system.to(device), cost.to(device)


def inputs(settings: dict, points: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(settings["seed"] + points)
    x = torch.randn(settings["batch"], points, settings["features"], generator=gen)
    y = torch.randint(0, settings["classes"], (settings["batch"],), generator=gen)
    return x.to(device), y.to(device)


def method_call(
    name: str, settings: dict, system: HamiltonianRNN, cost: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], object]:
    solver = Leapfrog()
    if name == "forward":

        def forward() -> object:
            with torch.no_grad():
                return solve(system, x, solver)

        return forward
    rule = HamiltonianEcho(beta=settings["beta"]) if name == "echo" else BackpropThroughSolver()
    return lambda: rule.gradients(system, cost, solver, x, y)  # type: ignore[arg-type]


# -- memory ---------------------------------------------------------------------------------------------------
def _status_bytes(key: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
    except OSError:
        return False
    return True


def allocator_peak(call: Callable[[], object]) -> int | None:
    """The peak of the bytes live in torch's CPU allocator during ``call()``, counted from its start: the running
    sum of the profiler's ``[memory]`` events (+ on allocation, − on free), in time order. None when this torch's
    profiler does not expose them (``profile.profiler.kineto_results`` is not public API)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = call()
        del result
    try:
        cpu = torch._C._autograd.DeviceType.CPU
        events = sorted(
            (e.start_ns(), e.nbytes())
            for e in prof.profiler.kineto_results.events()
            if e.name() == "[memory]" and e.device_type() == cpu
        )
    except AttributeError:
        return None
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def memory_worker(spec: str) -> None:
    """One RSS figure in this (fresh) process; prints one JSON line (see the module docstring)."""
    job = json.loads(spec)
    settings, name, points = job["settings"], job["method"], job["points"]
    torch.set_num_threads(settings["threads"])
    torch.set_default_dtype(DTYPES[settings["dtype"]])
    cpu = torch.device("cpu")
    resettable = _reset_peak()
    if not resettable:  # the peak since the process started: warm up small, it is a floor under the figure
        warm_system, warm_cost = build(settings, WARM_POINTS, cpu)
        wx, wy = inputs(settings, WARM_POINTS, cpu)
        for _ in range(2):
            method_call(name, settings, warm_system, warm_cost, wx, wy)()
        del warm_system, warm_cost, wx, wy
    system, cost = build(settings, points, cpu)
    _trim()
    rss_before_inputs = _status_bytes("VmRSS")
    x, y = inputs(settings, points, cpu)
    rss_after_inputs = _status_bytes("VmRSS")
    call = method_call(name, settings, system, cost, x, y)
    if resettable:  # warm up at the full length: the figure is that of a repeated call, as in training
        for _ in range(2):
            call()
    _trim()
    reset = resettable and _reset_peak()
    baseline = _status_bytes("VmRSS")
    result = call()
    peak = _status_bytes("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    del result
    print(
        json.dumps(
            {
                "extra_rss_bytes": peak - baseline,
                "input_rss_bytes": rss_after_inputs - rss_before_inputs,
                "baseline_rss_bytes": baseline,
                "peak_reset": reset,
                "warmup_points": points if resettable else WARM_POINTS,
            }
        )
    )


def rss_memory(settings: dict, name: str, points: int) -> dict:
    spec = json.dumps({"settings": settings, "method": name, "points": points})
    env = {**os.environ, "OMP_NUM_THREADS": str(settings["threads"])}
    run = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-worker", spec],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        raise SystemExit(f"memory worker ({name}, L={points}) failed:\n{run.stderr[-3000:]}")
    return json.loads(lines[-1])


def allocated_memory(settings: dict, name: str, points: int, device: torch.device) -> dict:
    """The tensors' extra memory of one call, in this process, after two warm-up calls: on CPU
    :func:`allocator_peak`, on CUDA ``max_memory_allocated − memory_allocated`` after ``reset_peak_memory_stats``
    (the inputs, allocated before, are in the baseline of both)."""
    system, cost = build(settings, points, device)
    x, y = inputs(settings, points, device)
    call = method_call(name, settings, system, cost, x, y)
    for _ in range(2):
        call()
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        result = call()
        synchronize(device)
        extra: int | None = torch.cuda.max_memory_allocated(device) - baseline
        del result
    else:
        extra = allocator_peak(call)
    return {"extra_bytes": extra, "input_bytes": x.nbytes + y.nbytes}


# -- time -----------------------------------------------------------------------------------------------------
def timings(
    settings: dict, points: int, device: torch.device, repeats: int, warmup: int, number: int | None
) -> tuple[dict[str, list[float]], dict[str, float], int]:
    """Seconds per call of each method (``repeats`` samples of ``number`` calls, alternating), the echo's
    gradients against BPTT's, and ``number`` (None: enough calls for a forward sample of >= 20 ms)."""
    system, cost = build(settings, points, device)
    x, y = inputs(settings, points, device)
    calls = {name: method_call(name, settings, system, cost, x, y) for name in METHODS}
    results = {}
    for name in METHODS:
        for _ in range(warmup):
            results[name] = calls[name]()
    synchronize(device)
    echo, bptt = results["echo"], results["bptt"]
    names = [n for n in bptt.grads if n.startswith("system.")]  # type: ignore[attr-defined]
    agreement = compare(
        torch.cat([echo.grads[n].flatten() for n in names]),  # type: ignore[attr-defined]
        torch.cat([bptt.grads[n].flatten() for n in names]),  # type: ignore[attr-defined]
    )
    del results, echo, bptt
    if number is None:
        synchronize(device)
        t0 = time.perf_counter()
        calls["forward"]()
        synchronize(device)
        number = max(1, math.ceil(0.02 / max(time.perf_counter() - t0, 1e-6)))
    seconds: dict[str, list[float]] = {name: [] for name in METHODS}
    for r in range(repeats):
        order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
        for name in order:
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(number):
                calls[name]()
            synchronize(device)
            seconds[name].append((time.perf_counter() - t0) / number)
    return seconds, agreement, number


def breakdown(settings: dict, points: int, device: torch.device, repeats: int) -> dict[str, object]:
    """Where an echo call's time goes: clocks around the system's ``integrate``, ``echo``, ``force`` and
    ``potential_param_grads`` (instance attributes shadowing the methods; the package is not touched)."""
    system, cost = build(settings, points, device)
    x, y = inputs(settings, points, device)
    clock: dict[str, float] = {}
    calls: dict[str, int] = {}
    inside_echo = [False]

    def wrap(attr: str) -> None:
        method = getattr(system, attr)

        def timed_method(*args: object, **kwargs: object) -> object:
            key = (
                attr if attr in ("integrate", "echo") else f"{attr}@{'echo' if inside_echo[0] else 'forward'}"
            )
            if attr == "echo":
                inside_echo[0] = True
            synchronize(device)
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                synchronize(device)
                clock[key] = clock.get(key, 0.0) + time.perf_counter() - t0
                calls[key] = calls.get(key, 0) + 1
                if attr == "echo":
                    inside_echo[0] = False

        object.__setattr__(system, attr, timed_method)

    plain = {
        "forward": method_call("forward", settings, system, cost, x, y),
        "echo": method_call("echo", settings, system, cost, x, y),
    }
    x2 = torch.cat((x, x))
    plain["forward_2x_batch"] = method_call("forward", settings, system, cost, x2, torch.cat((y, y)))
    unwrapped: dict[str, list[float]] = {k: [] for k in plain}
    for _ in range(2):
        for f in plain.values():
            f()
    for _ in range(repeats):
        for k, f in plain.items():
            synchronize(device)
            t0 = time.perf_counter()
            f()
            synchronize(device)
            unwrapped[k].append(time.perf_counter() - t0)
    for attr in ("integrate", "echo", "force", "potential_param_grads"):
        wrap(attr)
    echo = method_call("echo", settings, system, cost, x, y)
    echo()
    samples: list[dict[str, float]] = []
    totals: list[float] = []
    for _ in range(repeats):
        clock.clear()
        calls.clear()
        synchronize(device)
        t0 = time.perf_counter()
        echo()
        synchronize(device)
        totals.append(time.perf_counter() - t0)
        samples.append(dict(clock))
    keys = sorted(samples[0])
    parts = {k: statistics.median(s[k] for s in samples) for k in keys}
    total = statistics.median(totals)
    echo_pass = parts.get("echo", 0.0)
    inner = parts.get("force@echo", 0.0) + parts.get("potential_param_grads@echo", 0.0)
    fwd = statistics.median(unwrapped["forward"])
    return {
        "points": points,
        "unwrapped_seconds": {k: round(statistics.median(v), 6) for k, v in unwrapped.items()},
        "echo_call_over_forward": round(statistics.median(unwrapped["echo"]) / fwd, 3),
        "forward_2x_batch_over_forward": round(statistics.median(unwrapped["forward_2x_batch"]) / fwd, 3),
        "wrapped_echo_call_seconds": round(total, 6),
        "seconds": {k: round(v, 6) for k, v in parts.items()},
        "calls": dict(sorted(calls.items())),
        "share_of_wrapped_echo_call": {k: round(v / total, 3) for k, v in parts.items()},
        "echo_pass_rest_seconds": round(echo_pass - inner, 6),
        "rule_rest_seconds": round(total - echo_pass - parts.get("integrate", 0.0), 6),
        "note": "integrate = the rule's forward pass; echo = the two echoes (2x batch), of which force@echo and "
        "potential_param_grads@echo, the rest being the leapfrog updates, slicing and the gradient sums; "
        "rule_rest = the cost's gradient at the final state, the readout's gradient, predict, checks. "
        "The clocks add some overhead per call (they synchronize on CUDA).",
    }


def measure_memory(
    rows: list[dict], settings: dict, device: torch.device, repeats: int, rss_jobs: int
) -> tuple[dict[str, object], dict[str, object]]:
    """Fill each row's memory figures (median of ``repeats``); return how they were measured and their growth.
    The RSS figures (CPU, ``rss_jobs`` > 0) come from fresh processes, ``rss_jobs`` at a time."""
    rss = device.type == "cpu" and rss_jobs > 0
    jobs = [(int(row["points"]), name) for row in rows for _ in range(repeats) for name in METHODS]
    found: dict[tuple[int, str], list[dict]] = {job: [] for job in jobs}
    if rss:
        print(f"RSS: {len(jobs)} fresh processes, {rss_jobs} at a time", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=rss_jobs) as pool:
            for job, fig in zip(
                jobs, pool.map(lambda j: rss_memory(settings, j[1], j[0]), jobs), strict=True
            ):
                found[job].append(fig)
    for points, name in jobs:
        print(f"L = {points}: allocated memory, {name}", file=sys.stderr)
        found[(points, name)].append(allocated_memory(settings, name, points, device))
    for row in rows:
        points = int(row["points"])
        figs = {name: found[(points, name)] for name in METHODS}
        row["input_bytes"] = next(f["input_bytes"] for f in figs["forward"] if "input_bytes" in f)
        for key, out in (("extra_bytes", "extra_memory_bytes"), ("extra_rss_bytes", "extra_rss_bytes")):
            values = {n: [f[key] for f in fs if key in f] for n, fs in figs.items()}
            if not values["forward"]:
                continue
            row[out] = {n: None if None in v else int(statistics.median(v)) for n, v in values.items()}
            if repeats > 1:
                row[out + "_repeats"] = values
        if rss:
            row["input_rss_bytes"] = next(
                f["input_rss_bytes"] for f in figs["forward"] if "input_rss_bytes" in f
            )
            row["rss_peak_reset"] = all(f.get("peak_reset", True) for fs in figs.values() for f in fs)
    if device.type == "cuda":
        method: dict[str, object] = {
            "kind": "cuda max_memory_allocated",
            "extra_memory_bytes": "max_memory_allocated - memory_allocated around one call (after a warm-up "
            "call and reset_peak_memory_stats); the inputs are allocated before, in the baseline",
        }
    else:
        reset = all(r.get("rss_peak_reset", True) for r in rows)
        method = {
            "kind": "torch CPU allocator (profiler) and resident set size, a fresh process per figure",
            "extra_memory_bytes": "the peak of the bytes live in torch's CPU allocator during the call, counted "
            "from its start (torch.profiler profile_memory=True, running sum of the [memory] events): tensors "
            "only, exact to the byte; the inputs exist before, in the baseline",
            "extra_rss_bytes": "skipped (--no-rss or --quick)"
            if not rss
            else (
                "VmHWM during the call - VmRSS before it, the peak reset by /proc/self/clear_refs just before, "
                "after two warm-up calls at the same L and malloc_trim(0): every byte the process touched, autograd "
                "graph nodes and allocator slack included, in 4 KiB pages (noise of a few hundred KiB)"
                if reset
                else f"ru_maxrss - VmRSS before the call (the peak could not be reset: a warm-up at {WARM_POINTS} "
                "points is a floor under every figure)"
            ),
            "input_rss_bytes": "VmRSS's growth when the inputs were made, next to input_bytes (a check of the RSS "
            "figures' resolution)",
        }
    ls = [int(r["points"]) for r in rows]
    growth: dict[str, object] = {}
    for key in ("extra_memory_bytes", "extra_rss_bytes"):
        if key in rows[0] and all(r[key][n] is not None for r in rows for n in METHODS):
            growth[key] = {n: fit(ls, [float(r[key][n]) for r in rows]) for n in METHODS}
    itemsize = torch.empty((), dtype=DTYPES[settings["dtype"]]).element_size()
    growth["reference_bytes_per_step"] = {
        "input_x": settings["batch"] * settings["features"] * itemsize,
        "one_state_vector": settings["batch"] * settings["units"] * itemsize,
    }
    return method, growth


# -- fits and plot --------------------------------------------------------------------------------------------
def fit(points: list[int], values: list[float]) -> dict[str, float | None]:
    """Least squares: the log-log slope of ``values`` vs ``points``, and ``values ≈ a + b·points``."""
    n = len(points)
    if n < 2:
        return {"loglog_slope": None, "bytes_per_step": None, "intercept_bytes": None}
    mx = sum(points) / n
    my = sum(values) / n
    sxx = sum((p - mx) ** 2 for p in points)
    b = sum((p - mx) * (v - my) for p, v in zip(points, values, strict=True)) / sxx
    positive = [(math.log(p), math.log(v)) for p, v in zip(points, values, strict=True) if v > 0]
    slope = None
    if len(positive) == n:
        lx = sum(p for p, _ in positive) / n
        ly = sum(v for _, v in positive) / n
        slope = sum((p - lx) * (v - ly) for p, v in positive) / sum((p - lx) ** 2 for p, _ in positive)
    return {
        "loglog_slope": None if slope is None else round(slope, 3),
        "bytes_per_step": round(b, 1),
        "intercept_bytes": round(my - b * mx),
    }


def check_matplotlib(parser: argparse.ArgumentParser) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        parser.error(
            "--plot needs matplotlib, which is not installed in this environment (the benchmark itself does "
            "not need it): install it into the venv yourself, or run without --plot"
        )


def plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ls = [r["points"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, marker in (("echo", "o"), ("bptt", "s")):
        left.plot(ls, [r["ratio_to_forward"][name] for r in rows], marker=marker, label=f"{name} / forward")
    left.axhline(1.0, color="grey", lw=0.8)
    left.set_xscale("log", base=2)
    left.set_xlabel("sequence length L")
    left.set_ylabel("time per call / forward pass")
    left.set_title("time (median of per-repeat ratios)")
    left.legend()
    for i, (name, marker) in enumerate((("forward", "^"), ("echo", "o"), ("bptt", "s"))):
        color = f"C{i}"
        mib = [max(r["extra_memory_bytes"][name], 1) / 2**20 for r in rows]
        label = "torch allocator" if "extra_rss_bytes" in rows[0] else "allocated"
        right.plot(ls, mib, marker=marker, color=color, label=f"{name} ({label})")
        if "extra_rss_bytes" in rows[0]:
            rss = [max(r["extra_rss_bytes"][name], 1) / 2**20 for r in rows]
            right.plot(ls, rss, marker=marker, color=color, ls=":", mfc="none", label=f"{name} (RSS)")
    right.plot(
        ls, [r["input_bytes"] / 2**20 for r in rows], ls="--", color="grey", label="input x, y (baseline)"
    )
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("sequence length L")
    right.set_ylabel("MiB beyond the baseline")
    right.set_title("extra memory per call")
    right.legend(fontsize=7)
    s = result["settings"]
    fig.suptitle(
        f"HamiltonianRNN units {s['units']}, features {s['features']}, batch {s['batch']}, {s['dtype']}, "
        f"{result['environment']['device']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main -----------------------------------------------------------------------------------------------------
def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-worker":
        memory_worker(sys.argv[2])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--lengths", type=int, nargs="+", default=None, help="sequence lengths L (default 64 … 1024)"
    )
    p.add_argument("--units", type=int, default=None, help="oscillators (default 64)")
    p.add_argument("--features", type=int, default=None, help="input features per time point (default 16)")
    p.add_argument("--outputs", type=int, default=10, help="output units (the readout's input)")
    p.add_argument("--classes", type=int, default=10, help="classes (squared_error: must equal --outputs)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 32)")
    p.add_argument("--dt", type=float, default=0.5)
    p.add_argument(
        "--coupling-scale",
        type=float,
        default=0.5,
        help="W ~ N(0, scale²/units) (default 0.5; the library's 1.0 is chaotic at these sizes: BPTT's gradient "
        "grows to ~1e8 by L = 1024 and the echo at beta 1e-3 leaves its linear regime)",
    )
    p.add_argument("--input-scale", type=float, default=1.0)
    p.add_argument("--cost", choices=["cross_entropy", "squared_error"], default="cross_entropy")
    p.add_argument("--beta", type=float, default=1e-3, help="the echo's nudging strength")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--repeats", type=int, default=None, help="timed samples per method and L (default 7)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per method and L first")
    p.add_argument(
        "--number", type=int, default=None, help="calls per timed sample (default: a forward sample >= 20 ms)"
    )
    p.add_argument("--memory-repeats", type=int, default=1, help="memory figures per method and L (median)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument(
        "--no-rss", action="store_true", help="skip the RSS figures (fresh processes; --quick skips them)"
    )
    p.add_argument("--rss-jobs", type=int, default=2, help="RSS processes at a time (default 2)")
    p.add_argument("--breakdown", action="store_true", help="also time the parts of an echo call")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", type=Path, default=None, help="write a PNG (needs matplotlib)")
    p.add_argument("--quick", action="store_true", help="a tiny run: L 16 and 32, small sizes, few repeats")
    args = p.parse_args()
    if args.plot is not None:
        if args.no_memory:
            p.error("--plot needs the memory figures: drop --no-memory")
        check_matplotlib(p)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available to this torch")
    quick = {"lengths": [16, 32], "units": 16, "features": 4, "batch": 8, "repeats": 3}
    if args.quick:
        args.no_rss = True
    full = {"lengths": [64, 128, 256, 512, 1024], "units": 64, "features": 16, "batch": 32, "repeats": 7}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.cost == "squared_error" and args.classes != args.outputs:
        p.error(
            "--cost squared_error one-hot encodes the labels over the outputs: give --classes = --outputs"
        )
    if min(args.lengths) < 2:
        p.error("--lengths: an initial-value trajectory needs at least 2 time points")
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(DTYPES[args.dtype])
    device = torch.device(args.device)
    settings = {
        "units": args.units,
        "features": args.features,
        "outputs": args.outputs,
        "classes": args.classes,
        "batch": args.batch,
        "dt": args.dt,
        "coupling_scale": args.coupling_scale,
        "input_scale": args.input_scale,
        "cost": args.cost,
        "beta": args.beta,
        "dtype": args.dtype,
        "seed": args.seed,
        "threads": args.threads,
    }
    started = time.perf_counter()
    rows = []
    breakdowns = []
    for points in args.lengths:
        print(f"L = {points}: timing", file=sys.stderr)
        seconds, agreement, number = timings(settings, points, device, args.repeats, args.warmup, args.number)
        row: dict[str, object] = {
            "points": points,
            "calls_per_sample": number,
            "seconds_per_call": {n: round(statistics.median(v), 6) for n, v in seconds.items()},
            "ratio_to_forward": {
                n: round(median_ratio(seconds[n], seconds["forward"]), 3) for n in ("echo", "bptt")
            },
            "seconds_repeats": {n: [round(t, 6) for t in v] for n, v in seconds.items()},
            "echo_vs_bptt_gradients": {k: float(f"{v:.4g}") for k, v in agreement.items()},
        }
        rows.append(row)
        if args.breakdown:
            print(f"L = {points}: echo breakdown", file=sys.stderr)
            breakdowns.append(breakdown(settings, points, device, args.repeats))
    timing_seconds = time.perf_counter() - started
    memory_method: dict[str, object] = {"kind": "skipped"}
    growth: dict[str, object] = {}
    if not args.no_memory:
        rss_jobs = 0 if args.no_rss or device.type == "cuda" else args.rss_jobs
        memory_method, growth = measure_memory(rows, settings, device, args.memory_repeats, rss_jobs)
    result = {
        "benchmark": "echo_memory",
        "model": f"HamiltonianRNN({args.units}, outputs={args.outputs}, input_shape=(L, {args.features}), "
        f"dt={args.dt}, coupling_scale={args.coupling_scale}, input_scale={args.input_scale}, boundary='initial', "
        "observe='final') + Leapfrog()",
        "cost": f"CrossEntropyReadout({args.outputs}, {args.classes})"
        if args.cost == "cross_entropy"
        else "SquaredError() (labels one-hot)",
        "methods": {
            "forward": "solve(system, x, Leapfrog()) under torch.no_grad()",
            "echo": f"HamiltonianEcho(beta={args.beta}).gradients(system, cost, Leapfrog(), x, y)",
            "bptt": "BackpropThroughSolver().gradients(system, cost, Leapfrog(), x, y)",
        },
        "settings": {
            **settings,
            "lengths": args.lengths,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "number": args.number,
            "memory_repeats": args.memory_repeats,
            "quick": args.quick,
        },
        "rows": rows,
        "memory_method": memory_method,
        "memory_growth": growth,
        "echo_breakdown": breakdowns or None,
        "timing_seconds": round(timing_seconds, 1),
        "run_seconds": round(time.perf_counter() - started, 1),
        "load_average": load_average(),
        "environment": environment(device),
    }
    if args.plot is not None:
        plot(args.plot, result)
        result["plot"] = str(args.plot)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
