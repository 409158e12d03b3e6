"""Architectures as equilibrium states: widths, energy, and the elementary moves between states.

Internal module of :mod:`eqprop.analysis.thermo` (reconstruction of Chinea Manrique de Lara 2020/2023, see
``docs/architecture-thermodynamics.md``): the energy of a layered architecture counts its interactions
(couplings between adjacent layers) and, optionally, its one-body fields (biases).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from eqprop.errors import ConfigError

__all__ = [
    "ENERGY_FORMS",
    "MOVE_KINDS",
    "Arch",
    "Move",
    "apply_move",
    "delta_energy",
    "energy",
    "interactions",
    "neighbours",
]

EnergyForm = Literal["count", "fan_in"]
ENERGY_FORMS: tuple[str, ...] = ("count", "fan_in")
MoveKind = Literal["add", "remove", "move", "insert", "delete"]
MOVE_KINDS: tuple[str, ...] = ("add", "remove", "move", "insert", "delete")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Arch:
    """A layered feed-forward architecture ``(n₀; n₁, …, n_L; n_{L+1})``: input, hidden and output widths.

    Dense feed-forward nets and layered Hopfield nets share this coupling graph (complete bipartite
    between adjacent layers), so every measure of :mod:`eqprop.analysis.thermo` applies to both.

    Args:
        widths: ``(n_in, n_1, …, n_L, n_out)``, at least two positive integers (``L = 0`` is a linear map).

    Raises:
        ConfigError: if fewer than two widths are given or one is not a positive integer.

    Example:
        >>> from eqprop.analysis.thermo import Arch, energy
        >>> a = Arch((784, 128, 64, 10))
        >>> a.hidden, a.depth, a.neurons
        ((128, 64), 2, 192)
        >>> energy(a)   # the number of parameters
        109386.0
    """

    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        widths = tuple(self.widths)
        if len(widths) < 2 or not all(_is_int(n) and n >= 1 for n in widths):
            raise ConfigError(
                f"Arch(widths={self.widths!r}): give at least two positive integer widths "
                "(input, hidden..., output), e.g. (784, 128, 10)"
            )
        object.__setattr__(self, "widths", widths)

    @classmethod
    def from_hidden(cls, n_in: int, hidden: Iterable[int], n_out: int) -> Arch:
        """The architecture ``n_in → hidden → n_out``."""
        return cls((n_in, *hidden, n_out))

    @classmethod
    def parse(cls, text: str) -> Arch:
        """Parse ``"784-128-64-10"`` (also ``x`` or ``,`` separated)."""
        parts = text.replace("x", "-").replace(",", "-").split("-")
        try:
            return cls(tuple(int(p) for p in parts if p.strip()))
        except ValueError as err:
            raise ConfigError(
                f"cannot read architecture {text!r}", hint="write the widths as 784-128-64-10"
            ) from err

    @property
    def n_in(self) -> int:
        return self.widths[0]

    @property
    def n_out(self) -> int:
        return self.widths[-1]

    @property
    def hidden(self) -> tuple[int, ...]:
        """The hidden widths ``(n_1, …, n_L)``."""
        return self.widths[1:-1]

    @property
    def depth(self) -> int:
        """``L``, the number of hidden layers."""
        return len(self.widths) - 2

    @property
    def neurons(self) -> int:
        """``N = Σ_l n_l``, the hidden neurons (the "particles")."""
        return sum(self.hidden)

    def __str__(self) -> str:
        return "-".join(map(str, self.widths))


def _check_form(form: str) -> None:
    if form not in ENERGY_FORMS:
        raise ConfigError(f"energy form {form!r} is unknown; choose one of {', '.join(ENERGY_FORMS)}")


def interactions(arch: Arch) -> int:
    """``Σ_{l=0}^{L} n_l n_{l+1}``: the pairwise couplings (weights) of the architecture."""
    w = arch.widths
    return sum(a * b for a, b in pairwise(w))


def energy(arch: Arch, *, bias: bool = True, form: EnergyForm = "count", gain: float = 1.0) -> float:
    r"""The internal energy ``U(a)`` of an architecture.

    .. math::
        U(a) = \sum_{l=0}^{L} n_l n_{l+1} + β_b \sum_{l=1}^{L+1} n_l  \qquad(\text{form} = \text{"count"})

    Unit bond energy per coupling plus one unit per one-body field (bias, ``β_b = 1`` when ``bias``): with
    biases ``U`` is the parameter count, without them the interaction count. ``form="fan_in"`` is the
    expected squared coupling energy at a fan-in initialisation ``σ_w² = gain/n_l``:
    ``U = gain Σ_{l=1}^{L+1} n_l (+ β_b Σ n_l)``, proportional to the neuron count.

    Args:
        arch: the architecture.
        bias: count the one-body fields (biases).
        form: ``"count"`` or ``"fan_in"``.
        gain: the fan-in gain ``g`` (``form="fan_in"`` only).

    Raises:
        ConfigError: for an unknown ``form``.
    """
    _check_form(form)
    fields = sum(arch.widths[1:]) if bias else 0
    if form == "fan_in":
        return float(gain * sum(arch.widths[1:]) + fields)
    return float(interactions(arch) + fields)


@dataclass(frozen=True)
class Move:
    """An elementary transition between equilibrium states (architectures).

    Hidden layers are numbered ``1 … L``; the input (0) and output (L+1) widths never change.

    Attributes:
        kind: ``"add"`` / ``"remove"`` a neuron of hidden layer ``layer``; ``"move"`` a neuron from
            ``layer`` to ``to``; ``"insert"`` a new hidden layer of ``width`` neurons that becomes layer
            ``layer`` (``1 … L+1``); ``"delete"`` hidden layer ``layer``.
        layer: the hidden layer acted on (see ``kind``).
        to: the destination layer of a ``"move"``.
        width: the width of an ``"insert"``-ed layer.
    """

    kind: MoveKind
    layer: int
    to: int | None = None
    width: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in MOVE_KINDS:
            raise ConfigError(f"Move(kind={self.kind!r}): choose one of {', '.join(MOVE_KINDS)}")
        if (self.kind == "move") != (self.to is not None):
            raise ConfigError(f"Move(kind={self.kind!r}, to={self.to!r}): `to` is given for 'move' only")
        if (self.kind == "insert") != (self.width is not None):
            raise ConfigError(
                f"Move(kind={self.kind!r}, width={self.width!r}): `width` is given for 'insert' only"
            )

    def __str__(self) -> str:
        if self.kind == "move":
            return f"move {self.layer}->{self.to}"
        if self.kind == "insert":
            return f"insert {self.width}@{self.layer}"
        return f"{self.kind}@{self.layer}"


def _check_move(arch: Arch, move: Move) -> None:
    L = arch.depth
    w = arch.widths
    top = L + 1 if move.kind == "insert" else L
    if not _is_int(move.layer) or not 1 <= move.layer <= top:
        raise ConfigError(f"{move}: layer must be in 1..{top} for {arch} (depth {L})")
    if move.kind == "move" and (
        not _is_int(move.to) or not 1 <= move.to <= L or move.to == move.layer  # type: ignore[operator]
    ):
        raise ConfigError(f"{move}: destination must be another hidden layer in 1..{L} of {arch}")
    if move.kind in ("remove", "move") and w[move.layer] < 2:
        raise ConfigError(
            f"{move}: hidden layer {move.layer} of {arch} has a single neuron",
            hint="use a 'delete' move to remove the whole layer",
        )
    if move.kind == "insert" and (not _is_int(move.width) or move.width < 1):  # type: ignore[operator]
        raise ConfigError(f"{move}: an inserted layer needs a positive integer width")


def apply_move(arch: Arch, move: Move) -> Arch:
    """The architecture reached from ``arch`` by ``move``.

    Raises:
        ConfigError: if the move is not admissible (layer out of range, emptying a layer, ...).
    """
    _check_move(arch, move)
    w = list(arch.widths)
    k = move.layer
    if move.kind == "add":
        w[k] += 1
    elif move.kind == "remove":
        w[k] -= 1
    elif move.kind == "move":
        w[k] -= 1
        w[move.to] += 1  # type: ignore[index]
    elif move.kind == "insert":
        w.insert(k, move.width)  # type: ignore[arg-type]
    else:
        del w[k]
    return Arch(tuple(w))


def delta_energy(
    arch: Arch, move: Move, *, bias: bool = True, form: EnergyForm = "count", gain: float = 1.0
) -> float:
    r"""``U(move(a)) − U(a)`` in closed form (no recomputation of ``U``).

    For ``form="count"``, with ``n`` the full width vector and ``β_b = 1`` when ``bias``:

    - add a neuron to layer k: ``n_{k−1} + n_{k+1} + β_b`` (remove: the negative);
    - move a neuron ``i → j``, ``|i − j| ≥ 2``: ``(n_{j−1} + n_{j+1}) − (n_{i−1} + n_{i+1})``;
      ``j = i+1``: ``(n_{i+2} − n_{i−1}) + (n_i − n_{i+1} − 1)``; ``j = i−1``:
      ``(n_{i−2} − n_{i+1}) + (n_i − n_{i−1} − 1)`` (the shared bond changes too);
    - insert a layer of width m between ``n_{k−1}`` and ``n_k``: ``m (n_{k−1} + n_k) − n_{k−1} n_k + β_b m``;
    - delete layer k: ``n_{k−1} n_{k+1} − n_k (n_{k−1} + n_{k+1}) − β_b n_k``.

    For ``form="fan_in"`` the energy is ``(g + β_b) × (neurons + n_out)``, so a move changes it by
    ``(g + β_b)`` times the change in the neuron count.

    Raises:
        ConfigError: if the move is not admissible or ``form`` is unknown.
    """
    _check_form(form)
    _check_move(arch, move)
    b = 1 if bias else 0
    n = arch.widths
    k = move.layer
    if form == "fan_in":
        per = gain + b
        change = {
            "add": 1,
            "remove": -1,
            "move": 0,
            "insert": move.width or 0,
            "delete": -n[k] if move.kind == "delete" else 0,
        }[move.kind]
        return float(per * change)
    if move.kind == "add":
        return float(n[k - 1] + n[k + 1] + b)
    if move.kind == "remove":
        return float(-(n[k - 1] + n[k + 1] + b))
    if move.kind == "insert":
        m = move.width or 0
        return float(m * (n[k - 1] + n[k]) - n[k - 1] * n[k] + b * m)
    if move.kind == "delete":
        return float(n[k - 1] * n[k + 1] - n[k] * (n[k - 1] + n[k + 1]) - b * n[k])
    i, j = k, move.to or 0
    if j == i + 1:
        return float((n[i + 2] - n[i - 1]) + (n[i] - n[i + 1] - 1))
    if j == i - 1:
        return float((n[i - 2] - n[i + 1]) + (n[i] - n[i - 1] - 1))
    return float((n[j - 1] + n[j + 1]) - (n[i - 1] + n[i + 1]))


def neighbours(
    arch: Arch,
    *,
    n_min: int = 1,
    n_max: int | None = None,
    depths: Sequence[int] | None = None,
    insert_widths: Sequence[int] | None = None,
) -> list[Move]:
    """Every admissible elementary move from ``arch``: the edges of the phase-space graph at ``arch``.

    Args:
        arch: the state.
        n_min: the smallest admissible hidden width.
        n_max: the largest admissible hidden width (none if ``None``).
        depths: the admissible depths for ``insert`` / ``delete`` (any depth if ``None``).
        insert_widths: widths tried for an inserted layer at every position; by default the widths of
            the hidden layers next to the position ("duplicate a neighbouring layer").

    Returns:
        The moves, in a fixed order: add, remove, move, delete, insert.
    """
    w = arch.widths
    L = arch.depth
    top = n_max if n_max is not None else float("inf")
    hidden = range(1, L + 1)
    out = [Move("add", k) for k in hidden if w[k] + 1 <= top]
    out += [Move("remove", k) for k in hidden if w[k] - 1 >= max(n_min, 1)]
    out += [
        Move("move", i, to=j)
        for i in hidden
        for j in hidden
        if i != j and w[i] - 1 >= max(n_min, 1) and w[j] + 1 <= top
    ]
    allowed = set(depths) if depths is not None else None
    if L >= 1 and (allowed is None or L - 1 in allowed):
        out += [Move("delete", k) for k in hidden]
    if allowed is None or L + 1 in allowed:
        for k in range(1, L + 2):
            if insert_widths is not None:
                sizes = sorted(set(insert_widths))
            else:
                sizes = sorted({w[j] for j in (k - 1, k) if 1 <= j <= L})
            out += [Move("insert", k, width=m) for m in sizes if n_min <= m <= top]
    return out
