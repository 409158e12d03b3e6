"""Side by side with Laborieux et al.'s EqProp code (Laborieux-Axel/Equilibrium-Propagation): its MLP P_MLP
(EqProp; with ``hard_sigmoid``, ``--algo ep``, or its ``my_sigmoid``, ``--algo ep-sig``), VF_MLP (vector-field
EqProp) and its continual EqProp ("CEP"), against our fmnist-ep-mlp, fmnist-ep-mlp-sig, fmnist-vf-mlp and
fmnist-cep-mlp presets, its continual VF (VF_MLP with ``--alg CEP``) against fmnist-cvf-mlp, and its P_CNN and
VF_CNN (softmax readout, ``--thirdphase``) against fmnist-cnn and fmnist-vf-cnn run with its synchronous dynamics,
on real Fashion-MNIST.

The reference is imported from a checkout of its public repository at the commit named in ``_common.REFERENCES``,
in a folder LABORIEUX_REF outside this repository (never vendored here):

    git clone https://github.com/Laborieux-Axel/Equilibrium-Propagation $LABORIEUX_REF && \\
        git -C $LABORIEUX_REF checkout 93660ed6c5b0ec07978b674a69c169ce32e8cd5f
    .venv/bin/python benchmarks/laborieux_reference.py --reference-dir $LABORIEUX_REF --algo ep

Its ``model_utils.py`` imports torchvision at the top for its data loaders, which this script does not use: when
torchvision is not installed, an empty module stands in for it (the JSON says so). Its models are built by their
own classes (``P_MLP`` / ``VF_MLP`` with ``hard_sigmoid`` = clip(x, 0, 1), its MSE loss); its training step is the
sequence of calls its ``train`` function makes for ``--alg EP`` (``--alg CEP``): free phase ``model(x, y, neurons,
T1)``, nudged phase ``model(..., T2, beta)`` (one step at a time for CEP), ``compute_syn_grads`` and
``optimizer.step()`` (after each step for CEP), with Adam per layer as its ``main.py`` builds it. The sign of the
one-sided nudge (its ``--random-sign``) is drawn by this script, and the same signs drive ours (ours draws them
from torch's global generator, which the script seeds and replays).

Both start from the same weights (the reference's ``nn.Linear`` initialisation, copied into ours), see the same
batches in the same order, and alternate batch by batch in one process (ours, reference, ours, ...), each step
timed on its own: the ratio of the summed times is measured under the same machine conditions. The JSON reports
the test accuracy of both after the batches given (``--batches 0``: one epoch), the examples/s, their ratio, and
how far the weights are apart after the first 5 steps and at the end (the same dynamics in float32: they differ
by round-off, which the training then amplifies).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch

from _common import environment, load_average, reference_dir, reference_howto, reference_record
from eqprop.train import apply_overrides, build, load_data, load_preset

PRESETS = {
    "ep": "fmnist-ep-mlp",
    "vf": "fmnist-vf-mlp",
    "cep": "fmnist-cep-mlp",
    "cvf": "fmnist-cvf-mlp",
    "cnn": "fmnist-cnn",
    "vf-cnn": "fmnist-vf-cnn",
    "ep-sig": "fmnist-ep-mlp-sig",
}
CNNS = ("cnn", "vf-cnn")
CNN_SETS = [  # fmnist-cnn with his synchronous dynamics (gradient flow of step 1) instead of odd-even sweeps
    'solver.kind="gradient_flow"',
    "solver.step_size=1.0",
    'nudged_solver.kind="gradient_flow"',
    "nudged_solver.step_size=1.0",
]
CONTINUAL = ("cep", "cvf")


def _import_reference(ref_dir: Path, hint: str) -> tuple[types.ModuleType, list[str]]:
    if not (ref_dir / "model_utils.py").is_file():
        raise SystemExit(
            f"--reference-dir {ref_dir}: no model_utils.py, not a checkout of the reference; {hint}"
        )
    stubs = []
    if importlib.util.find_spec("torchvision") is None and "torchvision" not in sys.modules:
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        stubs.append(
            "torchvision (not installed; an empty module stands in for model_utils' import: its data "
            "loaders are not used)"
        )
    sys.path.insert(0, str(ref_dir))
    return importlib.import_module("model_utils"), stubs


def _copy_weights(
    theirs: torch.nn.Module, ours: torch.nn.Module, cost: torch.nn.Module | None = None
) -> None:
    """Our parameters := theirs (weights.j, biases.j from synapses[j]; feedback.k from B_syn[k-1], transposed; with
    a softmax readout, its last synapse into the cost's readout)."""
    with torch.no_grad():
        synapses = list(theirs.synapses)
        if getattr(theirs, "softmax", False):
            *synapses, readout = synapses
            assert cost is not None
            cost.weight.copy_(readout.weight)
            cost.bias.copy_(readout.bias)
        for j, syn in enumerate(synapses):
            ours.weights[j].copy_(syn.weight)
            ours.biases[j].copy_(syn.bias)
        for k, b in enumerate(getattr(theirs, "B_syn", []), start=1):
            ours.feedback[str(k)].copy_(_feedback(theirs, b))


def _weights(theirs: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    synapses = list(theirs.synapses)[:-1] if getattr(theirs, "softmax", False) else theirs.synapses
    for j, syn in enumerate(synapses):
        out[f"weights.{j}"], out[f"biases.{j}"] = syn.weight, syn.bias
    for k, b in enumerate(getattr(theirs, "B_syn", []), start=1):
        out[f"feedback.{k}"] = _feedback(theirs, b)
    return out


def _feedback(theirs: torch.nn.Module, b: torch.nn.Module) -> torch.Tensor:
    """A backward synapse in our layout: VF_MLP's map layer k+1 down to layer k (transposed here); VF_CNN's map
    layer k up to k+1 like the forward ones (conv or dense), as ours do."""
    return b.weight if hasattr(theirs, "kernels") else b.weight.t()


def _distance(ours: torch.nn.Module, theirs: torch.nn.Module) -> dict[str, float]:
    """The largest |difference| of any parameter, and the largest |parameter| for scale."""
    with torch.no_grad():
        theirs_w = _weights(theirs)
        diffs = {n: float((p - theirs_w[n]).abs().max()) for n, p in ours.named_parameters()}
        scale = max(float(w.abs().max()) for w in theirs_w.values())
    worst = max(diffs, key=diffs.__getitem__)
    return {"max_abs_diff": diffs[worst], "where": worst, "max_abs": scale}


class Reference:
    """The reference's training step for one batch, as its ``train`` function performs it."""

    def __init__(
        self, mu: types.ModuleType, model: torch.nn.Module, algo: str, config: Any, sgd: float | None = None
    ) -> None:
        self.mu, self.model, self.algo = mu, model, algo
        self.T1, self.T2 = config.solver.iterations, config.nudged_solver.iterations
        self.beta = config.rule.beta
        self.centered = getattr(config.rule, "variant", "positive") == "centered" and algo not in CONTINUAL
        self.softmax = getattr(model, "softmax", False)
        loss = torch.nn.CrossEntropyLoss if self.softmax else torch.nn.MSELoss
        self.criterion = loss(reduction="none")
        lr = config.optimizer.lr if sgd is None else sgd
        groups = [{"params": s.parameters(), "lr": lr} for s in model.synapses]
        groups += [{"params": b.parameters(), "lr": lr} for b in getattr(model, "B_syn", [])]
        self.optimizer = torch.optim.Adam(groups) if sgd is None else torch.optim.SGD(groups)

    def step(self, x: torch.Tensor, y: torch.Tensor, sign: float) -> None:
        mu, model, crit = self.mu, self.model, self.criterion
        betas = (0.0, sign * self.beta)
        neurons = model.init_neurons(x.size(0), x.device)
        neurons = model(x, y, neurons, self.T1, beta=0.0, criterion=crit)
        neurons_1 = mu.copy(neurons)
        if self.algo in CONTINUAL:
            for _ in range(self.T2):
                neurons = model(x, y, neurons, 1, beta=betas[1], criterion=crit)
                neurons_2 = mu.copy(neurons)
                model.compute_syn_grads(x, y, neurons_1, neurons_2, betas, crit)
                self.optimizer.step()
                neurons_1 = mu.copy(neurons)
            return
        neurons = model(x, y, neurons, self.T2, beta=betas[1], criterion=crit)
        neurons_2 = mu.copy(neurons)
        if self.centered:  # its --thirdphase: the -beta phase from the free state, then the symmetric update
            neurons = model(x, y, mu.copy(neurons_1), self.T2, beta=-betas[1], criterion=crit)
            neurons_3 = mu.copy(neurons)
            if isinstance(model, mu.VF_CNN) and not model.same_update:  # its VF update, from the free state
                model.compute_syn_grads(
                    x, y, neurons_1, neurons_2, (betas[1], -betas[1]), crit, neurons_3=neurons_3
                )
            else:
                model.compute_syn_grads(x, y, neurons_2, neurons_3, (betas[1], -betas[1]), crit)
        else:
            model.compute_syn_grads(x, y, neurons_1, neurons_2, betas, crit)
        self.optimizer.step()

    def accuracy(self, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
        correct = 0
        for i in range(0, len(x), batch):
            xb, yb = x[i : i + batch], y[i : i + batch]
            neurons = self.model.init_neurons(xb.size(0), xb.device)
            neurons = self.model(xb, yb, neurons, self.T1, beta=0.0, criterion=self.criterion)
            with torch.no_grad():
                out = neurons[-1].view(xb.size(0), -1)
                scores = self.model.synapses[-1](out) if self.softmax else out
            correct += int((scores.argmax(1) == yb).sum())
        return correct / len(x)


FAMILIES = {  # aten kernels by family, matched on the op name (self times: no double counting)
    "conv": ("conv", "mkldnn_convolution", "slow_conv"),
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"),
}


def _profile(step: Any, batches: list) -> dict[str, float]:
    """Seconds of CPU self time per kernel family over ``batches`` (each ``step(x, y)``), the time inside
    ``optimizer.step()`` (all its kernels), and the total wall time (inflated by the profiler's per-op cost)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for x, y in batches:
            step(x, y)
        total = time.perf_counter() - t0
    out = dict.fromkeys((*FAMILIES, "optimizer"), 0.0)
    for event in prof.key_averages():
        if event.key.startswith("Optimizer.step#"):  # torch's own label of every optimizer step
            out["optimizer"] += event.cpu_time_total / 1e6
            continue
        for family, names in FAMILIES.items():
            if any(name in event.key for name in names):
                out[family] += event.self_cpu_time_total / 1e6
                break
    return {**{k: round(v, 4) for k, v in out.items()}, "total": round(total, 4)}


def _our_accuracy(run: Any, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    import eqprop

    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            eq = eqprop.solve(run.system, x[i : i + batch], run.solver)
            correct += int((run.cost.predict(eq.state).argmax(1) == y[i : i + batch]).sum())
    return correct / len(x)


def _equivalence(
    mu: types.ModuleType, theirs: torch.nn.Module, run: Any, algo: str, batches: list, lr: float
) -> dict[str, Any]:
    """Copies of both models trained ``len(batches)`` steps by plain SGD at ``lr``, nudged at +beta: the same
    dynamics and rule in float32 leave them round-off apart. (Adam, which normalises each step, turns round-off
    in a near-zero gradient into a step of size lr: the main run's weights differ by about lr per step there.)"""
    theirs = copy.deepcopy(theirs)
    ours, cost = copy.deepcopy(run.system), copy.deepcopy(run.cost)
    ref = Reference(mu, theirs, algo, run.config, sgd=lr)
    opt = torch.optim.SGD([*ours.parameters(), *cost.parameters()], lr=lr)
    rule = dataclasses.replace(run.rule, random_sign=False) if hasattr(run.rule, "random_sign") else run.rule
    for x, y in batches:
        est = rule.gradients(
            ours, cost, run.solver, x, y, nudged_solver=run.nudged_solver, out="grad", apply=opt.step
        )
        if not est.applied:
            opt.step()
        ref.step(x, y, 1.0)
    return {"optimizer": f"SGD({lr})", "steps": len(batches), **_distance(ours, theirs)}


def main() -> None:
    hint = reference_howto("laborieux", "$LABORIEUX_REF")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-dir", type=Path)
    p.add_argument("--algo", choices=sorted(PRESETS), default="ep")
    p.add_argument("--batches", type=int, default=0, help="training batches (0: one epoch)")
    p.add_argument("--fixed-sign", action="store_true", help="always nudge +beta (no random sign)")
    p.add_argument(
        "--equivalence-lr", type=float, default=0.001, help="SGD rate of the 5-step equivalence check"
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after the run, profile N more batches of each and report the time per kernel family, and the "
        "speed-up an implementation doing only our convolutions, matmuls and optimizer kernels would reach",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    ref_dir = reference_dir(p, args.reference_dir, hint)
    torch.set_num_threads(args.threads)
    mu, stubs = _import_reference(ref_dir, hint)

    sets = ["rule.random_sign=false"] if args.fixed_sign and args.algo not in CONTINUAL else []
    if args.algo in CONTINUAL:  # one-sided: the reference scales its centered C-EP phases by 1/β and 1/2β
        sets += ['rule.variant="positive"']
    if args.algo in CNNS:
        sets += CNN_SETS
    config = apply_overrides(load_preset(PRESETS[args.algo]), [*sets, f"train.seed={args.seed}"])
    run = build(config)
    data = load_data(config, run.device, run.dtype, validation=False)
    torch.manual_seed(args.seed)
    activation = mu.my_sigmoid if args.algo == "ep-sig" else mu.hard_sigmoid
    if args.algo in CNNS:
        model_cls = mu.VF_CNN if args.algo == "vf-cnn" else mu.P_CNN
        s = config.system
        theirs = model_cls(
            s.input_shape[1],
            [s.input_shape[0], *s.channels],
            [s.kernel_size] * len(s.channels),
            [1] * len(s.channels),
            [*s.dense, 10],
            [torch.nn.MaxPool2d(2, stride=2) for _ in s.channels],
            [s.padding] * len(s.channels),
            activation=mu.hard_sigmoid,
            softmax=True,
        )
    else:
        model_cls = mu.VF_MLP if args.algo in ("vf", "cvf") else mu.P_MLP
        theirs = model_cls(list(config.system.sizes), activation=activation)
    _copy_weights(theirs, run.system, run.cost)
    first = [
        (
            data.train.x[i * config.train.batch_size : (i + 1) * config.train.batch_size],
            data.train.y[i * config.train.batch_size : (i + 1) * config.train.batch_size],
        )
        for i in range(5)
    ]
    equivalence = _equivalence(mu, theirs, run, args.algo, first, lr=args.equivalence_lr)
    reference = Reference(mu, theirs, args.algo, config)

    n = len(data.train)
    bs = config.train.batch_size
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + 1))
    steps = n // bs if args.batches <= 0 else min(args.batches, n // bs)
    random_sign = getattr(config.rule, "random_sign", False)
    torch.manual_seed(1000 + args.seed)  # the signs our rule will draw, replayed for the reference
    signs = [(-1.0 if bool(torch.randint(0, 2, ())) else 1.0) if random_sign else 1.0 for _ in range(steps)]
    torch.manual_seed(1000 + args.seed)
    ours_s = theirs_s = 0.0
    early = None

    def ours_step(x: torch.Tensor, y: torch.Tensor) -> None:
        est = run.rule.gradients(
            run.system,
            run.cost,
            run.solver,
            x,
            y,
            nudged_solver=run.nudged_solver,
            out="grad",
            apply=lambda: (run.optimizer.step(), run.system.constrain_parameters()),
        )
        if not est.applied:
            run.optimizer.step()

    for i in range(steps):
        pick = order[i * bs : (i + 1) * bs]
        x, y = data.train.x[pick], data.train.y[pick]
        t0 = time.perf_counter()
        ours_step(x, y)
        t1 = time.perf_counter()
        reference.step(x, y, signs[i])
        t2 = time.perf_counter()
        ours_s += t1 - t0
        theirs_s += t2 - t1
        if i + 1 == 5:
            early = _distance(run.system, theirs)
    examples = steps * bs
    result = {
        "benchmark": "laborieux_reference",
        "algo": args.algo,
        "preset": config.name,
        "overrides": sets,
        "reference": {
            **reference_record("laborieux", ref_dir),
            "stubbed": stubs,
            "model": f"{model_cls.__name__}({config.system.describe()}, activation={activation.__name__})",
        },
        "settings": {
            "T1": reference.T1,
            "T2": reference.T2,
            "beta": reference.beta,
            "random_sign": random_sign,
            "batch": bs,
            "optimizer": f"Adam({config.optimizer.lr}) per layer",
        },
        "batches": steps,
        "examples": examples,
        "test_accuracy": {
            "ours": _our_accuracy(run, data.test.x, data.test.y),
            "reference": reference.accuracy(data.test.x, data.test.y),
        },
        "examples_per_s": {"ours": round(examples / ours_s, 1), "reference": round(examples / theirs_s, 1)},
        "speed_ratio": round(theirs_s / ours_s, 2),
        "equivalence": equivalence,
        "weights_after_5_steps": early,
        "weights_at_end": _distance(run.system, theirs),
        "load_average": load_average(),
        "environment": environment(run.device),
    }
    if args.profile > 0:  # our kernel time per batch, against the reference's time per batch measured above
        picks = [(steps + i) % (n // bs) for i in range(args.profile)]
        batches = [
            (data.train.x[order[i * bs : (i + 1) * bs]], data.train.y[order[i * bs : (i + 1) * bs]])
            for i in picks
        ]
        mine = _profile(ours_step, batches)
        floor = (mine["conv"] + mine["matmul"] + mine["optimizer"]) / args.profile
        result["profile"] = {
            "batches": args.profile,
            "ours_seconds": mine,
            "ours_kernel_seconds_per_batch": round(floor, 5),
            "reference_seconds_per_batch": round(theirs_s / steps, 5),
            "ceiling": round(theirs_s / steps / floor, 2),
            "ceiling_means": "the reference's time per batch (in the run above) over the time our steps spend in "
            "convolution, matmul and optimizer kernels alone (profiled): the speed ratio if nothing else of ours "
            "took any time",
        }
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
