r"""The quantum system: qubits in the ground state of ``H(θ, x)``, measured exactly or with shot noise.

- :class:`QuantumSystem`: ``E(θ, x, ψ) = ⟨ψ|H(θ, x)|ψ⟩/⟨ψ|ψ⟩`` with ``H = H₀ + Σ_i x_i H_{x_i} + Σ_j θ_j H_{θ_j}``;
  ``∂E/∂θ_j = ⟨H_{θ_j}⟩`` (Hellmann–Feynman).
- :class:`ShotNoise` and :func:`measure`: expectation values estimated from projective measurements.
- :func:`transverse_ising_network`: a ready-made transverse-field Ising network with a readout qubit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from eqprop._types import State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem
from eqprop.systems.quantum.cost import ObservableCost
from eqprop.systems.quantum.operators import MAX_QUBITS, SparseOperator, as_operator, check_memory
from eqprop.systems.quantum.states import OperatorTable, as_complex

__all__ = ["QuantumSystem", "ShotNoise", "measure", "transverse_ising_network"]


# -- shot noise -------------------------------------------------------------------------------------------------
class ShotNoise:
    r"""Expectation values estimated from ``shots`` projective measurements, as a laboratory reads them.

    Each Pauli string ``P`` of an observable ``Σ c·P`` is measured on its own (non-commuting strings need separate
    settings), ``shots`` times, in ``P``'s eigenbasis: outcome ±1 with probability ``(1 ± ⟨P⟩)/2``.

    Args:
        shots: measurements per Pauli string (and per example).
        mode: ``"binomial"``: the exact projective statistics, ``k ~ Binomial(shots, (1 + ⟨P⟩)/2)`` and the
            estimate ``2k/shots − 1``; ``"gaussian"``: their central-limit form, ``⟨P⟩ + N(0, (1 − ⟨P⟩²)/shots)``.
            For a one-string observable ``c·P`` both have the exact variance ``(⟨O²⟩ − ⟨O⟩²)/shots``; a sum of
            strings has ``Σ c²(1 − ⟨P⟩²)/shots``.
        seed: of the generator (CPU) that draws the outcomes.
    """

    def __init__(
        self, shots: int, *, mode: Literal["binomial", "gaussian"] = "binomial", seed: int = 0
    ) -> None:
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ConfigError(f"ShotNoise(shots={shots!r}): need an integer >= 1")
        if mode not in ("binomial", "gaussian"):
            raise ConfigError(f"ShotNoise(mode={mode!r}): choose 'binomial' or 'gaussian'")
        self.shots, self.mode = shots, mode
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, means: Tensor) -> Tensor:
        """Estimates of the ``±1``-valued strings' expectation values ``means`` (any shape)."""
        m = means.detach().to("cpu", torch.float64).clamp(-1.0, 1.0)
        if self.mode == "binomial":
            counts = torch.binomial(
                torch.full_like(m, float(self.shots)), (1.0 + m) / 2.0, generator=self.generator
            )
            est = 2.0 * counts / self.shots - 1.0
        else:
            noise = torch.randn(m.shape, generator=self.generator, dtype=m.dtype)
            est = m + noise * ((1.0 - m * m) / self.shots).sqrt()
        return est.to(device=means.device, dtype=means.dtype)


