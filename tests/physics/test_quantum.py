"""Quantum EqProp: Pauli Hamiltonians, ground states, and EqProp / linear response against the exact gradient."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

from eqprop import BackpropThroughSolver, EqProp, ImplicitDiff, LinearResponse, SquaredError, solve
from eqprop.data import load_dataset
from eqprop.data.quantum_phases import ising_chain, phase_recognition
from eqprop.errors import ConfigError
from eqprop.solvers.ground_state import GroundState, exact_gradient, hamiltonian_matrix, linear_response
from eqprop.systems.base import EnergySystem
from eqprop.systems.quantum import (
    ObservableCost,
    QuantumSystem,
    ShotNoise,
    SparseOperator,
    as_complex,
    check_memory,
    measure,
    pauli_string,
    pauli_sum,
    transverse_ising_network,
)
from eqprop.train import build, config_from_dict
from helpers import PROPERTY, make_hopfield

PAULI = {
    "I": np.eye(2),
    "X": np.array([[0.0, 1.0], [1.0, 0.0]]),
    "Y": np.array([[0.0, -1j], [1j, 0.0]]),
    "Z": np.diag([1.0, -1.0]),
}


def _kron(label: str) -> np.ndarray:
    return reduce(np.kron, [PAULI[c] for c in label])


def _random_system(n: int, seed: int, *, complex_: bool = True, batch: int = 3):
    """Random Pauli terms in H₀, two input operators, six single-string couplings; with ``complex_`` a Y in H₀
    (and Y letters everywhere) makes H complex Hermitian. Three classes of observables. float64."""
    rng = np.random.default_rng(seed)
    letters = list("IXYZ" if complex_ else "IXZ")

    def label() -> str:
        return "".join(rng.choice(letters, n))

    base = [(float(rng.normal()), label()) for _ in range(3 * n)] + [(-0.7, {q: "X"}) for q in range(n)]
    if complex_:
        base.append((0.6, {0: "Y", 1: "Z"}))
    inputs = [[(float(rng.normal()), label()) for _ in range(2)] for _ in range(2)]
    couplings = [label() for _ in range(6)]
    gen = torch.Generator().manual_seed(seed)
    net = QuantumSystem(n, base=base, inputs=inputs, couplings=couplings, init_scale=0.5, generator=gen)
    cost = ObservableCost(
        [[(1.0, {0: "Z"}), (0.5, {1: "X"})], [(1.0, {1: "Z"})], [(0.3, "X" * n), (-0.4, {0: "Z", 1: "Z"})]], n
    )
    x = torch.randn(batch, 2, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (batch,), generator=gen)
    return net, cost, x, y


def _fidelity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    pa, pb = as_complex(a), as_complex(b)
    return (pa.conj() * pb).sum(1).abs() ** 2 / ((pa.abs() ** 2).sum(1) * (pb.abs() ** 2).sum(1))


# -- the Pauli builder ------------------------------------------------------------------------------------------
@PROPERTY
@given(
    labels=st.lists(st.text(alphabet="IXYZ", min_size=5, max_size=5), min_size=1, max_size=4),
    coefs=st.lists(st.floats(-2, 2, allow_nan=False), min_size=4, max_size=4),
)
def test_pauli_builder_matches_kronecker_products(labels: list[str], coefs: list[float]) -> None:
    """Bit tricks == Kronecker chains of the 2×2 matrices (qubit 0 first), for single strings and sums; float64
    exactly when no element is complex; the {qubit: letter} form names the same string."""
    for label, c in zip(labels, coefs, strict=False):
        m = pauli_string(label, c)
        assert sp.isspmatrix_csr(m) and m.shape == (32, 32)
        assert np.abs(m.toarray() - c * _kron(label)).max() < 1e-15
        assert (m.dtype == np.float64) == (label.count("Y") % 2 == 0 or c == 0)
        as_dict = {q: p for q, p in enumerate(label) if p != "I"}
        assert np.array_equal(pauli_sum([(c, as_dict)], 5).toarray(), m.toarray())
    terms = list(zip(coefs, labels, strict=False))
    dense = sum(c * _kron(label) for c, label in terms)
    assert np.abs(pauli_sum(terms, 5).toarray() - dense).max() < 1e-14


def test_operators_round_trip_and_act(gen: torch.Generator) -> None:
    """A matrix regrouped by flip mask is the same matrix; ``matvec`` and ``expectation`` agree with dense algebra;
    arithmetic merges strings."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 16)) + 1j * rng.normal(size=(16, 16))
    a = a + a.conj().T
    op = SparseOperator.from_matrix(a)
    assert np.abs(op.to_dense() - a).max() < 1e-15 and op.strings is None
    assert np.abs(SparseOperator.from_matrix(sp.csr_matrix(a)).to_sparse().toarray() - a).max() < 1e-15
    v = rng.normal(size=16) + 1j * rng.normal(size=16)
    assert np.abs(op.matvec(v) - a @ v).max() < 1e-12
    assert abs(op.expectation(v) - (v.conj() @ a @ v).real / (v.conj() @ v).real) < 1e-12
    z0 = SparseOperator.from_terms([(1.0, "ZIII")], 4)
    x1 = SparseOperator.from_terms([(1.0, "IXII")], 4)
    s = 2.0 * z0 - x1 + z0
    assert s.labels() == [(3 + 0j, "ZIII"), (-1 + 0j, "IXII")]  # ordered by flip mask
    assert np.abs(s.to_dense() - (3 * _kron("ZIII") - _kron("IXII"))).max() < 1e-15


