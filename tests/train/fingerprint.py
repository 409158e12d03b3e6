"""Fingerprints of the weights every preset family reaches after 20 training steps of `eqprop train`'s loop.

Run as a script, in a fresh process (``python tests/train/fingerprint.py [--write]``): it trains each case of
:data:`CASES` for 2 epochs of 10 batches on a seeded fake dataset and prints (or writes to
``fingerprints.json``) the SHA-256 of the system's and the cost's ``state_dict`` bytes. The stored file was
computed *before* the run layer was reshaped (issue 10); ``test_fingerprints.py`` checks that the code of today
still reaches the same weights, bit for bit.

Bit-exact results across x86-64 CPUs need the same kernels everywhere: the process pins one thread, ATen's
portable (non-SIMD-dispatched) kernels, MKL's conditional numerical reproducibility, and turns oneDNN and
NNPACK off. These settings must be made before torch is imported, hence a separate process.
"""

from __future__ import annotations

import os

os.environ.update(
    {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "ATEN_CPU_CAPABILITY": "default",  # the same vector width (and reduction order) on every CPU
        "MKL_CBWR": "COMPATIBLE",  # MKL: the same code path on every x86-64 CPU
    }
)

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/helpers.py

from helpers import make_fake_cifar, make_fake_fashion_mnist  # noqa: E402

STORED = HERE / "fingerprints.json"
STEPS_PER_EPOCH = 10
EPOCHS = 2

SMALL_DHN = ["system.sizes=[784,64,10]"]
SMALL_DCHN = ["system.channels=[4,8,8,8]", "train.batch_size=16"]

CASES: dict[str, tuple[str, list[str]]] = {
    # one case per shipped preset, shrunk where a step would take more than a fraction of a second
    "fmnist-quick": ("fmnist-quick", []),
    "fmnist-dhn1h": ("fmnist-dhn1h", SMALL_DHN),
    "mnist-dhn1h": ("mnist-dhn1h", SMALL_DHN),
    "fmnist-dhn2h": ("fmnist-dhn2h", ["system.sizes=[784,48,48,10]"]),
    "fmnist-dhn3h": ("fmnist-dhn3h", ["system.sizes=[784,32,32,32,10]"]),
    "fmnist-aeqprop-1h": ("fmnist-aeqprop-1h", ["system.sizes=[784,96,10]"]),
    "fmnist-aeqprop-1h-eqprop": ("fmnist-aeqprop-1h-eqprop", ["system.sizes=[784,96,10]"]),
    "fmnist-aeqprop-conv": ("fmnist-aeqprop-conv", ["system.channels=[4,8]"]),
    # fmnist-cnn came after issue 10: its stored digest is what the old code (41537f5) reaches given this preset file
    # (whose Adam rate was then 1e-3, pinned here)
    "fmnist-cnn": ("fmnist-cnn", ["system.channels=[4,8]", "system.dense=[16]", "optimizer.lr=0.001"]),
    "fmnist-dchn": ("fmnist-dchn", SMALL_DCHN),
    "cifar10-dchn": ("cifar10-dchn", SMALL_DCHN),
    "cifar100-dchn": ("cifar100-dchn", SMALL_DCHN),
    "drn-xs": ("drn-xs", []),
    "drn-1h": ("drn-1h", ["system.sizes=[784,64,10]"]),
    "drn-2h": (  # the preset's SGD before it moved to Adam (issue 16)
        "drn-2h",
        ["system.sizes=[784,48,48,10]", "optimizer.kind=sgd", "optimizer.lr=[0.002,0.006,0.018]"],
    ),
    "drn-3h": (  # beta 2 needs an output curvature > 2; the preset's SGD before it moved to Adam (issue 16)
        "drn-3h",
        ["system.sizes=[784,256,256,256,10]", "optimizer.kind=sgd", "optimizer.lr=[0.005,0.02,0.08,0.005]"],
    ),
    # every rule family and the comparative study's names, on the small DHN-1H
    "rule-CL": ("fmnist-quick", [*SMALL_DHN, "rule.kind=contrastive"]),
    "rule-PEP": ("fmnist-quick", [*SMALL_DHN, "rule.variant=positive"]),
    "rule-NEP": ("fmnist-quick", [*SMALL_DHN, "rule.variant=negative"]),
    "rule-PCpL": ("fmnist-quick", [*SMALL_DHN, "rule.kind=coupled", "rule.variant=positive"]),
    "rule-NCpL": ("fmnist-quick", [*SMALL_DHN, "rule.kind=coupled", "rule.variant=negative"]),
    "rule-CCpL": ("fmnist-quick", [*SMALL_DHN, "rule.kind=coupled", "rule.variant=centered"]),
    "rule-TBP": ("fmnist-quick", [*SMALL_DHN, "rule.kind=backprop", "rule.steps=15"]),
    "rule-BPTT": ("fmnist-quick", [*SMALL_DHN, "rule.kind=backprop"]),
    "rule-RBP": ("fmnist-quick", [*SMALL_DHN, "rule.kind=implicit"]),
    # the other solver, optimizer, schedule, cost and loop options
    "gradient-flow": ("fmnist-quick", [*SMALL_DHN, "solver.kind=gradient_flow", "solver.iterations=40"]),
    "solver-tol": ("fmnist-quick", [*SMALL_DHN, "solver.tol=1e-4", "solver.iterations=60"]),
    "nudged-solver": ("fmnist-quick", [*SMALL_DHN, "nudged_solver.iterations=7"]),
    "adam-cosine": (
        "fmnist-quick",
        [*SMALL_DHN, "optimizer.kind=adam", "optimizer.lr=0.001", "schedule.kind=cosine"],
    ),
    "sgd-momentum": (
        "fmnist-quick",
        [*SMALL_DHN, "optimizer.momentum=0.9", "optimizer.weight_decay=0.0001", "optimizer.lr_biases=0.01"],
    ),
    "readout": ("fmnist-quick", [*SMALL_DHN, "cost.kind=cross_entropy_readout", "optimizer.readout_lr=0.02"]),
    "rho-form": ("fmnist-quick", [*SMALL_DHN, "system.energy_form=rho"]),
    "warm-start": ("fmnist-quick", [*SMALL_DHN, "train.warm_start=true", "solver.iterations=3"]),
    "validation": ("fmnist-quick", [*SMALL_DHN, "data.validation=16"]),
    "augment": ("fmnist-aeqprop-conv", ["system.channels=[4,8]", "data.crop_padding=2", "data.flip=true"]),
    "aeqprop-flow": (
        "fmnist-aeqprop-1h",
        ["system.sizes=[784,96,10]", "rule.parameter_relaxation=flow", "rule.phase2_start=phase1"],
    ),
    "float64": ("fmnist-quick", [*SMALL_DHN, "train.dtype=float64"]),
}
"""label -> (preset, overrides). Every case trains 2 epochs of 10 batches (the schedule steps in between)."""