class _StringTable(nn.Module):
    """The Pauli strings of some operators, each as its own unit-coefficient operator, with its owner and
    coefficient: what a shot-noise model measures."""

    def __init__(self, operators: Sequence[SparseOperator], n_qubits: int, names: Sequence[str]) -> None:
        super().__init__()
        units, owners, coefs = [], [], []
        for o, (op, name) in enumerate(zip(operators, names, strict=True)):
            if op.strings is None:
                raise ConfigError(
                    f"{name} was given as a matrix: a shot-noise model measures Pauli strings one by one",
                    hint="build the operator from Pauli terms, or measure without shot noise",
                )
            for c, unit in op.unit_strings():
                if c.imag != 0:
                    raise ConfigError(f"{name}: a measured Pauli string needs a real coefficient, got {c}")
                units.append(unit)
                owners.append(o)
                coefs.append(c.real)
        self.table = OperatorTable(units, n_qubits)
        self.n_owners = len(operators)
        self.register_buffer("owners", torch.tensor(owners, dtype=torch.long), persistent=False)
        self.register_buffer("coefs", torch.tensor(coefs, dtype=torch.float64), persistent=False)

    def measure(self, psi: Tensor, noise: ShotNoise) -> Tensor:
        """Estimates of ``⟨A_o⟩`` per example, ``(batch, n_owners)``, each string measured ``noise.shots`` times."""
        est = noise.sample(self.table.expectations(psi))
        weighted = est * self.coefs.to(est.dtype)
        return est.new_zeros(est.shape[0], self.n_owners).index_add(1, self.owners, weighted)


def measure(psi: Tensor, operator: SparseOperator, noise: ShotNoise) -> Tensor:
    """``⟨ψ|O|ψ⟩`` per example estimated from ``noise.shots`` measurements of each Pauli string of ``O``
    (``psi``: complex ``(batch, 2ⁿ)`` or the state tuple)."""
    table = _StringTable([operator], operator.n_qubits, ["the observable"]).to(as_complex(psi).real.device)
    return table.measure(as_complex(psi), noise)[:, 0]