def test_non_hermitian_and_too_many_qubits_are_refused() -> None:
    with pytest.raises(ConfigError, match="couplings\\[0\\] is not Hermitian"):
        QuantumSystem(2, inputs=[], couplings=[(1j, "ZI")])
    raising = sp.csr_matrix(np.array([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ConfigError, match="base is not Hermitian: max \\|A − A†\\| = 1"):
        QuantumSystem(1, inputs=[], couplings=["Z"], base=raising)
    with pytest.raises(ConfigError, match="Hermitian"):
        ObservableCost([(1.0, "Z"), [(1.0, "X"), (1j, "Y")]], 1)
    with pytest.raises(
        ConfigError, match=r"15 qubits is over the limit of 14 .*2\^15 × 16 B = 512\.0 KiB"
    ) as err:
        QuantumSystem(15, inputs=[], couplings=["Z" * 15])
    assert "max_qubits=15" in (err.value.hint or "")
    with pytest.raises(ConfigError, match="2\\^15 × 16 B"):
        pauli_string("X" * 15)
    # 2^30 amplitudes: 16 GiB per vector, far over any test machine; refused before anything is allocated
    with pytest.raises(ConfigError, match=r"need more memory than is available .*2\^30 × 16 B = 16\.0 GiB"):
        check_memory(30, max_qubits=40)
    assert check_memory(4) > 24 * 16 * 16  # the vectors and the matrix
    with pytest.raises(ConfigError, match="letters for 3 qubits"):
        pauli_sum([(1.0, "XX")], 3)
    with pytest.raises(ConfigError, match="not one of I, X, Y, Z"):
        pauli_string("XA")


# -- ground states ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("complex_", [True, False])
def test_lanczos_equals_dense_diagonalisation(f64: torch.dtype, complex_: bool) -> None:
    """9 qubits (512 states, above the dense threshold): Lanczos' ground energy equals dense ``eigh``'s to 1e-10
    and its state has fidelity >= 1 − 1e-10; both residuals ‖Hψ − E₀ψ‖ are at round-off; a warm start from the
    dense state lands on it with ⟨start|ψ⟩ real and positive."""
    n = 9
    rng = np.random.default_rng(3)
    base = [(-1.0, {q: "Z", (q + 1) % n: "Z"}) for q in range(n)] + [(-1.2, {q: "X"}) for q in range(n)]
    base += [(float(rng.normal(0, 0.4)), {q: "Z"}) for q in range(n)]
    if complex_:
        base += [(0.5, {q: "Y", (q + 1) % n: "Z"}) for q in range(0, n, 2)]
    net = QuantumSystem(n, base=base, inputs=[{0: "Z"}], couplings=[{1: "X"}], init_scale=0.3)
    assert net.is_real != complex_
    x = torch.tensor([[0.3], [-0.5]])
    dense = solve(net, x, GroundState(method="dense"))
    lanczos = solve(net, x, GroundState())  # auto: Lanczos above 256 states
    assert float((dense.stats.energy - lanczos.stats.energy).abs().max()) < 1e-10
    assert float(_fidelity(dense.state[0], lanczos.state[0]).min()) >= 1 - 1e-10
    assert float(torch.maximum(dense.stats.residual, lanczos.stats.residual).max()) < 1e-10
    assert float(dense.stats.gap.min()) > 1e-3
    h = torch.from_numpy(hamiltonian_matrix(net, x, 1).toarray())
    e0 = float(torch.linalg.eigvalsh(h)[0])  # torch's: numpy's OpenBLAS threads spin on a busy machine
    assert abs(e0 - float(dense.stats.energy[1])) < 1e-10
    warm = solve(net, x, GroundState(method="lanczos"), init=dense.state)
    overlap = (as_complex(dense.state).conj() * as_complex(warm.state)).sum(1)
    assert float((overlap - 1).abs().max()) < 1e-10  # the same vector, same phase


def test_energy_fast_paths_and_stationarity(f64: torch.dtype) -> None:
    """At the ground state: the energy functional equals E₀, ∂E/∂ψ = 0 (the generic KKT residual), and
    Hellmann–Feynman ``param_grads`` (and the contrast) equal autograd on the energy."""
    net, cost, x, y = _random_system(4, 0)
    eq = solve(net, x, GroundState())
    with torch.no_grad():
        assert float((net.energy(x, eq.state) - eq.stats.energy).abs().max()) < 1e-12
        scaled = (3.0 * eq.state[0],)  # a state that is not normalised reads the same expectation values
        assert float((net.energy(x, scaled) - net.energy(x, eq.state)).abs().max()) < 1e-12
    assert float(eq.kkt_residual.max()) < 1e-12
    fast = net.param_grads(x, eq.state)["couplings"]
    generic = EnergySystem.param_grads(net, x, eq.state)["couplings"]
    assert float((fast - generic).abs().max()) < 1e-13
    nudged = solve(net, x, GroundState(), cost=cost, y=y, beta=0.3, init=eq.state)
    diff = net.param_grad_difference(x, eq.state, nudged.state, scale=2.0)["couplings"]
    expect = 2.0 * (net.param_grads(x, nudged.state)["couplings"] - fast)
    assert float((diff - expect).abs().max()) < 1e-13
    # the nudged state is the ground state of H + βO: lower total energy than the free one at that β
    with torch.no_grad():
        f = nudged.problem.energy
        assert bool((f(nudged.state) <= f(eq.state) + 1e-12).all())


def test_degenerate_ground_state_and_wrong_models_are_refused(f64: torch.dtype) -> None:
    """``Z₀Z₁`` alone has two ground states (|01⟩, |10⟩): refused, or accepted with its gap 0 reported. A classical
    system, a non-observable cost, and clamping are refused."""
    net = QuantumSystem(2, inputs=[], couplings=[{0: "Z", 1: "Z"}], init_scale=torch.tensor([1.0]))
    x = torch.zeros(1, 0)
    with pytest.raises(ConfigError, match="ground state of example 0 is degenerate \\(gap 0 < gap_tol=1e-08"):
        solve(net, x, GroundState())
    eq = solve(net, x, GroundState(degenerate="accept"))
    assert float(eq.stats.gap[0]) == 0.0 and abs(float(eq.stats.energy[0]) + 1.0) < 1e-14
    hop, hx, _ = make_hopfield([3, 4, 2])
    with pytest.raises(ConfigError, match="GroundState relaxes quantum systems"):
        solve(hop, hx, GroundState())
    net, cost, x, _ = _random_system(3, 1)
    with pytest.raises(ConfigError, match="not an ObservableCost"):
        solve(net, x, GroundState(), cost=SquaredError(), y=torch.zeros(3, 8, 2), beta=0.1)
    with pytest.raises(ConfigError, match="cannot hold"):
        solve(net, x, GroundState(), clamp={0: net.init_state(x)[0]})
    with pytest.raises(ConfigError, match="labels must lie in \\[0, 3\\)"):
        solve(net, x, GroundState(), cost=cost, y=torch.tensor([0, 1, 3]), beta=0.1)


# -- gradients --------------------------------------------------------------------------------------------------
def test_linear_response_is_the_exact_gradient(f64: torch.dtype) -> None:
    """Linear response (dense solve, and conjugate gradients beside Lanczos) == autograd through a dense ``eigh``
    to 1e-8 relative; both == central differences of the loss (a third route) to 1e-7."""
    for seed, complex_ in ((0, True), (1, False)):
        net, cost, x, y = _random_system(4, seed, complex_=complex_)
        loss, exact = exact_gradient(net, cost, x, y)
        g = exact["system.couplings"]
        for solver in (GroundState(), GroundState(method="lanczos")):
            lr = linear_response(net, cost, x, y, solver=solver)["system.couplings"]
            assert float((lr - g).norm() / g.norm()) < 1e-8, (seed, solver.method)
        fd = torch.zeros_like(g)
        eps = 1e-5
        with torch.no_grad():
            for j in range(len(g)):
                values = []
                for sign in (1, -1):
                    net.couplings[j] += sign * eps
                    eq = solve(net, x, GroundState())
                    values.append(float(cost(eq.state, cost.prepare_target(y, x)).mean()))
                    net.couplings[j] -= sign * eps
                fd[j] = (values[0] - values[1]) / (2 * eps)
        assert float((fd - g).norm() / g.norm()) < 1e-7
        eq = solve(net, x, GroundState())
        assert abs(float(cost(eq.state, cost.prepare_target(y, x)).mean()) - float(loss)) < 1e-12


@pytest.mark.parametrize("variant", ["positive", "negative", "centered"])
def test_eqprop_converges_to_the_exact_gradient_at_the_predicted_order(
    f64: torch.dtype, variant: str
) -> None:
    """EqProp by ±β nudging of a complex Hamiltonian (4 qubits, 3 classes): the log-log slope of the relative
    error over β = 0.04 … 0.005 is 1 one-sided and 2 centered (± 0.1), the cosine >= 0.9999 at β = 0.005."""
    net, cost, x, y = _random_system(4, 0)
    assert not net.is_real
    g = exact_gradient(net, cost, x, y)[1]["system.couplings"]
    betas = [0.04, 0.02, 0.01, 0.005]
    errs = []
    for beta in betas:
        est = EqProp(beta=beta, variant=variant).gradients(net, cost, GroundState(), x, y)
        e = est.grads["system.couplings"]
        errs.append(float((e - g).norm() / g.norm()))
    slope = np.polyfit(np.log(betas), np.log(errs), 1)[0]
    order = 2 if variant == "centered" else 1
    assert abs(slope - order) < 0.1, (variant, slope, errs)
    assert float(e @ g / (e.norm() * g.norm())) >= 0.9999
    assert float(est.metrics["residual"].max()) < 1e-12


# -- shot noise -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["binomial", "gaussian"])
def test_shot_noise_error_falls_as_one_over_root_shots(f64: torch.dtype, mode: str) -> None:
    """The RMS error of a two-string observable's estimate over 400 repetitions, for M = 10 … 10⁵ shots: log-log
    slope −½ within 4 standard errors of the fit, and RMS·√M within 15 % of ``√(Σc²(1 − ⟨P⟩²))``."""
    net, _, x, _ = _random_system(4, 2, batch=1)
    psi = as_complex(solve(net, x, GroundState()).state)
    obs = SparseOperator.from_terms([(0.8, "ZXIZ"), (-0.5, "XXYI")], 4)
    exact = obs.expectation(psi[0].numpy())
    p = [SparseOperator.from_terms([(1.0, s)], 4).expectation(psi[0].numpy()) for s in ("ZXIZ", "XXYI")]
    sigma = np.sqrt(0.8**2 * (1 - p[0] ** 2) + 0.5**2 * (1 - p[1] ** 2))
    shots = [10, 46, 215, 1000, 4642, 21544, 100000]
    reps = psi.expand(400, -1)
    rms = []
    for m in shots:
        est = measure(reps, obs, ShotNoise(m, mode=mode, seed=m))
        rms.append(float(((est - exact) ** 2).mean().sqrt()))
    (slope, _), cov = np.polyfit(np.log(shots), np.log(rms), 1, cov=True)
    se = float(np.sqrt(cov[0, 0]))
    assert abs(slope + 0.5) < 4 * se, (slope, se, rms)
    assert se < 0.03
    ratio = np.array(rms) * np.sqrt(shots) / sigma
    assert np.all(np.abs(ratio - 1) < 0.15), ratio


def test_eqprop_with_shot_noise_is_unbiased_with_the_predicted_spread(f64: torch.dtype) -> None:
    """With ``shots`` on the system, EqProp's contrast of measured ⟨H_θ⟩ scatters around the exact contrast with
    std ``√(Σ_b (1 − ⟨P⟩²_hi) + (1 − ⟨P⟩²_lo)) / (B·2β·√M)`` (within 20 %, mean within 4 standard errors); the
    rule itself runs unchanged."""
    net, cost, x, y = _random_system(4, 3)
    beta, m, reps = 0.1, 2000, 300
    lo = solve(net, x, GroundState(), cost=cost, y=y, beta=-beta)
    hi = solve(net, x, GroundState(), cost=cost, y=y, beta=beta)
    exact = net.param_grad_difference(x, lo.state, hi.state, scale=1 / (2 * beta))["couplings"]
    var = (1 - net.coupling_expectations(lo.state) ** 2) + (1 - net.coupling_expectations(hi.state) ** 2)
    predicted = var.sum(0).sqrt() / (x.shape[0] * 2 * beta * np.sqrt(m))
    net.shots = ShotNoise(m, mode="binomial", seed=7)
    draws = torch.stack(
        [
            net.param_grad_difference(x, lo.state, hi.state, scale=1 / (2 * beta))["couplings"]
            for _ in range(reps)
        ]
    )
    ratio = draws.std(0) / predicted
    assert bool(((ratio - 1).abs() < 0.2).all()), ratio
    z = (draws.mean(0) - exact) / (predicted / np.sqrt(reps))
    assert float(z.abs().max()) < 4.0, z
    est = EqProp(beta=beta, variant="centered").gradients(net, cost, GroundState(), x, y)
    assert bool(torch.isfinite(est.grads["system.couplings"]).all())
    net.shots = None


# -- the phase-recognition task ---------------------------------------------------------------------------------
def test_phase_recognition_data_is_deterministic_and_physical() -> None:
    """Same seed, same data; labels follow g < 1; the probes of the ordered phase have the larger ⟨ZZ⟩."""
    a = phase_recognition(16, 8, n_sites=6, seed=3, standardize=False)
    b = phase_recognition(16, 8, n_sites=6, seed=3, standardize=False)
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    x, y = a[0], a[1]
    assert x.shape == (16, 3) and set(y.tolist()) == {0, 1}
    assert float(x[y == 0, 0].mean()) > float(x[y == 1, 0].mean())  # ⟨Z₀Z₁⟩
    assert float(x[y == 0, 1].mean()) < float(x[y == 1, 1].mean())  # ⟨X₀⟩
    e_open = float(torch.linalg.eigvalsh(torch.from_numpy(ising_chain(4, 0.0, periodic=False).to_dense()))[0])
    assert abs(e_open + 3.0) < 1e-12  # three bonds, all aligned


def test_eqprop_learns_to_recognise_the_ising_phase(f64: torch.dtype) -> None:
    """8-site Ising chains, probes of a 2-site window (⟨Z₀Z₁⟩, ⟨X₀⟩, ⟨X₁⟩) as fields on a 5-qubit transverse-field
    Ising network (3 inputs, 1 hidden, 1 readout), from θ = 0 (every prediction a tie, loss ½): 20 steps of SGD
    (lr 1) on centered EqProp (β = 0.1), 64 training chains. Measured over seeds 0–4: held-out accuracy 0.98–1.0,
    loss 0.03–0.05; required: accuracy >= 0.85 and loss <= 0.15."""
    x_train, y_train, x_test, y_test = phase_recognition(64, 128, n_sites=8, window=2, seed=0)
    net, cost = transverse_ising_network(3, 1, init_scale=0.0)
    solver = GroundState()

    def evaluate(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        eq = solve(net, x, solver)
        accuracy = float((cost.predict(eq.state).argmax(1) == y).double().mean())
        return accuracy, float(cost(eq.state, cost.prepare_target(y, x)).mean())

    assert abs(evaluate(x_test, y_test)[1] - 0.5) < 1e-12
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    rule = EqProp(beta=0.1, variant="centered")
    for _ in range(20):
        optimizer.zero_grad()
        rule.gradients(net, cost, solver, x_train, y_train, out="grad")
        optimizer.step()
    accuracy, loss = evaluate(x_test, y_test)
    assert accuracy >= 0.85 and loss <= 0.15, (accuracy, loss)


# -- the rules beside EqProp, and the run layer ------------------------------------------------------------------
def test_every_exact_route_gives_the_same_gradient(f64: torch.dtype) -> None:
    """The LinearResponse rule, implicit differentiation (conjugate gradients on the Hessian of the Rayleigh
    quotient, singular along ψ and iψ but consistent) and backprop through the solver (its differentiable step:
    first-order perturbation theory) agree with linear_response and autograd through eigh to 1e-9 relative, on a
    complex Hamiltonian; at θ = 0 of the Ising network, whose excited levels are degenerate, autograd through eigh
    is refused (NaN) and the other routes still agree."""
    net, cost, x, y = _random_system(4, 0)
    ising, readout = transverse_ising_network(3, 1, init_scale=0.0)
    xi = torch.randn(6, 3, generator=torch.Generator().manual_seed(5))
    yi = torch.tensor([0, 1, 0, 1, 1, 0])
    for system, c, xs, ys in ((net, cost, x, y), (ising, readout, xi, yi)):
        ref = linear_response(system, c, xs, ys)["system.couplings"]
        routes = {
            "rule": LinearResponse().gradients(system, c, GroundState(), xs, ys),
            "implicit": ImplicitDiff().gradients(system, c, GroundState(), xs, ys),
            "backprop": BackpropThroughSolver(steps=2).gradients(
                system, c, GroundState(iterations=2), xs, ys
            ),
            "bptt": BackpropThroughSolver().gradients(system, c, GroundState(), xs, ys),
        }
        for name, est in routes.items():
            g = est.grads["system.couplings"]
            assert float((g - ref).norm() / ref.norm()) < 1e-9, name
    with pytest.raises(ConfigError, match="non-finite gradient"):
        exact_gradient(ising, readout, xi, yi)
    hop, hx, hy = make_hopfield([3, 4, 2])
    with pytest.raises(ConfigError, match="LinearResponse trains a QuantumSystem"):
        LinearResponse().gradients(hop, SquaredError(), GroundState(), hx, hy)
    big = QuantumSystem(9, base=[(-1.0, {q: "X"}) for q in range(9)], inputs=[{0: "Z"}], couplings=[{1: "Z"}])
    with pytest.raises(ConfigError, match="above the dense method's limit"):
        BackpropThroughSolver(steps=1).gradients(
            big, ObservableCost.readout(9), GroundState(), torch.zeros(2, 1), torch.tensor([0, 1])
        )


def test_complex_operators_survive_a_dtype_cast(f64: torch.dtype) -> None:
    """``Module.to(dtype)`` casts complex buffers to a real dtype by dropping the imaginary part: the operator tables
    hold (real, imaginary) pairs, so a complex Hamiltonian keeps its Y terms through ``system.to(float32)``."""
    net, _, x, _ = _random_system(3, 4)
    assert not net.is_real
    before = solve(net, x, GroundState()).stats.energy
    net.to(dtype=torch.float32)
    after = solve(net, x.float(), GroundState()).stats.energy
    assert float((after.double() - before).abs().max()) < 1e-5  # float32 round-off, not a lost imaginary part


def test_the_run_configuration_builds_a_quantum_run() -> None:
    """``system.kind = "quantum_ising"``, ``cost.kind = "observable_readout"`` and ``solver.kind = "ground_state"``
    build the network of transverse_ising_network; a cost of another kind, a readout qubit that does not exist and
    a network over the qubit limit are refused with one line each."""
    table = {
        "data": {"dataset": "tfim-phases"},
        "system": {"kind": "quantum_ising", "inputs": 3, "hidden": 2, "init_scale": 0.0},
        "cost": {"kind": "observable_readout", "qubit": 0},
        "solver": {"kind": "ground_state"},
        "train": {"dtype": "float64"},
    }
    config = config_from_dict(table)
    assert config.system.output_width == 6 and config.cost.predicted_classes(6) == 2
    run = build(config)
    assert isinstance(run.system, QuantumSystem) and run.system.n_qubits == 6
    assert isinstance(run.cost, ObservableCost) and run.cost.n_qubits == 6
    assert run.system.couplings.dtype == torch.float64 and not bool(run.system.couplings.any())
    with pytest.raises(ConfigError, match="is not an ObservableCost"):
        build(config_from_dict({**table, "cost": {"kind": "squared_error"}}))
    with pytest.raises(ConfigError, match="qubit 6 is not one of the 6 qubits"):
        build(config_from_dict({**table, "cost": {"kind": "observable_readout", "qubit": 6}}))
    with pytest.raises(ConfigError, match="15 qubits is over the limit of 14"):
        config_from_dict({**table, "system": {"kind": "quantum_ising", "inputs": 10, "hidden": 4}})


def test_the_generated_phase_dataset() -> None:
    """``tfim-phases``: 128 training and 256 test chains of 3 standardised features, two classes, the same on every
    load; sizes and the validation split as for other datasets; image options refused with one line (about 2 s per
    load: one exact 256-state ground state per chain)."""
    data = load_dataset("tfim-phases", dtype=torch.float64)
    assert data.train.x.shape == (128, 3) and data.test.x.shape == (256, 3) and data.classes == 2
    assert data.train.x.dtype == torch.float64 and set(data.train.y.tolist()) == {0, 1}
    assert float(data.train.x.mean(0).abs().max()) < 1e-12  # standardised with the training set's statistics
    again = load_dataset("tfim-phases", train_size=40, test_size=20, validation=8, dtype=torch.float64)
    assert again.validation is not None and len(again.validation) == 8 and len(again.train) == 32
    assert torch.equal(again.test.x, data.test.x[:20])
    kept = torch.cat((again.train.x, again.validation.x))
    assert sorted(map(tuple, kept.tolist())) == sorted(map(tuple, data.train.x[:40].tolist()))
    with pytest.raises(ConfigError, match="tfim-phases is a 2-class task on standardised probe features"):
        load_dataset("tfim-phases", crop=2)
