r"""Quantum Equilibrium Propagation: qubit Hamiltonians whose ground state is the equilibrium.

The energy functional of a state vector ``ψ`` is the mean energy ``E(θ, x, ψ) = ⟨ψ|H(θ, x)|ψ⟩/⟨ψ|ψ⟩`` of

.. math::
    H(θ, x) = H_0 + \sum_i x_i H_{x_i} + \sum_j θ_j H_{θ_j},

minimised by the ground state. The cost is an observable, ``C(ψ) = ⟨ψ|O_y|ψ⟩/⟨ψ|ψ⟩``, so the nudged equilibrium
is the ground state of ``H + β·O_y``, and ``∂E/∂θ_j = ⟨ψ|H_{θ_j}|ψ⟩`` (Hellmann–Feynman): EqProp reads the
difference of these expectation values between two nudged ground states (Scellier 2024, arXiv 2406.00879;
Wanjura & Marquardt 2025, arXiv 2406.06482).

Operators are built from Pauli strings on ``n ≤ 14`` qubits by bit tricks on the basis indices and stored in flip
form (:mod:`~eqprop.systems.quantum.operators`). The state is one variable ``psi`` of shape ``(2ⁿ, 2)``: the real
and imaginary parts of ``ψ`` in ``torch.view_as_real`` layout (:mod:`~eqprop.systems.quantum.states`). A real
tensor, because the library's states are real tensors of the system's dtype (``TotalEnergy.grad`` reads a complex
state as holomorphic EqProp), and because autograd on ``E`` in ``(Re ψ, Im ψ)`` is then the gradient of the
Rayleigh quotient, ``2(H − E)ψ/⟨ψ|ψ⟩``: the generic paths (``state_grad``, ``Equilibrium.kkt_residual``, the
autograd ``param_grads``, implicit differentiation) mean what they mean for every system.

Modules: :mod:`~eqprop.systems.quantum.operators` (Pauli strings, :class:`SparseOperator`, the Hermiticity and
memory checks), :mod:`~eqprop.systems.quantum.states` (ground states of matrices, the torch layout,
:class:`OperatorTable`), :mod:`~eqprop.systems.quantum.system` (:class:`QuantumSystem`, :class:`ShotNoise`,
:func:`transverse_ising_network`), :mod:`~eqprop.systems.quantum.cost` (:class:`ObservableCost`) and
:mod:`~eqprop.systems.quantum.configs` (the run-configuration kinds ``quantum_ising`` and ``observable_readout``).
The solver is :class:`~eqprop.solvers.GroundState`.
"""

from eqprop.systems.quantum.cost import ObservableCost
from eqprop.systems.quantum.operators import (
    LANCZOS_ABOVE,
    MAX_QUBITS,
    SparseOperator,
    Term,
    as_operator,
    available_memory,
    check_hermitian,
    check_memory,
    flip_form_matrix,
    pauli_string,
    pauli_sum,
)
from eqprop.systems.quantum.states import OperatorTable, as_complex, as_state, fix_phase, lowest_eigenpairs
from eqprop.systems.quantum.system import QuantumSystem, ShotNoise, measure, transverse_ising_network

__all__ = [
    "LANCZOS_ABOVE",
    "MAX_QUBITS",
    "ObservableCost",
    "OperatorTable",
    "QuantumSystem",
    "ShotNoise",
    "SparseOperator",
    "Term",
    "as_complex",
    "as_operator",
    "as_state",
    "available_memory",
    "check_hermitian",
    "check_memory",
    "fix_phase",
    "flip_form_matrix",
    "lowest_eigenpairs",
    "measure",
    "pauli_string",
    "pauli_sum",
    "transverse_ising_network",
]
