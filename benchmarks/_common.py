"""Shared pieces of the benchmark scripts: the fmnist-dhn1h library step, input batches, clocks, machine info,
the reference repositories.

Not part of the library: the scripts in this folder import it as a sibling module.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import eqprop
from eqprop.data import load_idx_dataset

# The fmnist-dhn1h preset (src/eqprop/presets/fmnist-dhn1h.toml).
SIZES = (784, 1024, 10)
GAIN = 0.7
ITERATIONS = 15
ORDER = "odd-even"
BETA = 0.2
LR = 0.05
PRESET = {
    "preset": "fmnist-dhn1h",
    "system": f"DeepHopfield({list(SIZES)}, gains={GAIN})",
    "cost": "SquaredError()",
    "solver": f"BlockCoordinate(iterations={ITERATIONS}, order={ORDER!r}) for every phase",
    "rule": f"EqProp(beta={BETA}, variant='centered')",
    "optimizer": f"torch.optim.SGD(lr={LR})",
    "step": "rule.gradients(system, cost, solver, x, y, out='grad') + optimizer.step()",
}


@dataclass
class LibraryTrainer:
    """The library's training step for the fmnist-dhn1h preset."""

    system: eqprop.DeepHopfield
    cost: eqprop.SquaredError
    solver: eqprop.BlockCoordinate
    rule: eqprop.EqProp
    optimizer: torch.optim.Optimizer

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.rule.gradients(self.system, self.cost, self.solver, x, y, out="grad")
        self.optimizer.step()


def make_library(seed: int, device: torch.device) -> LibraryTrainer:
    gen = torch.Generator().manual_seed(seed)
    system = eqprop.DeepHopfield(list(SIZES), gains=GAIN, generator=gen).to(device)
    return LibraryTrainer(
        system=system,
        cost=eqprop.SquaredError(),
        solver=eqprop.BlockCoordinate(iterations=ITERATIONS, order=ORDER),
        rule=eqprop.EqProp(beta=BETA, variant="centered"),
        optimizer=torch.optim.SGD(system.parameters(), lr=LR),
    )


