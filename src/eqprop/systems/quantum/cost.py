"""The cost of a quantum system: an observable, so that nudging adds ``β·O_y`` to the Hamiltonian."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eqprop._types import State
from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.systems.quantum.operators import MAX_QUBITS, SparseOperator, as_operator
from eqprop.systems.quantum.states import OperatorTable, as_complex

__all__ = ["ObservableCost"]


class ObservableCost(Cost):
    r"""A measured cost: ``C(ψ, y) = Σ_k t_k ⟨ψ|O_k|ψ⟩/⟨ψ|ψ⟩`` with ``t = onehot(y)``, so ``C = ⟨O_y⟩``.

    Nudging by ``β`` adds ``β·Σ_k t_k O_k`` to the Hamiltonian (the ground-state solver folds it in). ``O_k`` is the
    observable whose expectation should be *low* for class ``k``; the prediction is the class with the lowest
    one (``predict`` returns ``−⟨O_k⟩``, argmax = prediction). Float targets ``(batch, classes)`` weight the
    observables as given.

    :meth:`readout` gives the binary cost of one readout qubit, ``O_y = ½(1 − s_y Z_q)`` with ``s_0 = +1`` and
    ``s_1 = −1``: the probability of reading the wrong outcome, and the prediction ``sign⟨Z_q⟩`` (+ → class 0).

    Args:
        observables: one Hermitian operator per class (as :func:`as_operator` takes them).
        n_qubits: qubits of the system it reads.
    """

    def __init__(self, observables: Sequence[Any], n_qubits: int, *, max_qubits: int = MAX_QUBITS) -> None:
        super().__init__()
        if len(observables) < 2:
            raise ConfigError(f"ObservableCost: need one observable per class (>= 2), got {len(observables)}")
        ops = [
            as_operator(o, n_qubits, name=f"observables[{k}]", max_qubits=max_qubits)
            for k, o in enumerate(observables)
        ]
        self.n_qubits, self.classes = n_qubits, len(ops)
        self.observables: tuple[SparseOperator, ...] = tuple(ops)
        self.table = OperatorTable(ops, n_qubits)

    @classmethod
    def readout(cls, n_qubits: int, qubit: int = -1) -> ObservableCost:
        """Two classes read on ``qubit`` (negative: counted from the last): ``O_0 = ½(1 − Z_q)``, ``O_1 = ½(1 + Z_q)``.

        Example:
            >>> from eqprop.systems.quantum import ObservableCost, as_state
            >>> cost = ObservableCost.readout(3)                       # read the last of 3 qubits
            >>> up = as_state(torch.eye(8, dtype=torch.float64)[:1])   # |000⟩: Z = +1 on every qubit
            >>> cost.predict(up).argmax(1)                              # class 0
            tensor([0])
        """
        if isinstance(qubit, bool) or not isinstance(qubit, int) or not -n_qubits <= qubit < n_qubits:
            raise ConfigError(
                f"ObservableCost.readout: qubit {qubit!r} is not one of the {n_qubits} qubits",
                hint=f"give a qubit in 0 … {n_qubits - 1}, or a negative index (-1: the last)",
            )
        q = qubit % n_qubits
        one = SparseOperator.from_terms([(1.0, "I" * n_qubits)], n_qubits)
        z = SparseOperator.from_terms([(1.0, {q: "Z"})], n_qubits)
        return cls([0.5 * (one - z), 0.5 * (one + z)], n_qubits)

    def prepare_target(self, y: Tensor, state_like: Tensor) -> Tensor:
        if y.is_floating_point():
            if y.shape != (state_like.shape[0], self.classes):
                raise ConfigError(
                    f"ObservableCost: float targets must have shape (batch, {self.classes}), got {tuple(y.shape)}"
                )
            return y.to(state_like.dtype)
        if y.dim() != 1:
            raise ConfigError(
                f"ObservableCost: integer labels must have shape (batch,), got {tuple(y.shape)}"
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.classes):
            raise ConfigError(
                f"ObservableCost: labels must lie in [0, {self.classes}), got [{int(y.min())}, {int(y.max())}]"
            )
        return torch.nn.functional.one_hot(y.long(), self.classes).to(state_like.dtype)

    def expectations(self, state: State) -> Tensor:
        """``⟨O_k⟩`` per example, ``(batch, classes)``."""
        return self.table.expectations(as_complex(state))

    def forward(self, state: State, target: Tensor) -> Tensor:
        e = self.expectations(state)
        return (e * target.to(e.dtype)).sum(1)

    def predict(self, state: State) -> Tensor:
        return -self.expectations(state)

    def hamiltonian(self, weights: Tensor) -> tuple[np.ndarray, Tensor]:
        """``Σ_k w_k O_k`` per example in flip form (``weights = β·target``)."""
        return self.table.masks, self.table.assemble(weights)

    def nudge(self, s: Tensor | None, target: Tensor) -> tuple[float, Tensor]:
        raise ConfigError(
            "ObservableCost nudges the Hamiltonian (H + β·O_y), not a state variable: it has no block-minimiser form",
            hint="relax quantum systems with GroundState()",
        )

    def check_beta(self, beta: float, system: Any = None) -> None:
        super().check_beta(beta)
