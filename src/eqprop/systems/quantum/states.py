"""State vectors: the ground state of a matrix (numpy), the torch layout of ``ψ``, and operators evaluated on
batches of states (torch, differentiable, on any device).

The state is one variable ``psi`` of shape ``(2ⁿ, 2)``: the real and imaginary parts of ``ψ`` in
``torch.view_as_real`` layout (see :mod:`eqprop.systems.quantum` for why real).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from eqprop._types import State
from eqprop.errors import ConvergenceError
from eqprop.systems.quantum.operators import LANCZOS_ABOVE, SparseOperator

__all__ = ["OperatorTable", "as_complex", "as_state", "fix_phase", "lowest_eigenpairs"]


# -- ground states (numpy) --------------------------------------------------------------------------------------
def lowest_eigenpairs(
    matrix: np.ndarray | sp.spmatrix,
    *,
    v0: np.ndarray | None = None,
    lanczos: bool | None = None,
    tol: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The two lowest eigenvalues ``(E₀, E₁)`` of a Hermitian matrix and the ground state (unit norm).

    ``lanczos=None`` picks a dense ``eigh`` (torch's, which follows ``torch.set_num_threads``) for a dense matrix
    or a dimension up to :data:`LANCZOS_ABOVE`, else Lanczos: ``eigsh(k=2, which="SA")`` started from ``v0`` (a
    warm start), to ARPACK tolerance ``tol`` (0: machine precision). Below 8 states it is always dense (ARPACK
    needs more room than two eigenpairs).
    """
    dim = matrix.shape[0]
    use_lanczos = (dim > LANCZOS_ABOVE and sp.issparse(matrix)) if lanczos is None else lanczos
    if use_lanczos and dim >= 8:
        from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

        start = None
        if v0 is not None and np.linalg.norm(v0) > 0:
            start = np.asarray(v0)
            if not np.iscomplexobj(matrix) and np.iscomplexobj(start):
                start = _real_gauge(start)  # a real problem: the real vector with the same ray
            start = start.astype(np.result_type(matrix.dtype, np.float64))
        try:
            values, vectors = eigsh(matrix, k=2, which="SA", v0=start, tol=tol)
        except (ArpackNoConvergence, ArpackError) as err:
            raise ConvergenceError(
                f"Lanczos (eigsh) found no ground state of a {dim}-dimensional Hamiltonian: {err}",
                hint="use the dense solver (GroundState(method='dense')) or a larger lanczos tolerance",
            ) from err
        order = np.argsort(values)
        values, psi = values[order], vectors[:, order[0]]
    else:
        dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
        # torch's LAPACK follows torch.set_num_threads; numpy's OpenBLAS threads spin on a busy machine
        vals, vecs = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(dense)))
        values, psi = vals.numpy()[:2] if dim > 1 else np.r_[vals.numpy(), np.inf], vecs[:, 0].numpy()
    return values, psi / np.linalg.norm(psi)


def _real_gauge(v: np.ndarray) -> np.ndarray:
    """A complex vector turned real by the global phase that makes its largest element real."""
    k = int(np.argmax(np.abs(v)))
    return (v * np.exp(-1j * np.angle(v[k]))).real


