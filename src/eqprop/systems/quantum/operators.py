r"""Operators on qubits: Pauli strings built by bit tricks, the flip form that stores them, and the memory checks.

Qubit ``q`` is the ``q``-th letter of a label such as ``"XZI"`` and the ``q``-th factor of the Kronecker product, so
it is bit ``n − 1 − q`` of a basis index; ``|0⟩`` is the ``Z = +1`` state. A Pauli string with flip mask ``m_x``
(its X and Y letters) and phase mask ``m_z`` (its Y and Z letters) maps ``|b⟩`` to ``i^{n_Y}(−1)^{|b ∧ m_z|}|b ⊕ m_x⟩``.
Every operator is stored in that *flip form*: for each flip mask ``m`` it uses, the diagonal ``D_m`` of the matrix
elements ``A[a, a ⊕ m] = D_m[a]`` (:class:`SparseOperator`). A product ``Aψ`` is then a gather and a multiply per
mask, in numpy (the solvers) as in torch (the energy: :class:`~eqprop.systems.quantum.states.OperatorTable`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from eqprop.errors import ConfigError

__all__ = [
    "LANCZOS_ABOVE",
    "MAX_QUBITS",
    "SparseOperator",
    "Term",
    "as_operator",
    "available_memory",
    "check_hermitian",
    "check_memory",
    "flip_form_matrix",
    "pauli_string",
    "pauli_sum",
]

MAX_QUBITS = 14
"""The default hard limit on the number of qubits (a state vector of 2¹⁴ amplitudes is 256 KiB)."""

LANCZOS_ABOVE = 256
"""The Hilbert-space dimension above which ground states come from Lanczos (``eigsh``), not a dense ``eigh``."""

_LANCZOS_VECTORS = 24
"""Vectors a Lanczos solve holds at once (ARPACK's default basis of 20 for two eigenpairs, plus work vectors)."""

Term = tuple[complex, str | Mapping[int, str]]
"""One Pauli string with its coefficient: ``(0.5, "XZI")`` or ``(0.5, {0: "X", 1: "Z"})`` (unnamed qubits: I)."""


# -- memory -----------------------------------------------------------------------------------------------------
def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def available_memory() -> int | None:
    """The memory the system reports as available (``MemAvailable``), in bytes; ``None`` where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(
    n_qubits: int,
    *,
    nonzeros_per_row: int = 1,
    vectors: int = _LANCZOS_VECTORS,
    max_qubits: int = MAX_QUBITS,
    what: str = "QuantumSystem",
) -> int:
    """Refuse ``n_qubits`` above ``max_qubits``, or needing more memory than is available; return the bytes needed.

    The estimate: ``vectors`` complex state vectors of ``2ⁿ × 16`` bytes, and the Hamiltonian's
    ``nonzeros_per_row × 2ⁿ`` nonzeros at 16 bytes of value and 4 of column index each.
    """
    if isinstance(n_qubits, bool) or not isinstance(n_qubits, int) or n_qubits < 1:
        raise ConfigError(f"{what}: n_qubits must be an integer >= 1, got {n_qubits!r}")
    dim = 2**n_qubits
    vector = dim * 16
    matrix = nonzeros_per_row * dim * 20 + (dim + 1) * 4
    total = vectors * vector + matrix
    figures = (
        f"each state vector needs 2^{n_qubits} × 16 B = {_bytes(vector)}, the Hamiltonian's "
        f"{nonzeros_per_row * dim:,} nonzeros ≈ {_bytes(matrix)}, {vectors} vectors and the matrix ≈ {_bytes(total)}"
    )
    free = available_memory()
    if n_qubits > max_qubits:
        raise ConfigError(
            f"{what}: {n_qubits} qubits is over the limit of {max_qubits} ({figures})",
            hint=f"use at most {max_qubits} qubits, or pass max_qubits={n_qubits} if {_bytes(total)} fits in memory"
            + ("" if free is None else f" (about {_bytes(free)} available)"),
        )
    if free is not None and total > free:
        raise ConfigError(
            f"{what}: {n_qubits} qubits need more memory than is available ({figures}; {_bytes(free)} available)",
            hint="use fewer qubits",
        )
    return total


# -- Pauli strings and the flip form ----------------------------------------------------------------------------
def _parse_term(term: Any, n: int) -> tuple[complex, int, int]:
    """``(coefficient, flip mask, phase mask)`` of one Pauli string."""
    if not (isinstance(term, tuple | list) and len(term) == 2):
        raise ConfigError(f"a Pauli term must be (coefficient, 'XZI…' or {{qubit: 'X'}}), got {term!r}")
    coef, spec = term
    if isinstance(coef, bool) or not isinstance(coef, int | float | complex | np.number):
        raise ConfigError(f"Pauli term {term!r}: the coefficient must be a number")
    if isinstance(spec, str):
        if len(spec) != n:
            raise ConfigError(f"Pauli string {spec!r} has {len(spec)} letters for {n} qubits")
        items: Any = enumerate(spec)
    elif isinstance(spec, Mapping):
        items = spec.items()
    else:
        raise ConfigError(f"Pauli term {term!r}: name the letters as 'XZI…' or {{qubit: 'X'}}")
    flip = phase = 0
    for q, letter in items:
        if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q < n:
            raise ConfigError(f"Pauli term {term!r}: qubit {q!r} is outside 0..{n - 1}")
        p = str(letter).upper()
        if p not in ("I", "X", "Y", "Z"):
            raise ConfigError(f"Pauli term {term!r}: {letter!r} is not one of I, X, Y, Z")
        bit = 1 << (n - 1 - q)
        if p in ("X", "Y"):
            flip |= bit
        if p in ("Y", "Z"):
            phase |= bit
    return complex(coef), flip, phase


def _string_diagonal(flip: int, phase: int, dim: int) -> np.ndarray:
    """``P[a, a ⊕ flip]`` for every row ``a`` of the Pauli string: ``i^{n_Y}(−1)^{|(a ⊕ flip) ∧ phase|}``."""
    a = np.arange(dim, dtype=np.int64)
    sign = 1.0 - 2.0 * (np.bitwise_count((a ^ flip) & phase) & 1)
    n_y = int(flip & phase).bit_count()
    return (1j**n_y) * sign


def _label(flip: int, phase: int, n: int) -> str:
    out = []
    for q in range(n):
        bit = 1 << (n - 1 - q)
        out.append("IZXY"[(bool(flip & bit) << 1) | bool(phase & bit)])
    return "".join(out)


@dataclass(frozen=True, eq=False)
class SparseOperator:
    r"""An operator on ``n_qubits`` qubits in flip form: ``A[a, a ⊕ masks[k]] = diagonals[k, a]``.

    Build it from Pauli strings (:meth:`from_terms`) or from any ``2ⁿ × 2ⁿ`` matrix (:meth:`from_matrix`);
    ``+``, ``−`` and scalar ``*`` combine operators. ``strings`` keeps the Pauli strings it was built from
    (``(coefficient, flip mask, phase mask)``), which a shot-noise model measures one by one; ``None`` for an
    operator given as a matrix.
    """

    n_qubits: int
    masks: np.ndarray
    diagonals: np.ndarray
    strings: tuple[tuple[complex, int, int], ...] | None

    @property
    def dim(self) -> int:
        return 2**self.n_qubits

    @property
    def is_real(self) -> bool:
        return not np.iscomplexobj(self.diagonals)

    @classmethod
    def zero(cls, n_qubits: int) -> SparseOperator:
        return cls(n_qubits, np.zeros(0, np.int64), np.zeros((0, 2**n_qubits)), ())

    @classmethod
    def from_terms(
        cls, terms: Sequence[Term], n_qubits: int, *, max_qubits: int = MAX_QUBITS
    ) -> SparseOperator:
        """``Σ c·P`` over ``terms``; equal strings are merged. Float64 diagonals when every element is real."""
        merged: dict[tuple[int, int], complex] = {}
        for term in terms:
            coef, flip, phase = _parse_term(term, n_qubits)
            merged[(flip, phase)] = merged.get((flip, phase), 0j) + coef
        strings = tuple((c, f, p) for (f, p), c in sorted(merged.items()) if c != 0)
        masks = np.array(sorted({f for _, f, _ in strings}), dtype=np.int64)
        check_memory(
            n_qubits, nonzeros_per_row=max(len(masks), 1), max_qubits=max_qubits, what="Pauli operator"
        )
        dim = 2**n_qubits
        diagonals = np.zeros((len(masks), dim), dtype=np.complex128)
        for c, f, p in strings:
            diagonals[np.searchsorted(masks, f)] += c * _string_diagonal(f, p, dim)
        return cls(n_qubits, masks, _real_if_real(diagonals), strings)

    @classmethod
    def from_matrix(cls, matrix: Any, *, max_qubits: int = MAX_QUBITS) -> SparseOperator:
        """Any square matrix of side ``2ⁿ`` (scipy sparse or dense), regrouped by flip mask ``row ⊕ column``."""
        coo = sp.coo_matrix(matrix)
        side = coo.shape[0]
        n = int(side).bit_length() - 1
        if coo.shape[0] != coo.shape[1] or side < 2 or 2**n != side:
            raise ConfigError(f"an operator on qubits must be square of side 2^n, got shape {coo.shape}")
        coo.sum_duplicates()
        rows, cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
        flips = rows ^ cols
        masks = np.unique(flips)
        check_memory(n, nonzeros_per_row=max(len(masks), 1), max_qubits=max_qubits, what="operator")
        diagonals = np.zeros((len(masks), side), dtype=np.complex128)
        diagonals[np.searchsorted(masks, flips), rows] = coo.data
        return cls(n, masks, _real_if_real(diagonals), None)

    def to_sparse(self) -> sp.csr_matrix:
        """The CSR matrix (float64, or complex128 when an element is complex)."""
        dim, m = self.dim, len(self.masks)
        a = np.arange(dim, dtype=np.int64)
        if m == 0:
            return sp.csr_matrix((dim, dim), dtype=self.diagonals.dtype)
        cols = (a[:, None] ^ self.masks[None, :]).ravel()
        out = sp.csr_matrix(
            (self.diagonals.T.ravel(), cols, np.arange(dim + 1, dtype=np.int64) * m), shape=(dim, dim)
        )
        out.eliminate_zeros()
        out.sort_indices()
        return out

    def to_dense(self) -> np.ndarray:
        out = np.zeros((self.dim, self.dim), dtype=self.diagonals.dtype)
        a = np.arange(self.dim)
        for m, d in zip(self.masks, self.diagonals, strict=True):
            out[a, a ^ m] = d
        return out

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``A v`` for ``v`` of shape ``(2ⁿ,)`` or ``(2ⁿ, k)``."""
        a = np.arange(self.dim)
        out = np.zeros(v.shape, dtype=np.result_type(v, self.diagonals))
        for m, d in zip(self.masks, self.diagonals, strict=True):
            out += (d if v.ndim == 1 else d[:, None]) * v[a ^ m]
        return out

    def expectation(self, psi: np.ndarray) -> float:
        """``⟨ψ|A|ψ⟩/⟨ψ|ψ⟩`` (real part)."""
        return float(np.vdot(psi, self.matvec(psi)).real / np.vdot(psi, psi).real)

    def hermitian_error(self) -> float:
        """``max |A − A†|``: zero for a Hermitian operator (``D_m[a] = conj(D_m[a ⊕ m])``)."""
        a = np.arange(self.dim)
        worst = 0.0
        for m, d in zip(self.masks, self.diagonals, strict=True):
            worst = max(worst, float(np.abs(d - np.conj(d[a ^ m])).max()))
        return worst

    def unit_strings(self) -> list[tuple[complex, SparseOperator]]:
        """Each Pauli string as ``(coefficient, the string as an operator of its own with coefficient 1)``: what a
        measurement reads one setting at a time. Empty for an operator given as a matrix (``strings`` is None)."""
        out = []
        for c, f, p in self.strings or ():
            diag = _real_if_real(_string_diagonal(f, p, self.dim)[None, :])
            out.append((c, SparseOperator(self.n_qubits, np.array([f], np.int64), diag, ((1.0, f, p),))))
        return out

    def labels(self) -> list[tuple[complex, str]]:
        """The Pauli strings as ``(coefficient, "XZI…")`` (for display); empty for a matrix operator."""
        return [(c, _label(f, p, self.n_qubits)) for c, f, p in self.strings or ()]

    # -- arithmetic ---------------------------------------------------------------------------------------------
    def __add__(self, other: SparseOperator) -> SparseOperator:
        if not isinstance(other, SparseOperator):
            return NotImplemented
        if other.n_qubits != self.n_qubits:
            raise ConfigError(f"cannot add operators on {self.n_qubits} and {other.n_qubits} qubits")
        masks = np.union1d(self.masks, other.masks).astype(np.int64)
        dtype = np.result_type(self.diagonals, other.diagonals)
        diagonals = np.zeros((len(masks), self.dim), dtype=dtype)
        for op in (self, other):
            diagonals[np.searchsorted(masks, op.masks)] += op.diagonals
        strings = None
        if self.strings is not None and other.strings is not None:
            merged: dict[tuple[int, int], complex] = {}
            for c, f, p in (*self.strings, *other.strings):
                merged[(f, p)] = merged.get((f, p), 0j) + c
            strings = tuple((c, f, p) for (f, p), c in sorted(merged.items()) if c != 0)
        return SparseOperator(self.n_qubits, masks, diagonals, strings)

    def __mul__(self, scalar: complex) -> SparseOperator:
        if isinstance(scalar, bool) or not isinstance(scalar, int | float | complex | np.number):
            return NotImplemented
        strings = None if self.strings is None else tuple((c * scalar, f, p) for c, f, p in self.strings)
        return SparseOperator(self.n_qubits, self.masks, _real_if_real(self.diagonals * scalar), strings)

    __rmul__ = __mul__

    def __neg__(self) -> SparseOperator:
        return self * -1.0

    def __sub__(self, other: SparseOperator) -> SparseOperator:
        return self + (-other)


def _real_if_real(diagonals: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(diagonals) and not np.any(diagonals.imag):
        return np.ascontiguousarray(diagonals.real)
    return diagonals


def pauli_string(label: str, coefficient: complex = 1.0, *, max_qubits: int = MAX_QUBITS) -> sp.csr_matrix:
    """The CSR matrix of ``coefficient·P`` for a Pauli label such as ``"XZIY"`` (qubit 0 first, as in
    ``kron(X, Z, I, Y)``): float64, or complex128 when an element is complex (an odd number of Y's).

    Example:
        >>> pauli_string("XZ").toarray()
        array([[ 0.,  0.,  1.,  0.],
               [ 0., -0.,  0., -1.],
               [ 1.,  0.,  0.,  0.],
               [ 0., -1.,  0., -0.]])
    """
    if not isinstance(label, str) or not label:
        raise ConfigError(f"pauli_string: need a non-empty label such as 'XZI', got {label!r}")
    return SparseOperator.from_terms([(coefficient, label)], len(label), max_qubits=max_qubits).to_sparse()


def pauli_sum(terms: Sequence[Term], n_qubits: int, *, max_qubits: int = MAX_QUBITS) -> sp.csr_matrix:
    """The CSR matrix of ``Σ c·P`` over ``terms``, e.g. ``pauli_sum([(-1.0, {0: "Z", 1: "Z"}), (-0.5, "XI")], 2)``."""
    return SparseOperator.from_terms(terms, n_qubits, max_qubits=max_qubits).to_sparse()


def check_hermitian(
    operator: SparseOperator | Any, name: str = "the Hamiltonian", tol: float = 1e-12
) -> None:
    """Raise :class:`ConfigError` unless ``operator`` (a :class:`SparseOperator` or a matrix) is Hermitian to
    ``tol`` relative to its largest element."""
    op = operator if isinstance(operator, SparseOperator) else SparseOperator.from_matrix(operator)
    scale = float(np.abs(op.diagonals).max()) if op.diagonals.size else 0.0
    err = op.hermitian_error()
    if err > tol * max(scale, 1.0):
        raise ConfigError(
            f"{name} is not Hermitian: max |A − A†| = {err:.3g} (largest element {scale:.3g})",
            hint="use real coefficients on Pauli strings (each string is Hermitian), or add the Hermitian conjugate",
        )


def as_operator(
    spec: Any, n_qubits: int, *, name: str = "operator", max_qubits: int = MAX_QUBITS
) -> SparseOperator:
    """A Hermitian :class:`SparseOperator` from a :class:`SparseOperator`, a Pauli label (``"ZZII"`` or
    ``{0: "Z", 1: "Z"}``), one term ``(c, label)``, a list of terms, or a matrix (scipy sparse or numpy)."""
    if isinstance(spec, SparseOperator):
        op = spec
    elif isinstance(spec, str | Mapping):
        op = SparseOperator.from_terms([(1.0, spec)], n_qubits, max_qubits=max_qubits)
    elif sp.issparse(spec) or isinstance(spec, np.ndarray):
        op = SparseOperator.from_matrix(spec, max_qubits=max_qubits)
    elif (
        isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], int | float | complex | np.number)
    ):
        op = SparseOperator.from_terms([spec], n_qubits, max_qubits=max_qubits)
    elif isinstance(spec, Sequence):
        op = SparseOperator.from_terms(list(spec), n_qubits, max_qubits=max_qubits)
    else:
        raise ConfigError(f"{name}: cannot make an operator from {type(spec).__name__}")
    if op.n_qubits != n_qubits:
        raise ConfigError(f"{name} acts on {op.n_qubits} qubits, the system has {n_qubits}")
    check_hermitian(op, name)
    return op


def flip_form_matrix(masks: np.ndarray, diagonals: np.ndarray, *, dense: bool) -> np.ndarray | sp.csr_matrix:
    """The matrix ``A[a, a ⊕ masks[k]] = diagonals[k, a]`` of one example, dense or CSR."""
    dim = diagonals.shape[-1]
    a = np.arange(dim, dtype=np.int64)
    if dense:
        out = np.zeros((dim, dim), dtype=diagonals.dtype)
        for m, d in zip(masks, diagonals, strict=True):
            out[a, a ^ m] += d
        return out
    cols = (a[:, None] ^ masks[None, :]).ravel()
    indptr = np.arange(dim + 1, dtype=np.int64) * len(masks)
    return sp.csr_matrix((diagonals.T.ravel(), cols, indptr), shape=(dim, dim))
