r"""The equilibrium of a quantum system: the ground state of ``H(θ, x) + β·O_y``, and the exact gradients.

- :class:`GroundState`: the solver (dense ``eigh`` for small dimension, Lanczos above), with the gap and the
  eigen-residual in its statistics and a degenerate ground state refused.
- :func:`linear_response`: EqProp's β → 0 limit computed exactly by first-order perturbation theory (one linear
  solve per example, the Onsager-reciprocity form of Wanjura & Marquardt 2025).
- :func:`exact_gradient`: the same gradient by a second route, autograd through a dense ``torch.linalg.eigh`` of
  the assembled Hamiltonian (up to 10 qubits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from eqprop._types import State
from eqprop.errors import ConfigError, ConvergenceError
from eqprop.solvers.base import Solver, SolveStats, TotalEnergy, solve
from eqprop.systems.base import EnergySystem
from eqprop.systems.quantum import (
    LANCZOS_ABOVE,
    ObservableCost,
    QuantumSystem,
    as_complex,
    as_state,
    fix_phase,
    flip_form_matrix,
    lowest_eigenpairs,
)

__all__ = [
    "GroundState",
    "GroundStateStats",
    "exact_gradient",
    "hamiltonian_matrix",
    "linear_response",
    "total_hamiltonian",
]

EXACT_GRADIENT_LIMIT = 10
"""The most qubits :func:`exact_gradient` assembles dense matrices for."""


@dataclass(frozen=True)
class GroundStateStats(SolveStats):
    """:class:`SolveStats` plus what a ground state has: ``residual`` is ``‖Hψ − E₀ψ‖`` (``ψ`` of unit norm),
    ``energy`` the ground energy ``E₀`` and ``gap`` ``E₁ − E₀`` of ``H + β·O``, per example."""

    energy: Tensor
    gap: Tensor


@dataclass(frozen=True)
class GroundState(Solver):
    r"""The ground state of ``H(θ, x) + β·Σ_k t_k O_k`` for each example of a
    :class:`~eqprop.systems.quantum.QuantumSystem` nudged by an :class:`~eqprop.systems.quantum.ObservableCost`.

    Exact up to round-off: a dense ``eigh`` (torch's, batched) up to ``lanczos_above`` basis states, Lanczos
    (``scipy.sparse.linalg.eigsh(k=2, which="SA")``, one example at a time) above, started from the given state
    (a warm start: the nudged phases start from the free ground state). The returned ``ψ`` has unit norm and the
    global phase that makes ``⟨start|ψ⟩`` real and positive (the largest amplitude, when the start is orthogonal).
    :meth:`step` under autograd (``BackpropThroughSolver``) returns the same state with its first derivative in θ
    and x, by perturbation theory on the dense Hamiltonian (up to ``lanczos_above`` basis states).

    Example:
        >>> net, cost = transverse_ising_network(3, 1)
        >>> free = solve(net, x, GroundState())                        # x: (batch, 3)
        >>> free.stats.gap.min()                                       # E₁ − E₀ of every example
        >>> nudged = solve(net, x, GroundState(), cost=cost, y=y, beta=0.1, init=free.state)

    Args:
        method: ``"auto"``, ``"dense"`` or ``"lanczos"``.
        lanczos_above: the dimension ``2ⁿ`` above which ``"auto"`` uses Lanczos.
        lanczos_tol: ARPACK's relative tolerance (0: machine precision).
        gap_tol: a gap ``E₁ − E₀`` below this is a degenerate ground state.
        degenerate: ``"raise"`` (a :class:`ConfigError` naming the example and the gap: EqProp's state is then not a
            function of θ), or ``"accept"``: keep the solver's vector (its ``stats.gap`` says so).
        tol: with a tolerance, examples with a residual ``‖Hψ − E₀ψ‖`` above it are reported unconverged.
        iterations: kept for the solver interface (one solve is exact).

    Raises:
        ConfigError: a system other than a ``QuantumSystem``, a cost other than an ``ObservableCost``, a complex β,
            a degenerate ground state (``degenerate="raise"``), held variables (``clamp``).
    """

    iterations: int = 1
    method: Literal["auto", "dense", "lanczos"] = "auto"
    lanczos_above: int = LANCZOS_ABOVE
    lanczos_tol: float = 0.0
    gap_tol: float = 1e-8
    degenerate: Literal["raise", "accept"] = "raise"
    tol: float | None = None
    check_every: int = 1
    norm: Literal["max", "layer-l1"] = "max"
    kind: ClassVar[str] = "ground_state"

    def __post_init__(self) -> None:
        self._validate()
        if self.method not in ("auto", "dense", "lanczos"):
            raise ConfigError(f"GroundState(method={self.method!r}): choose 'auto', 'dense' or 'lanczos'")
        if self.degenerate not in ("raise", "accept"):
            raise ConfigError(f"GroundState(degenerate={self.degenerate!r}): choose 'raise' or 'accept'")
        if not self.gap_tol >= 0 or not self.lanczos_tol >= 0:
            raise ConfigError(
                f"GroundState(gap_tol={self.gap_tol}, lanczos_tol={self.lanczos_tol}): need values >= 0"
            )

    def uses_lanczos(self, dim: int) -> bool:
        return self.method == "lanczos" or (self.method == "auto" and dim > self.lanczos_above)

    def step(self, problem: TotalEnergy, state: State) -> State:
        """One exact solve: :meth:`run`'s, or, with autograd on (backpropagation through the solver), the ground
        state of the dense ``H + β·O`` (up to ``lanczos_above`` basis states) with its first derivative in θ and x
        by perturbation theory, in the same gauge."""
        if torch.is_grad_enabled():
            return self._differentiable_step(problem, state)
        return self.run(problem, state)[0]

    def _differentiable_step(self, problem: TotalEnergy, state: State) -> State:
        r"""``ψ₀`` with ``dψ₀ = −(H − E₀)⁺ dH ψ₀`` (the derivative orthogonal to ``ψ₀``; the gauge fix adds the
        phase's): ``ψ = ψ₀ − R(H − H̄)ψ₀`` with ``H̄ = H`` detached and ``R = (H − E₀ + |ψ₀⟩⟨ψ₀|)⁻¹`` on the complement
        of ``ψ₀``, whose value is ``ψ₀`` and whose graph carries the first derivative. (Autograd through
        ``torch.linalg.eigh`` would divide by the gaps between *all* eigenvalues, and excited states of symmetric
        Hamiltonians are often degenerate: NaN.) Only first derivatives are right."""
        system, cost = _checked(problem)
        if self.uses_lanczos(system.dim):
            raise ConfigError(
                f"GroundState: backpropagation through the solver solves with dense {system.dim}×{system.dim} "
                f"matrices, and {system.n_qubits} qubits are above the dense method's limit "
                f"(lanczos_above={self.lanczos_above} basis states)",
                hint="take the exact gradient by ImplicitDiff() or linear_response(...) for larger systems",
            )
        h = system.dense_hamiltonian(problem.x)  # (batch, 2ⁿ, 2ⁿ) complex, differentiable
        real = system.is_real
        if cost is not None:
            assert problem.target is not None
            h = h + cost.table.dense(cost.hamiltonian(problem.beta * problem.target)[1])
            real = real and cost.table.is_real
        if real:
            h = h.real
        with torch.no_grad():
            values, vectors = torch.linalg.eigh(h)
            gap = values[:, 1] - values[:, 0]
            if self.degenerate == "raise" and bool((gap < self.gap_tol).any()):  # host sync, once per solve
                i = int(gap.argmin())
                raise ConfigError(
                    f"GroundState: the ground state of example {i} is degenerate (gap {float(gap[i]):.3g} < "
                    f"gap_tol={self.gap_tol:g}, beta={problem.beta:g}): its derivative is undefined",
                    hint="break the symmetry (e.g. a small field on one qubit)",
                )
            psi0 = vectors[:, :, 0]  # (batch, 2ⁿ)
            eye = torch.eye(system.dim, dtype=h.dtype, device=h.device)
            shifted = h - values[:, :1, None] * eye + psi0[:, :, None] * psi0.conj()[:, None, :]
        moved = ((h - h.detach()) @ psi0[:, :, None])[:, :, 0]  # dH ψ₀: zero, with the graph
        moved = moved - psi0 * (psi0.conj() * moved).sum(1, keepdim=True)  # onto the complement of ψ₀
        psi = psi0 - torch.linalg.solve(shifted, moved)
        if not psi.is_complex():
            psi = torch.complex(psi, torch.zeros_like(psi))
        # the gauge of `run`: ⟨start|ψ⟩ real and positive, or the largest amplitude when the start is orthogonal
        start = as_complex(state).detach().to(psi.dtype)
        overlap = (start.conj() * psi).sum(1)
        largest = psi.gather(1, psi.abs().argmax(1, keepdim=True))[:, 0]
        orthogonal = overlap.abs() <= 1e-6 * start.abs().square().sum(1).sqrt()
        ref = torch.where(orthogonal, largest, overlap)
        return as_state(psi * (ref.conj() / ref.abs())[:, None], problem.x.dtype)

    def make_sweep(self, problem: TotalEnergy) -> Callable[[State], State]:
        return lambda state: self.step(problem, state)

    def run(self, problem: TotalEnergy, state: State) -> tuple[State, SolveStats]:
        system = _quantum(problem.system)
        masks, diags = total_hamiltonian(problem)
        starts = as_complex(state).detach().cpu().numpy()
        lanczos = self.uses_lanczos(system.dim)
        if lanczos:
            pairs = [self._lanczos(masks, d, v0) for d, v0 in zip(diags, starts, strict=True)]
            energies = np.array([p[0] for p in pairs])
            psis = np.stack([p[1] for p in pairs])
        else:
            energies, psis = _dense_ground_states(masks, diags)
        psis = np.stack([fix_phase(p, v0) for p, v0 in zip(psis, starts, strict=True)])
        residual = np.array(
            [
                np.linalg.norm(_apply(masks, d, p) - e[0] * p)
                for d, p, e in zip(diags, psis, energies, strict=True)
            ]
        )
        gap = energies[:, 1] - energies[:, 0]
        if self.degenerate == "raise" and np.any(gap < self.gap_tol):
            i = int(np.argmin(gap))
            raise ConfigError(
                f"GroundState: the ground state of example {i} is degenerate (gap {gap[i]:.3g} < "
                f"gap_tol={self.gap_tol:g}, beta={problem.beta:g}): EqProp's state is not a function of θ",
                hint="break the symmetry (e.g. a small field on one qubit), or GroundState(degenerate='accept')",
            )
        x = problem.x
        out = as_state(torch.from_numpy(psis).to(x.device), x.dtype)
        as_t = lambda a: torch.as_tensor(a, dtype=x.dtype, device=x.device)  # noqa: E731
        res = as_t(residual)
        converged = torch.ones_like(res, dtype=torch.bool) if self.tol is None else res <= self.tol
        finite = torch.isfinite(res) & torch.isfinite(out[0]).flatten(1).all(1)
        stats = GroundStateStats(
            iterations=1,
            residual=res,
            converged=converged,
            finite=finite,
            energy=as_t(energies[:, 0]),
            gap=as_t(gap),
        )
        return out, stats

    def _lanczos(self, masks: np.ndarray, diags: np.ndarray, v0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = flip_form_matrix(masks, diags, dense=False)
        return lowest_eigenpairs(h, v0=v0, lanczos=True, tol=self.lanczos_tol)


def _quantum(system: EnergySystem) -> QuantumSystem:
    if not isinstance(system, QuantumSystem):
        raise ConfigError(
            f"GroundState relaxes quantum systems; {type(system).__name__} is not one",
            hint="use block_coordinate, gradient_flow or direct for classical systems",
        )
    return system


def _checked(problem: TotalEnergy) -> tuple[QuantumSystem, ObservableCost | None]:
    """The problem's quantum system, and its cost when nudged; refuses what a ground state cannot be."""
    system = _quantum(problem.system)
    if problem.clamp:
        raise ConfigError(
            "GroundState cannot hold the state fixed (clamp=...): the state is one wave function"
        )
    if isinstance(problem.beta, complex):
        raise ConfigError(f"GroundState: beta={problem.beta} must be real (H + β·O must stay Hermitian)")
    if not problem.nudged:
        return system, None
    cost = problem.cost
    if not isinstance(cost, ObservableCost):
        raise ConfigError(
            f"GroundState nudges with an observable; {type(cost).__name__} is not an ObservableCost",
            hint="train quantum systems with ObservableCost (e.g. ObservableCost.readout(n_qubits))",
        )
    return system, cost


def total_hamiltonian(problem: TotalEnergy) -> tuple[np.ndarray, np.ndarray]:
    """``H(θ, x) + β·Σ_k t_k O_k`` per example in flip form, as numpy: masks ``(M,)`` and diagonals
    ``(batch, M, 2ⁿ)`` (float64 when every part is real, else complex128)."""
    system, cost = _checked(problem)
    with torch.no_grad():
        masks, diags = system.hamiltonian(problem.x)
        parts = [(masks, diags.cpu().numpy())]
        real = system.is_real
        if cost is not None:
            assert problem.target is not None
            c_masks, c_diags = cost.hamiltonian(problem.beta * problem.target)
            parts.append((c_masks, c_diags.cpu().numpy()))
            real = real and cost.table.is_real
    union = np.unique(np.concatenate([m for m, _ in parts])).astype(np.int64)
    batch, dim = problem.x.shape[0], system.dim
    out = np.zeros((batch, len(union), dim), dtype=np.complex128)
    for m, d in parts:
        out[:, np.searchsorted(union, m)] += d
    return union, (np.ascontiguousarray(out.real) if real else out)


def _apply(masks: np.ndarray, diags: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``H v`` for one example in flip form."""
    a = np.arange(diags.shape[-1])
    out = np.zeros(v.shape, dtype=np.result_type(v, diags))
    for m, d in zip(masks, diags, strict=True):
        out += d * v[a ^ m]
    return out


def _dense_ground_states(masks: np.ndarray, diags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(E₀, E₁)`` ``(batch, 2)`` and ground states ``(batch, 2ⁿ)`` by one batched dense ``eigh`` (torch's: numpy's
    OpenBLAS threads spin on a busy machine, a 256 × 256 ``eigh`` was seen to take 0.7 s against 7 ms)."""
    batch, _, dim = diags.shape
    a = np.arange(dim)
    h = np.zeros((batch, dim, dim), dtype=diags.dtype)
    for k, m in enumerate(masks):
        h[:, a, a ^ m] += diags[:, k]
    vals, vecs = torch.linalg.eigh(torch.from_numpy(h))  # torch's LAPACK follows torch.set_num_threads
    values, vectors = vals.numpy(), vecs[:, :, 0].numpy()
    second = values[:, 1] if dim > 1 else np.full(batch, np.inf)
    return np.stack((values[:, 0], second), 1), vectors


def linear_response(
    system: QuantumSystem,
    cost: ObservableCost,
    x: Tensor,
    y: Tensor,
    *,
    solver: GroundState | None = None,
    state: State | None = None,
) -> dict[str, Tensor]:
    r"""``∂L/∂θ`` for ``L = mean ⟨ψ₀|O_y|ψ₀⟩`` exactly: EqProp's β → 0 limit by first-order perturbation theory.

    Per example, with ``H|ψ₀⟩ = E₀|ψ₀⟩``: solve ``(H − E₀)|χ⟩ = −(O − ⟨O⟩)|ψ₀⟩`` in the complement of ``ψ₀`` (as
    ``(H − E₀ + |ψ₀⟩⟨ψ₀|)χ = rhs``, which is nonsingular for a nondegenerate ground state and keeps ``χ ⊥ ψ₀``):
    ``χ = d|ψ^β⟩/dβ`` at β = 0, and ``∂L/∂θ_j = d⟨H_{θ_j}⟩_β/dβ = 2 Re⟨χ|H_{θ_j}|ψ₀⟩`` (one solve for all
    parameters: Onsager reciprocity). Dense solve up to the solver's Lanczos threshold, conjugate gradients above.

    Args:
        system, cost, x, y: the model and the batch (integer labels or float targets, as the cost takes them).
        solver: finds the free ground state (default ``GroundState()``).
        state: the free ground state, if already known (skips the solve).

    Returns:
        ``{"system.couplings": ∂L/∂θ}``, keyed as the rules key their estimates.
    """
    solver = GroundState() if solver is None else solver
    problem = TotalEnergy(system, x, cost=cost, y=y)
    if state is None:
        state = solve(system, x, solver).state
    masks, diags = total_hamiltonian(problem)
    assert problem.target is not None
    with torch.no_grad():
        psi = as_complex(state).detach()
        psi = psi / psi.abs().square().sum(1, keepdim=True).sqrt()
        psi_np = psi.cpu().numpy()
        o_masks, o_diags = cost.hamiltonian(problem.target)
        o_diags_np = o_diags.cpu().numpy()
    chis = []
    lanczos = solver.uses_lanczos(system.dim)
    for b in range(x.shape[0]):
        p = psi_np[b]
        h_p = _apply(masks, diags[b], p)
        e0 = float(np.vdot(p, h_p).real)
        o_p = _apply(o_masks, o_diags_np[b], p)
        rhs = -(o_p - np.vdot(p, o_p) * p)
        chis.append(_complement_solve(masks, diags[b], e0, p, rhs, sparse=lanczos))
    chi = torch.from_numpy(np.stack(chis)).to(device=psi.device, dtype=psi.dtype)
    with torch.no_grad():
        elements = system.table.matrix_elements(chi, psi)[:, 1 + system.n_inputs :]
        grad = (2.0 * elements.real).mean(0)
    return {"system.couplings": grad.to(system.couplings.dtype)}


def _complement_solve(
    masks: np.ndarray, diags: np.ndarray, e0: float, psi: np.ndarray, rhs: np.ndarray, *, sparse: bool
) -> np.ndarray:
    """``χ`` with ``(H − E₀ + |ψ⟩⟨ψ|)χ = rhs`` (``rhs ⊥ ψ``, so ``χ ⊥ ψ``), projected onto the complement."""
    dim = len(psi)
    dtype = np.result_type(diags, psi, rhs)
    if not sparse:
        a = flip_form_matrix(masks, diags.astype(dtype), dense=True)
        a = a - e0 * np.eye(dim) + np.outer(psi, psi.conj())
        chi = torch.linalg.solve(torch.from_numpy(a), torch.from_numpy(rhs.astype(dtype))).numpy()
    else:
        from scipy.sparse.linalg import LinearOperator, cg

        h = flip_form_matrix(masks, diags.astype(dtype), dense=False)

        def matvec(v: np.ndarray) -> np.ndarray:
            v = v.ravel()
            return h @ v - e0 * v + psi * np.vdot(psi, v)

        op = LinearOperator((dim, dim), matvec=matvec, dtype=dtype)  # type: ignore[call-arg]
        chi, info = cg(op, rhs.astype(dtype), rtol=1e-14, atol=0.0, maxiter=20 * dim)
        if info != 0:
            raise ConvergenceError(
                f"linear_response: conjugate gradients stopped after {info} iterations short of 1e-14",
                hint="the ground state may be nearly degenerate (a tiny gap makes (H − E₀) ill-conditioned)",
            )
    return chi - psi * np.vdot(psi, chi)


def exact_gradient(
    system: QuantumSystem, cost: ObservableCost, x: Tensor, y: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""The loss ``L = mean ⟨ψ₀|O_y|ψ₀⟩`` and ``∂L/∂θ`` by autograd through a dense ``torch.linalg.eigh`` of
    ``H(θ, x)`` (assembled differentiably from the flip form): an independent reference for EqProp and linear
    response. Up to :data:`EXACT_GRADIENT_LIMIT` qubits.

    Returns:
        ``(loss, {"system.couplings": ∂L/∂θ})``.

    Raises:
        ConfigError: too many qubits; or a non-finite gradient: torch's ``eigh`` backward divides by the gaps between
            *all* eigenvalues, so degenerate excited levels (a symmetric Hamiltonian, e.g. a network at θ = 0) make
            it NaN although the ground state is unique. :func:`linear_response` needs only the ground-state gap.
    """
    if system.n_qubits > EXACT_GRADIENT_LIMIT:
        raise ConfigError(
            f"exact_gradient assembles dense {system.dim}×{system.dim} matrices: {system.n_qubits} qubits is over "
            f"its limit of {EXACT_GRADIENT_LIMIT}",
            hint="use linear_response(...) (sparse, exact to round-off) for larger systems",
        )
    target = cost.prepare_target(y, x.new_empty(x.shape[0], 1))
    with torch.enable_grad():
        theta = system.couplings
        h = system.dense_hamiltonian(x)
        if system.is_real:
            h = h.real
        _, vectors = torch.linalg.eigh(h)
        psi = vectors[:, :, 0]
        if not psi.is_complex():
            psi = torch.complex(psi, torch.zeros_like(psi))
        loss = (cost.table.expectations(psi) * target.to(psi.real.dtype)).sum(1).mean()
        (grad,) = torch.autograd.grad(loss, [theta])
    if not bool(torch.isfinite(grad).all()):
        raise ConfigError(
            "exact_gradient: autograd through eigh gave a non-finite gradient (its backward divides by the gaps "
            "between all eigenvalues, and this Hamiltonian has degenerate excited levels)",
            hint="use linear_response(...), which needs only the gap above the ground state",
        )
    return loss.detach(), {"system.couplings": grad}


def hamiltonian_matrix(system: QuantumSystem, x: Tensor, index: int = 0) -> sp.csr_matrix:
    """The sparse matrix of ``H(θ, x)`` for example ``index`` of ``x`` (for inspection)."""
    with torch.no_grad():
        masks, diags = system.hamiltonian(x[index : index + 1])
    d = diags[0].cpu().numpy()
    if system.is_real:
        d = np.ascontiguousarray(d.real)
    out = flip_form_matrix(masks, d, dense=False)
    assert isinstance(out, sp.csr_matrix)
    out.eliminate_zeros()
    out.sort_indices()
    return out