def input_pool(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` examples ``(x (n, 784) in [0, 1], y (n,) int64)`` and a description of where they came from.

    Real Fashion-MNIST training images when the IDX files are found, else uniform random pixels and labels:
    every relaxation runs a fixed number of sweeps, so the timing does not depend on the data.
    """
    try:
        ds = load_idx_dataset("fashion-mnist")
    except (eqprop.DataError, eqprop.ConfigError) as err:
        gen = torch.Generator().manual_seed(seed)
        x = torch.rand(n, SIZES[0], generator=gen)
        y = torch.randint(0, SIZES[-1], (n,), generator=gen)
        note = (
            f"random inputs in [0, 1] (Fashion-MNIST not found: {str(err).splitlines()[0]}); the iteration "
            "counts are fixed, so the timing does not depend on the data"
        )
        return x, y, note
    n = min(n, len(ds.train))
    return ds.train.x[:n].contiguous(), ds.train.y[:n].contiguous(), f"Fashion-MNIST train, first {n} images"


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Contiguous mini-batches on ``device`` (prepared in advance: the clock measures training only)."""
    out = []
    for i in range(0, x.shape[0] - batch_size + 1, batch_size):
        out.append((x[i : i + batch_size].to(device).contiguous(), y[i : i + batch_size].to(device)))
    if not out:
        raise SystemExit(f"need at least {batch_size} examples for a batch, got {x.shape[0]}")
    return out


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    step: Callable[[torch.Tensor, torch.Tensor], None],
    data: list[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    device: torch.device,
) -> float:
    """Examples per second over ``steps`` training steps, cycling through ``data``."""
    synchronize(device)
    t0 = time.perf_counter()
    n = 0
    for i in range(steps):
        x, y = data[i % len(data)]
        step(x, y)
        n += x.shape[0]
    synchronize(device)
    return n / (time.perf_counter() - t0)


def summary(values: list[float]) -> dict[str, object]:
    return {
        "median": round(statistics.median(values), 1),
        "repeats": [round(v, 1) for v in values],
    }


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def environment(device: torch.device) -> dict[str, object]:
    env: dict[str, object] = {
        "torch": torch.__version__,
        "eqprop": eqprop.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "machine": {
            "processor": platform.processor() or None,
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (to tell a busy machine from a slow library)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


@dataclass(frozen=True)
class ReferenceRepo:
    """A public repository of reference code, and the commit the benchmarks were written against."""

    repository: str  # owner/name on GitHub
    commit: str
    url: str


REFERENCES: dict[str, ReferenceRepo] = {
    "rain": ReferenceRepo(
        repository="rain-neuromorphics/energy-based-learning",
        commit="6b253fd8a5d267535f58ab79992256ef10031ceb",
        url="https://github.com/rain-neuromorphics/energy-based-learning",
    ),
    "aeqprop": ReferenceRepo(
        repository="bscellier/agnostic-equilibrium-propagation",
        commit="e31e74ce8f4251217b71c3a8fe886ee6f25882b1",
        url="https://github.com/bscellier/agnostic-equilibrium-propagation",
    ),
    "laborieux": ReferenceRepo(
        repository="Laborieux-Axel/Equilibrium-Propagation",
        commit="93660ed6c5b0ec07978b674a69c169ce32e8cd5f",
        url="https://github.com/Laborieux-Axel/Equilibrium-Propagation",
    ),
    "gower": ReferenceRepo(
        repository="alexgower/OIM-Equilibrium-Propagation",
        commit="06655d0c4f84bf50a44cb5af57652c06314fff86",
        url="https://github.com/alexgower/OIM-Equilibrium-Propagation",
    ),
}
"""The reference code the side-by-side scripts import (key -> repository). Never vendored here: each script
takes a checkout of it, outside this repository, as ``--reference-dir``."""


def reference_howto(key: str, folder: str = "DIR") -> str:
    """How to get the reference ``key`` of :data:`REFERENCES`, for the scripts' errors and hints."""
    ref = REFERENCES[key]
    return (
        f"check out {ref.repository} at commit {ref.commit} into a folder {folder} outside this repository:\n"
        f"    git clone {ref.url} {folder} && git -C {folder} checkout {ref.commit}\n"
        f"then pass --reference-dir {folder}"
    )


def reference_commit(path: Path) -> str | None:
    """The commit checked out in ``path`` (``git -C path rev-parse HEAD``) when ``path`` is the top of a git
    checkout, else None (an exported copy, a folder inside some other checkout, or no git)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        top, head = out.stdout.splitlines()
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    return head if Path(top).resolve() == Path(path).resolve() else None


def reference_record(key: str, path: Path) -> dict[str, str | None]:
    """The JSON record of the reference ``key`` used from ``path``: its repository, the commit the benchmarks
    expect, and the commit checked out in ``path`` (None when it is not a git checkout)."""
    ref = REFERENCES[key]
    return {"repository": ref.repository, "expected_commit": ref.commit, "commit": reference_commit(path)}


def reference_dir(parser: argparse.ArgumentParser, path: Path | None, hint: str) -> Path:
    """``--reference-dir``, checked: given, an existing folder, and outside this repository."""
    if path is None:
        parser.error(f"--reference-dir is required; {hint}")
    if not path.is_dir():
        parser.error(f"--reference-dir {path} does not exist; {hint}")
    resolved = path.resolve()
    if Path(__file__).resolve().parents[1] in (resolved, *resolved.parents):
        parser.error(f"--reference-dir {resolved} is inside this repository; {hint}")
    return resolved


def stub_tensorboard(script: str) -> list[str]:
    """Put a stub ``torch.utils.tensorboard`` in ``sys.modules`` when tensorboard is not installed.

    The rain-neuromorphics reference imports ``SummaryWriter`` at import time in ``training/monitor.py`` (the
    home of its ``Optimizer``); only its ``Monitor`` uses it, and the benchmarks build none. Returns what was
    stubbed (empty when tensorboard is installed), for the JSON.
    """
    if importlib.util.find_spec("tensorboard") is not None or "torch.utils.tensorboard" in sys.modules:
        return []
    stub = types.ModuleType("torch.utils.tensorboard")

    class SummaryWriter:  # never instantiated by the benchmarks
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError(f"tensorboard stub ({script}): not available")

    stub.SummaryWriter = SummaryWriter  # type: ignore[attr-defined]
    sys.modules["torch.utils.tensorboard"] = stub
    return [
        f"torch.utils.tensorboard (tensorboard is not installed; stubbed in sys.modules by {script}, for "
        "training/monitor.py's import of SummaryWriter, which only its Monitor uses)"
    ]


def compare(ours: torch.Tensor, theirs: torch.Tensor) -> dict[str, float]:
    """How close two tensors of the same shape are: cosine, max |difference|, and max |theirs| for scale."""
    a, b = ours.detach().double().flatten().cpu(), theirs.detach().double().flatten().cpu()
    norms = float(a.norm() * b.norm())
    return {
        "cosine": float(a @ b) / norms if norms > 0 else float("nan"),
        "max_abs_diff": float((a - b).abs().max()) if a.numel() else 0.0,
        "max_abs": float(b.abs().max()) if b.numel() else 0.0,
    }


def median_ratio(num: list[float], den: list[float]) -> float:
    """The median of per-repeat ratios (each pair measured back to back)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


RAIN_COMMON = {
    "SquaredError": "model.function.cost:SquaredError",
    "Network": "model.function.network:Network",
    "Trainer": "training.epoch:Trainer",
    "Optimizer": "training.monitor:Optimizer",
    "AugmentedFunction": "training.sgd:AugmentedFunction",
    "EquilibriumProp": "training.sgd:EquilibriumProp",
}
"""What every rain-neuromorphics side-by-side benchmark imports: attribute -> "module:name"."""


def import_exported(
    ref_dir: Path, needed: tuple[str, ...], hint: str, script: str, names: dict[str, str]
) -> tuple[types.SimpleNamespace, list[str]]:
    """Import :data:`RAIN_COMMON` and ``names`` (attribute -> ``"module:name"``, or ``"module"`` for the
    module itself) from a checkout of rain-neuromorphics/energy-based-learning in ``ref_dir``; returns them
    and what had to be stubbed. Its datasets.py (torchvision, downloads) is never imported: the benchmarks
    make their batches themselves."""
    missing = [p for p in needed if not (ref_dir / p).is_file()]
    if missing:
        raise SystemExit(
            f"--reference-dir {ref_dir}: not a checkout of rain-neuromorphics/energy-based-learning "
            f"(missing {', '.join(missing)}); {hint}"
        )
    stubs = stub_tensorboard(script)
    sys.path.insert(0, str(ref_dir))
    mods = types.SimpleNamespace()
    for attr, where in {**RAIN_COMMON, **names}.items():
        module, _, name = where.partition(":")
        obj = importlib.import_module(module)
        setattr(mods, attr, getattr(obj, name) if name else obj)
    return mods, stubs
