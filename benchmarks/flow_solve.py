"""A coupled-learning step on Stern et al.'s flow network (300 nodes, 1500 edges, 100 input edges, 3 output edges),
ours against a per-example sparse solve, side by side in one process.

Ours: ``CoupledLearning(beta=eta, variant="positive", misclassified_only=True)`` with the ``direct`` solver on the
``FlowNetwork`` that the preset ``fmnist-flow-stern`` builds: the free phase and the clamped phase each factor the
network's Hessian once and solve the whole batch as right-hand sides of that one factorisation, then an SGD step.

Baseline: the same step with the same numbers computed one example at a time, each a ``scipy.sparse.linalg.spsolve``
of that example's system (a factorisation per example and phase), as a loop over examples solves it; and, for
reference, scipy with one SuperLU factorisation per phase and all examples as right-hand sides (what Stern's notebook
does with pypardiso). The inputs are random pixel-like values in [0, 1]; the three give the same conductances to
round-off (checked). Prints one JSON line.

    .venv/bin/python benchmarks/flow_solve.py --batch 400 --steps 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import splu, spsolve

from _common import environment, load_average
from eqprop.rules import CoupledLearning
from eqprop.solvers import DirectSolver
from eqprop.train import build, load_preset


def _scipy_step(
    net,
    k: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray,
    targets: np.ndarray,
    eta: float,
    lr: float,
    per_example: bool,
) -> np.ndarray:
    """One coupled-learning step on the reduced quadratic (the same unknowns as ours), in scipy."""
    d_state = sp.csr_matrix(net.drop_state.double().numpy())  # (E, n)
    d_in = sp.csr_matrix(net.sparse_drop_input.to_dense().double().numpy())  # (E, n_in)
    n_out = targets.shape[1]
    h = (d_state.T @ sp.diags(k) @ d_state).tocsc()
    drive = d_in @ x.T  # (E, batch)
    b = -(d_state.T @ (k[:, None] * drive))  # (n, batch)
    n = h.shape[0]
    z = np.stack([spsolve(h, b[:, i]) for i in range(b.shape[1])], 1) if per_example else splu(h).solve(b)
    out = z[n - n_out :]  # (n_out, batch)
    dist = ((out.T[:, None, :] - targets[None]) ** 2).sum(-1)
    wrong = dist.argmin(1) != labels
    clamp = out + eta * (targets[labels].T - out)
    free_idx = np.arange(n - n_out)
    h_ff = h[free_idx][:, free_idx].tocsc()
    h_fo = h[free_idx][:, n - n_out :]
    rhs = b[free_idx] - h_fo @ clamp
    if per_example:
        zc = np.stack([spsolve(h_ff, rhs[:, i]) for i in range(rhs.shape[1])], 1)
    else:
        zc = splu(h_ff).solve(rhs)
    zc = np.vstack([zc, clamp])
    d_f, d_c = d_state @ z + drive, d_state @ zc + drive
    dk = 0.5 * (d_c**2 - d_f**2) / eta
    count = int(wrong.sum())
    grad = (dk * wrong[None]).sum(1) / count if count else np.zeros_like(k)
    return np.clip(k - lr * grad, *net.bounds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=400)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)
    config = load_preset("fmnist-flow-stern")
    run = build(config)
    net, cost = run.system.double(), run.cost.double()
    eta, lr = config.rule.beta, config.optimizer.lr
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, net.input_shape[0], generator=gen)
    labels = torch.randint(0, 3, (args.batch,), generator=gen)
    from eqprop import solve

    cost.calibrate(solve(net, x, DirectSolver()).state[1], labels)
    targets = cost.class_targets.numpy()
    rule = CoupledLearning(beta=eta, variant="positive", misclassified_only=True)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    k0 = net.conductances.detach().numpy().copy()
    times = {"ours": 0.0, "scipy_per_example": 0.0, "scipy_batched": 0.0}
    k_loop, k_batch = k0.copy(), k0.copy()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        rule.gradients(net, cost, DirectSolver(), x, labels, out="grad")
        opt.step()
        net.constrain_parameters()
        t1 = time.perf_counter()
        k_loop = _scipy_step(net, k_loop, x.numpy(), labels.numpy(), targets, eta, lr, per_example=True)
        t2 = time.perf_counter()
        k_batch = _scipy_step(net, k_batch, x.numpy(), labels.numpy(), targets, eta, lr, per_example=False)
        t3 = time.perf_counter()
        times["ours"] += t1 - t0
        times["scipy_per_example"] += t2 - t1
        times["scipy_batched"] += t3 - t2
    k = net.conductances.detach().numpy()
    result = {
        "benchmark": "flow_solve",
        "preset": config.name,
        "network": {
            "nodes": net.n_nodes,
            "edges": len(k),
            "unknowns": sum(v.shape[0] for v in net.variables),
        },
        "batch": args.batch,
        "steps": args.steps,
        "seconds_per_step": {name: round(t / args.steps, 5) for name, t in times.items()},
        "speed_ratio_vs_per_example": round(times["scipy_per_example"] / times["ours"], 1),
        "speed_ratio_vs_scipy_batched": round(times["scipy_batched"] / times["ours"], 2),
        "max_abs_conductance_difference": {
            "per_example": float(np.abs(k - k_loop).max()),
            "batched": float(np.abs(k - k_batch).max()),
        },
        "load_average": load_average(),
        "environment": environment(torch.device("cpu")),
    }
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