V1_RUNS = HERE / "data" / "v1"
"""Run folders written by the code before issue 10 (checkpoint format 1; 1 epoch of a 784-8-10 DHN by Adam, a
784-8-10 AEqprop net in its optimistic mode, a conv AEqprop net with flips) on ``make_fake_fashion_mnist(n_train=64,
n_test=16)``: resuming each for a second epoch must reach the weights the old code reached."""


def _data(root: Path, dataset: str, batch: int, validation: int) -> Path:
    n_train, n_test = STEPS_PER_EPOCH * batch + validation, 24
    folder = root / f"{dataset}-{n_train}"
    if folder.exists():
        return folder
    if dataset in ("cifar10", "cifar100"):
        return make_fake_cifar(folder, dataset, n=n_train // 5, n_test=n_test, seed=3)
    return make_fake_fashion_mnist(folder, n_train=n_train, n_test=n_test, seed=3)


def fingerprint(label: str, root: Path) -> dict[str, str]:
    """Train case ``label`` for 20 steps in a fresh run folder under ``root``; the digests of its weights."""
    from eqprop.train import apply_overrides, fit, load_preset
    from eqprop.train.checkpoint import load_checkpoint

    preset, sets = CASES[label]
    config = apply_overrides(load_preset(preset), sets)
    validation = int(config.data.validation)
    data = _data(root / "data", config.data.dataset, config.train.batch_size, validation)
    config = apply_overrides(
        config,
        [
            f'data.data_dir="{data}"',
            f"train.epochs={EPOCHS}",
            "train.threads=1",
            "train.eval_batch_size=24",
        ],
    )
    out = root / "runs" / label
    fit(config, out, progress=False)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    return {part: _digest(ckpt[part]) for part in ("system", "cost")}


def _digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state_dict: names, dtypes, shapes and raw bytes, in order."""
    h = hashlib.sha256()
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def resume_v1(name: str, root: Path) -> dict[str, str]:
    """Copy the format-1 run ``name`` under ``root``, resume it for a second epoch through the command line, and
    return the digest of its weights."""
    import shutil

    from eqprop.cli import main as eqprop_main
    from eqprop.train.checkpoint import load_checkpoint

    data = (
        make_fake_fashion_mnist(root / "v1-data", n_train=64, n_test=16)
        if not (root / "v1-data").exists()
        else root / "v1-data"
    )
    out = root / "v1" / name
    shutil.copytree(V1_RUNS / name, out)
    status = eqprop_main(
        ["train", "--resume", str(out), "--epochs", "2", "--data-dir", str(data), "--no-progress"]
    )
    assert status == 0, f"resuming {name} exited with {status}"
    ckpt = load_checkpoint(out / "checkpoint.pt")
    return {part: _digest(ckpt[part]) for part in ("system", "cost")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"store the fingerprints in {STORED.name}")
    parser.add_argument(
        "--merge", action="store_true", help=f"with --write: update these cases in {STORED.name}"
    )
    parser.add_argument("cases", nargs="*", help="labels to run (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # oneDNN picks kernels by CPU: use ATen's and MKL's instead
    torch.backends.nnpack.set_flags(False)
    labels = args.cases or [*CASES, *(f"resume-v1-{p.name}" for p in sorted(V1_RUNS.iterdir()))]
    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label in labels:
            began = time.perf_counter()
            if label.startswith("resume-v1-"):
                result[label] = resume_v1(label.removeprefix("resume-v1-"), Path(tmp))
            else:
                result[label] = fingerprint(label, Path(tmp))
            print(f"{label}: {time.perf_counter() - began:.1f} s", file=sys.stderr)
    if args.write:
        stored = json.loads(STORED.read_text(encoding="utf-8")) if args.merge else {}
        STORED.write_text(json.dumps({**stored, **result}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