def fix_phase(psi: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """``ψ`` times the global phase making ``⟨reference|ψ⟩`` real and positive (when it is not ~0), else its
    largest element real and positive: the gauge of every ground state returned here."""
    if reference is not None:
        overlap = np.vdot(reference, psi)
        if abs(overlap) > 1e-6 * np.linalg.norm(reference):
            return psi * (np.conj(overlap) / abs(overlap))
    k = int(np.argmax(np.abs(psi)))
    return psi * (np.conj(psi[k]) / abs(psi[k]))


# -- torch side -------------------------------------------------------------------------------------------------
def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex64 if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.complex128


def as_complex(state: Tensor | State) -> Tensor:
    """``ψ`` as a complex ``(batch, 2ⁿ)`` tensor from the state variable ``(batch, 2ⁿ, 2)`` (or the state tuple)."""
    s = state[0] if isinstance(state, tuple) else state
    if s.is_complex():
        return s
    return torch.view_as_complex(s.contiguous())


def as_state(psi: Tensor, dtype: torch.dtype | None = None) -> State:
    """The state tuple ``((batch, 2ⁿ, 2),)`` of a complex or real ``(batch, 2ⁿ)`` tensor of amplitudes."""
    if not psi.is_complex():
        psi = torch.complex(psi, torch.zeros_like(psi))
    s = torch.view_as_real(psi)
    return (s if dtype is None else s.to(dtype),)


class OperatorTable(nn.Module):
    """Operators on the same qubits, stacked in flip form for batched torch evaluation: for each flip mask that
    any of them uses, the diagonals of those that use it (non-persistent buffers: they follow the module's
    device, and are rebuilt from the operators, not saved)."""

    def __init__(self, operators: Sequence[SparseOperator], n_qubits: int) -> None:
        super().__init__()
        dim = 2**n_qubits
        self.n_qubits, self.n_ops = n_qubits, len(operators)
        all_masks = [op.masks for op in operators]
        masks = np.unique(np.concatenate(all_masks)) if all_masks else np.zeros(0, np.int64)
        self.masks = masks.astype(np.int64)
        self.is_real = all(op.is_real for op in operators)
        rows, owners, starts = [], [], [0]
        for m in self.masks:
            for o, op in enumerate(operators):
                k = int(np.searchsorted(op.masks, m))
                if k < len(op.masks) and op.masks[k] == m:
                    rows.append(op.diagonals[k])
                    owners.append(o)
            starts.append(len(rows))
        self.starts = starts
        a = np.arange(dim, dtype=np.int64)
        self.register_buffer("perm", torch.from_numpy(a[None, :] ^ self.masks[:, None]), persistent=False)
        diag = np.array(rows, dtype=np.complex128).reshape(len(rows), dim)
        # held as (real, imaginary) pairs, a real buffer: Module.to(dtype) casts a complex buffer to a real dtype
        # by dropping its imaginary part (a Y term's i)
        self.register_buffer("diag_parts", torch.view_as_real(torch.from_numpy(diag)), persistent=False)
        self.register_buffer("owner", torch.tensor(owners, dtype=torch.long), persistent=False)

    @property
    def diag(self) -> Tensor:
        """The stacked diagonals, ``(rows, 2ⁿ)`` complex (a view of the buffer ``diag_parts``)."""
        return torch.view_as_complex(self.diag_parts)

    def matrix_elements(self, bra: Tensor, ket: Tensor) -> Tensor:
        """``⟨bra|A_o|ket⟩`` for every operator, ``(batch, n_ops)`` complex (not normalised)."""
        out = torch.zeros(ket.shape[0], self.n_ops, dtype=ket.dtype, device=ket.device)
        diag = self.diag.to(ket.dtype)
        conj = bra.conj()
        for k in range(len(self.masks)):
            s, e = self.starts[k], self.starts[k + 1]
            vals = (conj * ket[:, self.perm[k]]) @ diag[s:e].t()
            out = out.index_add(1, self.owner[s:e], vals)
        return out

    def expectations(self, psi: Tensor) -> Tensor:
        """``⟨ψ|A_o|ψ⟩/⟨ψ|ψ⟩`` for every operator, ``(batch, n_ops)`` real."""
        norm = (psi.real.square() + psi.imag.square()).sum(1, keepdim=True)
        return self.matrix_elements(psi, psi).real / norm

    def assemble(self, weights: Tensor) -> Tensor:
        """The flip-form diagonals of ``Σ_o w_o A_o`` per example, ``(batch, masks, 2ⁿ)`` complex (differentiable
        in ``weights``)."""
        diag = self.diag.to(_complex_dtype(weights.dtype))
        w = weights.to(diag.dtype)
        parts = [
            w[:, self.owner[self.starts[k] : self.starts[k + 1]]] @ diag[self.starts[k] : self.starts[k + 1]]
            for k in range(len(self.masks))
        ]
        if not parts:
            return w.new_zeros(weights.shape[0], 0, 2**self.n_qubits)
        return torch.stack(parts, 1)

    def dense(self, diagonals: Tensor) -> Tensor:
        """The dense matrices ``(batch, 2ⁿ, 2ⁿ)`` of flip-form diagonals ``(batch, masks, 2ⁿ)`` (differentiable)."""
        dim = 2**self.n_qubits
        flat = (torch.arange(dim, device=self.perm.device) * dim)[None, :] + self.perm
        out = diagonals.new_zeros(diagonals.shape[0], dim * dim)
        out = out.index_add(1, flat.reshape(-1), diagonals.reshape(diagonals.shape[0], -1))
        return out.reshape(-1, dim, dim)