# -- the system -------------------------------------------------------------------------------------------------
class QuantumSystem(EnergySystem):
    r"""Qubits in the ground state of ``H(θ, x) = H₀ + Σ_i x_i H_{x_i} + Σ_j θ_j H_{θ_j}``.

    Energy ``E(θ, x, ψ) = ⟨ψ|H|ψ⟩/⟨ψ|ψ⟩`` per example; state: one variable ``psi`` ``(2ⁿ, 2)``, the real and
    imaginary parts of ``ψ`` (see :mod:`eqprop.systems.quantum` for why real); parameters: one vector ``couplings`` (θ).
    ``∂E/∂θ_j = ⟨ψ|H_{θ_j}|ψ⟩/⟨ψ|ψ⟩`` in closed form (Hellmann–Feynman), so EqProp's contrast is a difference
    of measured expectation values; with ``shots`` set, each is estimated from that many measurements.
    Relax it with :class:`~eqprop.solvers.ground_state.GroundState` and train it against an
    :class:`ObservableCost`.

    Args:
        n_qubits: qubits (at most ``max_qubits``, and what memory allows).
        inputs: the operators ``H_{x_i}`` that the inputs multiply (each a Pauli label, a term ``(c, label)``, a
            list of terms, a :class:`SparseOperator` or a matrix).
        couplings: the operators ``H_{θ_j}`` that the parameters multiply.
        base: the fixed part ``H₀`` (default: none).
        init_scale: ``θ ~ U(−init_scale, init_scale)``, or a tensor of initial values.
        generator: for the initial parameters.
        shots: a :class:`ShotNoise` model for the measured ``⟨H_{θ_j}⟩`` (default: exact expectation values).
        max_qubits: the hard limit (:func:`check_memory`).

    Raises:
        ConfigError: an operator that is not Hermitian, or on other qubits; too many qubits for the limit or the
            memory (the message gives the figures).

    Example:
        >>> net = QuantumSystem(2, base=[(-1.0, "XI"), (-1.0, "IX")], inputs=["ZI"], couplings=["ZZ", "IZ"])
        >>> cost, x, y = ObservableCost.readout(2), torch.tensor([[0.5], [-0.5]]), torch.tensor([0, 1])
        >>> free = eqprop.solve(net, x, eqprop.GroundState())              # exact ground states
        >>> est = eqprop.EqProp(beta=0.1).gradients(net, cost, eqprop.GroundState(), x, y)
        >>> est.grads["system.couplings"].shape
        torch.Size([2])
    """

    def __init__(
        self,
        n_qubits: int,
        *,
        inputs: Sequence[Any],
        couplings: Sequence[Any],
        base: Any = None,
        init_scale: float | Tensor = 0.1,
        generator: torch.Generator | None = None,
        shots: ShotNoise | None = None,
        max_qubits: int = MAX_QUBITS,
    ) -> None:
        super().__init__()
        check_memory(n_qubits, max_qubits=max_qubits)
        if not couplings:
            raise ConfigError("QuantumSystem: no couplings H_θ to train; give couplings=[...]")
        kw = {"max_qubits": max_qubits}
        h0 = SparseOperator.zero(n_qubits) if base is None else as_operator(base, n_qubits, name="base", **kw)
        ins = [as_operator(op, n_qubits, name=f"inputs[{i}]", **kw) for i, op in enumerate(inputs)]
        pars = [as_operator(op, n_qubits, name=f"couplings[{j}]", **kw) for j, op in enumerate(couplings)]
        self.n_qubits = n_qubits
        self.operators: tuple[SparseOperator, ...] = (h0, *ins, *pars)
        masks = np.unique(np.concatenate([op.masks for op in self.operators]))
        check_memory(n_qubits, nonzeros_per_row=max(len(masks), 1), max_qubits=max_qubits)
        self.table = OperatorTable(self.operators, n_qubits)
        self.n_inputs, self.n_couplings = len(ins), len(pars)
        self.input_shape = (len(ins),)
        self.variables = (Variable("psi", (2**n_qubits, 2)),)
        if isinstance(init_scale, Tensor):
            if init_scale.shape != (len(pars),):
                raise ConfigError(
                    f"QuantumSystem: {len(pars)} couplings, initial values of shape {tuple(init_scale.shape)}"
                )
            theta = init_scale.detach().clone().to(torch.get_default_dtype())
        else:
            theta = torch.empty(len(pars)).uniform_(-init_scale, init_scale, generator=generator)
        self.couplings = nn.Parameter(theta)
        self.shots = shots
        self._strings: _StringTable | None = None

    def extra_repr(self) -> str:
        return f"n_qubits={self.n_qubits}, inputs={self.n_inputs}, couplings={self.n_couplings}"

    def _label(self) -> str:
        return f"QuantumSystem({self.n_qubits} qubits)"

    def check_cost(self, cost: nn.Module) -> None:
        """Refuse a cost other than an :class:`ObservableCost` on this system's qubits: the ground-state solver
        nudges the Hamiltonian by an observable, not a state variable by a force."""
        if not isinstance(cost, ObservableCost):
            raise ConfigError(
                f"{self._label()} is trained against an observable; {type(cost).__name__} is not an ObservableCost",
                hint="use cost.kind = 'observable_readout' (ObservableCost.readout(n_qubits) in Python)",
            )
        if cost.n_qubits != self.n_qubits:
            raise ConfigError(
                f"the ObservableCost reads {cost.n_qubits} qubits but {self._label()} has {self.n_qubits}",
                hint=f"build the cost for {self.n_qubits} qubits",
            )

    @property
    def dim(self) -> int:
        return 2**self.n_qubits

    @property
    def is_real(self) -> bool:
        """Whether every operator is real (then ground states are real, and the solvers work in float64)."""
        return self.table.is_real

    def init_state(self, x: Tensor) -> State:
        """The uniform superposition ``|+⟩^{⊗n}``: a valid (nonzero) start, and Lanczos' default warm start."""
        s = x.new_zeros(x.shape[0], self.dim, 2)
        s[:, :, 0] = 1.0 / math.sqrt(self.dim)
        return (s,)

    def weights(self, x: Tensor) -> Tensor:
        """The coefficient of every operator per example, ``(batch, 1 + inputs + couplings)``: ``[1, x, θ]``."""
        theta = self.couplings.to(x.dtype).expand(x.shape[0], -1)
        return torch.cat((x.new_ones(x.shape[0], 1), x, theta), 1)

    def hamiltonian(self, x: Tensor) -> tuple[np.ndarray, Tensor]:
        """``H(θ, x)`` per example in flip form: the masks and the diagonals ``(batch, masks, 2ⁿ)`` (complex,
        differentiable in θ and x)."""
        return self.table.masks, self.table.assemble(self.weights(x))

    def dense_hamiltonian(self, x: Tensor) -> Tensor:
        """``H(θ, x)`` as dense matrices ``(batch, 2ⁿ, 2ⁿ)`` (complex, differentiable): for small systems."""
        return self.table.dense(self.hamiltonian(x)[1])

    def energy(self, x: Tensor, state: State) -> Tensor:
        psi = as_complex(state)
        return (self.table.expectations(psi) * self.weights(x).to(psi.real.dtype)).sum(1)

    def coupling_expectations(self, state: State) -> Tensor:
        """``⟨H_{θ_j}⟩`` per example, ``(batch, couplings)``: exact, or measured with :attr:`shots`."""
        psi = as_complex(state)
        if self.shots is None:
            return self.table.expectations(psi)[:, 1 + self.n_inputs :]
        if self._strings is None:
            names = [f"couplings[{j}]" for j in range(self.n_couplings)]
            self._strings = _StringTable(self.operators[1 + self.n_inputs :], self.n_qubits, names)
        strings = self._strings.to(psi.real.device)
        norm = (psi.real.square() + psi.imag.square()).sum(1, keepdim=True).sqrt()
        return strings.measure(psi / norm, self.shots)

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """Hellmann–Feynman: ``∂E/∂θ_j = ⟨ψ|H_{θ_j}|ψ⟩/⟨ψ|ψ⟩``, batch mean."""
        return {"couplings": self.coupling_expectations(state).mean(0).to(self.couplings.dtype)}

    def param_grad_difference(
        self,
        x: Tensor,
        state_a: State,
        state_b: State,
        *,
        scale: float = 1.0,
        out: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """``scale·(⟨H_θ⟩_b − ⟨H_θ⟩_a)``, batch mean: the difference of two measured expectation values."""
        diff = (self.coupling_expectations(state_b) - self.coupling_expectations(state_a)).mean(0)
        g = (diff * scale).to(self.couplings.dtype)
        if out is not None and "couplings" in out:
            g = out["couplings"].copy_(g)
        return {"couplings": g}


# -- a ready-made network ---------------------------------------------------------------------------------------
def transverse_ising_network(
    n_inputs: int,
    n_hidden: int = 1,
    *,
    transverse: float = 1.0,
    input_operator: str = "Z",
    init_scale: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[QuantumSystem, ObservableCost]:
    r"""A transverse-field Ising network with a readout qubit, and its binary readout cost.

    Qubits: ``n_inputs`` input qubits (input ``x_i`` is a field ``x_i·Z_i``, or ``X_i``), ``n_hidden`` hidden ones,
    and the readout qubit last. ``H₀ = −transverse·Σ_q X_q``; the trainable couplings are a longitudinal field
    ``Z_q`` on every qubit and ``Z_pZ_q`` on every pair. With ``transverse > 0`` and only ``Z`` terms trained,
    ``H`` is stoquastic and connected, so its ground state is unique (Perron–Frobenius): EqProp's state is a
    smooth function of θ and x.
    """
    if n_inputs < 1 or n_hidden < 0:
        raise ConfigError(
            f"transverse_ising_network({n_inputs}, {n_hidden}): need >= 1 input and >= 0 hidden"
        )
    if input_operator not in ("X", "Z"):
        raise ConfigError(f"transverse_ising_network(input_operator={input_operator!r}): choose 'Z' or 'X'")
    n = n_inputs + n_hidden + 1
    base = [(-transverse, {q: "X"}) for q in range(n)]
    inputs = [(1.0, {i: input_operator}) for i in range(n_inputs)]
    couplings = [(1.0, {q: "Z"}) for q in range(n)]
    couplings += [(1.0, {p: "Z", q: "Z"}) for p in range(n) for q in range(p + 1, n)]
    system = QuantumSystem(
        n, inputs=inputs, couplings=couplings, base=base, init_scale=init_scale, generator=generator
    )
    return system, ObservableCost.readout(n, -1)
