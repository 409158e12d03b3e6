"""The README's Python example runs as written (documentation that cannot rot silently)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.usefixtures("quiet_torch")
def test_readme_python_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"## The Python API\n\n```python\n(.*?)```", text, re.S)
    assert match, "the README lost its Python API example"
    namespace: dict[str, object] = {}
    exec(compile(match.group(1), str(README), "exec"), namespace)  # our own README
    est, system = namespace["est"], namespace["system"]
    assert est.grads["system.weights.0"].shape == (1024, 784)  # type: ignore[attr-defined]
    assert namespace["eq"].state[-1].shape == (16, 10)  # type: ignore[attr-defined]
    # the one entry point with out="grad" wrote the estimate where the optimizer reads it
    assert torch.equal(system.weights[0].grad, est.grads["system.weights.0"])  # type: ignore[attr-defined]
    assert all(p.grad is not None for p in system.parameters())  # type: ignore[attr-defined]


@pytest.mark.usefixtures("quiet_torch")
def test_readme_run_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"The run is assembled in one place.*?```python\n(.*?)```", text, re.S)
    assert match, "the README lost its example of the run"
    namespace: dict[str, object] = {"print": lambda *a: None}
    exec(compile(match.group(1), str(README), "exec"), namespace)  # our own README
    from eqprop import EqProp
    from eqprop.train import build

    run, state = namespace["run"], namespace["state"]
    assert run.rule == EqProp(beta=0.2, variant="centered")  # type: ignore[attr-defined]
    again = build(namespace["config"])  # type: ignore[arg-type]
    again.restore(state)  # type: ignore[arg-type]
    for a, b in zip(run.system.parameters(), again.system.parameters(), strict=True):  # type: ignore[attr-defined]
        assert torch.equal(a, b)


@pytest.mark.usefixtures("quiet_torch")
def test_readme_resistive_network_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"## Resistive networks.*?```python\n(.*?)```", text, re.S)
    assert match, "the README lost its resistive-network example"
    namespace: dict[str, object] = {"print": lambda *a: None}
    exec(compile(match.group(1), str(README), "exec"), namespace)  # our own README
    circuit, eq = namespace["circuit"], namespace["eq"]
    x = namespace["torch"].tensor([[1.0], [-1.0]])  # type: ignore[attr-defined]
    v = circuit.node_potentials(x, eq.state)  # type: ignore[attr-defined]
    # x = 1: the 0.1 A injected at node 3 returns through the 1 S resistor to the source: V2 = 1.1;
    # x = −1: the diode from ground holds node 2 at 0
    assert abs(float(v[0, 2]) - 1.1) < 1e-5 and float(v[1, 2]) == 0.0
    assert float(circuit.kcl_residual(x, eq.state).max()) < 1e-5  # type: ignore[attr-defined]


@pytest.mark.usefixtures("quiet_torch")
def test_readme_lagrangian_example_runs() -> None:
    """The custom Lagrangian system of the README trains by the echo, and the echo is BPTT's gradient."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"## Learning through time in physical dynamics.*?```python\n(.*?)```", text, re.S)
    assert match, "the README lost its Lagrangian example"
    namespace: dict[str, object] = {}
    exec(compile(match.group(1), str(README), "exec"), namespace)  # our own README
    echo, bptt, system = namespace["echo"], namespace["bptt"], namespace["system"]
    for name, g in bptt.grads.items():  # type: ignore[attr-defined]
        e = echo.grads[name]  # type: ignore[attr-defined]
        assert torch.allclose(e, g, rtol=1e-2, atol=1e-4 * float(g.abs().max())), name
    assert all(p.grad is not None for p in system.parameters())  # type: ignore[attr-defined]


@pytest.mark.usefixtures("quiet_torch")
def test_readme_analog_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"### Real circuit elements.*?```python\n(.*?)```", text, re.S)
    assert match, "the README lost its example of the analog network"
    namespace: dict[str, object] = {"print": lambda *a: None}
    exec(compile(match.group(1), str(README), "exec"), namespace)  # our own README
    net, x, eq = namespace["net"], namespace["x"], namespace["eq"]
    assert float(net.kcl_residual(x, eq.state).max()) < 1e-5  # type: ignore[attr-defined]
    assert bool((net.dissipated_power(x, eq.state) > 0).all())  # type: ignore[attr-defined]


@pytest.mark.usefixtures("quiet_torch")
def test_readme_quantum_example_runs() -> None:
    """The quantum network of the README learns the Ising phase, and EqProp at β 0.1 points where the exact gradient
    (linear response) does."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"## Quantum Equilibrium Propagation.*?```python\n(.*?)```", text, re.S)
    assert match, "the README lost its quantum example"
    namespace: dict[str, object] = {}
    exec(compile(match.group(1), str(README), "exec"), namespace)  # our own README
    est, exact = namespace["est"], namespace["exact"]
    e, g = est.grads["system.couplings"], exact.grads["system.couplings"]  # type: ignore[attr-defined]
    assert e.shape == (15,) and float(e @ g / (e.norm() * g.norm())) > 0.99  # 5 fields, 10 couplings
    assert float(namespace["accuracy"]) >= 0.85  # type: ignore[arg-type]
