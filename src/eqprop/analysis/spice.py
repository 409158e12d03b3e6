"""Cross-check a resistive network's steady state against SPICE (ngspice).

:func:`to_spice` writes a :class:`~eqprop.systems.netlist.Netlist` as an ngspice deck (resistors ``R = 1/g``,
voltage sources, current sources, diodes, one ``.op`` analysis and a ``.control`` block that prints every node
voltage), :func:`run_ngspice` runs ``ngspice -b`` on a deck and reads the voltages back, and
:func:`spice_check` does both for a :class:`~eqprop.DeepResistive` or a
:class:`~eqprop.systems.netlist.ResistiveCircuit` and one example, and compares SPICE's node potentials with
ours, against a tolerance derived from the circuit (below).

**Diodes.** Our diodes are ideal; SPICE's follow Shockley's law ``i = IS·(exp(v/(N·Vt)) − 1)`` with a
conductance ``GMIN`` in parallel. :class:`DiodeModel` defaults to a near-ideal junction, ``IS = 1e-9 A``,
``N = 1e-4`` (``N·Vt ≈ 2.6 µV`` at 27 °C), and the deck sets ``gmin = 1e-15 S``. Two departures from the ideal
element follow, and give the tolerance:

- *forward drop*: a diode carrying ``I`` drops ``δv = N·Vt·ln(1 + I/IS)`` (``≈ 60 µV`` at 10 A, ``≈ 36 µV`` at
  1 mA). We take ``I`` as twice the largest diode current of our steady state.
- *reverse leakage*: a blocking diode passes at most ``δi = IS + GMIN·2·max|V|``.

Where every diode has one terminal at a fixed potential (what :class:`ResistiveCircuit` requires, and what
:class:`DeepResistive` is), the steady state is the box-constrained QP ``min ½VᵀAV − hᵀV, lo ≤ V ≤ hi`` over
the free nodes, ``A`` the reduced conductance matrix (an M-matrix whose rows sum to ``≥ 0``). SPICE's steady
state solves the same QP with each conducting diode's bound moved by at most ``δv`` and a current of at most
``δi`` added per blocking diode. Two facts about such QPs then bound the difference of the node potentials:
moving every bound by at most ``δv`` moves the solution by at most ``δv`` (a comparison argument: ``V + δv·1``
is a supersolution since ``A·1 ≥ 0``), and changing ``h`` by ``e`` moves it by at most ``A⁻¹|e|`` element-wise
(on each active set the solution is ``(A_FF)⁻¹`` on the free set, and ``(A_FF)⁻¹ ≤ (A⁻¹)_FF`` for an M-matrix).
So the stated tolerance on ``max |V_spice − V_ours|`` over the nodes is

.. math::
    δv + δi·\\max(A^{-1}c) + r·\\max(A^{-1}\\mathbf 1) + 10·(\\text{reltol}·\\max|V| + \\text{vntol})

with ``c`` the number of diodes at each free node, ``r`` the Kirchhoff residual of our (iterative) steady state
in amperes (``kcl_residual``: our own solver's error, bounded the same way), and the last term SPICE's Newton
tolerance (the deck sets ``reltol = 1e-9``, ``vntol = 1e-12 V``, ``abstol = 1e-15 A``) with a margin of 10.

Measured (``tests/physics/test_spice.py``, ngspice 39, the default model; max |ΔV| over the nodes, stated
tolerance in brackets). SPICE lands one forward drop off at the clamped nodes and within 1e-8 V elsewhere, so the
forward drop sets both numbers:

- hand-solved circuit (a divider with a current source, two clamping diodes carrying 2 A, one blocking diode):
  5.54e-5 V (5.72e-5 V);
- random ``DeepResistive([10, 24, 16, 4])`` with bias currents (64 nodes, 40 diodes, 20 conducting), two seeds:
  5.48e-5 and 5.46e-5 V (5.66e-5, 5.64e-5 V); with ``N = 1e-6``: 5.48e-7 V (5.93e-7 V); from a float32 state:
  5.48e-5 V (5.70e-5 V, of which 3.9e-7 V for the float32 residual);
- random non-layered :class:`ResistiveCircuit` s with diodes to ground and to a constant source, 60 and 90
  nodes: 6.03e-5 and 5.62e-5 V (6.21e-5, 5.80e-5 V);
- 80 more random circuits (half layered, half not) of 50 to 333 nodes: all within the tolerance (at most 97 % of it);
- DRN-XS (2×784-100-10, 1678 nodes), one Fashion-MNIST test example: 6.04e-5 V (6.28e-5 V) at its initialisation
  (79,081 nonzero conductances; ngspice 3.7 s) and 6.05e-5 V (6.29e-5 V) with all 157,800 conductances nonzero
  (5.3 s).

ngspice's time grows about quadratically with the hidden width of a layered network (its linear solve fills in
through the input nodes): 2×784-h-10 with every conductance nonzero took 5 s at h = 100 and 20 s at h = 200, the
solve taking 80 % of it (``.options klu`` did not help); DRN-1H (h = 1024, about 800k resistors at its
initialisation) had not finished after 3 CPU-minutes (9 min on a shared machine), so DRN-XS is the largest preset
``eqprop spice-check`` handles in reasonable time (raise ``--timeout`` for larger ones).

Smaller ``N`` (to ``1e-6``) still converges on layered networks, but ngspice's operating-point search failed on
a quarter of the random non-layered circuits at ``N = 1e-6``; ``N = 1e-4`` and ``1e-5`` converged on all.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from eqprop.errors import ConfigError, EqpropError
from eqprop.systems.junction import BOLTZMANN, CHARGE

__all__ = [
    "DEFAULT_OPTIONS",
    "DiodeModel",
    "NgspiceNotFoundError",
    "SpiceError",
    "find_ngspice",
    "floating_nodes",
    "random_deep_resistive",
    "run_ngspice",
    "spice_check",
    "spice_tolerance",
    "to_spice",
]

TEMPERATURE_C = 27.0
THERMAL_VOLTAGE = BOLTZMANN * (TEMPERATURE_C + 273.15) / CHARGE  # kT/q at 27 °C: 25.865 mV
NGSPICE_K_OVER_Q = 1.38064852e-23 / 1.6021766208e-19
"""ngspice's ``k/q`` (its CODATA 2014 constants, checked on a diode carrying 1 mA: the drop equals ``N·Vt·ln(1 + I/IS)``
with these to 1e-16 V, and differs by 1e-7 V with SI 2019's exact ones). A Shockley deck's ``N`` is scaled by the
ratio, so that ``N·Vt`` is the same number on both sides."""

DEFAULT_OPTIONS: Mapping[str, float] = {
    "reltol": 1e-9,
    "abstol": 1e-15,
    "vntol": 1e-12,
    "gmin": 1e-15,
    "itl1": 1000,
    "temp": TEMPERATURE_C,
    "tnom": TEMPERATURE_C,
}
"""The ``.options`` of the deck: tight Newton tolerances (SPICE's own error far below the diodes'), a small
``gmin`` (the conductance SPICE puts across every junction), the temperature of ``Vt``."""

DENSE_LIMIT = 4096
"""Up to this many free nodes :func:`spice_tolerance` factors the conductance matrix densely (Cholesky); above,
it runs preconditioned conjugate gradients on the sparse one."""

_BEGIN, _END = "EQPROP-BEGIN", "EQPROP-END"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INSTALL_HINT = (
    "apt-get install ngspice (Debian/Ubuntu; scripts/test does it as root), or put ngspice on PATH"
)


class SpiceError(EqpropError, RuntimeError):
    """ngspice failed, timed out, or printed no node voltages."""


class NgspiceNotFoundError(SpiceError):
    """No ``ngspice`` executable on ``PATH``."""


@dataclass(frozen=True)
class DiodeModel:
    """A near-ideal SPICE junction diode: ``i = IS·(exp(v/(N·Vt)) − 1)``.

    Attributes:
        saturation_current: ``IS`` in amperes: the reverse leakage; a larger one lowers the forward drop.
        emission: ``N``: the forward drop scales with ``N·Vt``; below about ``1e-5`` ngspice fails to find the
            operating point of some non-layered circuits.
        name: the ``.model`` name in the deck.
    """

    saturation_current: float = 1e-9
    emission: float = 1e-4
    name: str = "dideal"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.saturation_current) and self.saturation_current > 0):
            raise ConfigError(
                f"DiodeModel(saturation_current={self.saturation_current!r}): need a number > 0"
            )
        if not (math.isfinite(self.emission) and self.emission > 0):
            raise ConfigError(f"DiodeModel(emission={self.emission!r}): need a number > 0")
        if not _NAME.match(self.name):
            raise ConfigError(f"DiodeModel(name={self.name!r}): use letters, digits and '_'")

    def model_line(self) -> str:
        return f".model {self.name} d(is={_num(self.saturation_current)} n={_num(self.emission)})"

    def forward_drop(self, current: float) -> float:
        """The voltage across the diode carrying ``current`` amperes forward, ``N·Vt·ln(1 + I/IS)``."""
        return self.emission * THERMAL_VOLTAGE * math.log1p(max(current, 0.0) / self.saturation_current)


def shockley_deck_model(diode: Any) -> DiodeModel:
    """The SPICE model of a :class:`~eqprop.systems.junction.ShockleyDiode`: its ``IS``, and its ``N`` scaled by
    our ``k/q`` over ngspice's, so that ngspice's ``N·Vt`` equals ours."""
    ratio = (BOLTZMANN / CHARGE) / NGSPICE_K_OVER_Q
    return DiodeModel(diode.saturation_current, diode.emission * ratio, name="dshockley")


def _num(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):
        raise ConfigError(f"to_spice: a non-finite element value ({v})")
    return repr(v)  # the shortest string that reads back as the same double


def _node_names(netlist: Any) -> list[str]:
    names = [netlist.name(i) for i in range(netlist.n_nodes + 1)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names[1:], start=1):
        if not _NAME.match(name) or name.lower() in ("gnd",):
            raise ConfigError(
                f"to_spice: node {i} is named {name!r}; SPICE node names here must be letters, digits and '_' "
                "starting with a letter (and not 'gnd')"
            )
        key = name.lower()  # SPICE node names are case-insensitive
        if key in seen:
            raise ConfigError(f"to_spice: nodes {seen[key]} and {i} have the same SPICE name {name!r}")
        seen[key] = i
    return names


def to_spice(
    netlist: Any,
    *,
    diode_model: DiodeModel | None = None,
    title: str = "eqprop resistive network",
    options: Mapping[str, float] | None = None,
) -> str:
    """The netlist as an ngspice deck: a DC operating point (``.op``) that prints every node voltage.

    Elements: ``R<k> a b 1/g`` per resistor (``g == 0`` is an open circuit: left out), ``V<k> node 0 DC v``
    per voltage source, ``I<k> 0 node DC I`` per current source (SPICE's current flows from its first node
    through the source to its second, so this pushes ``I`` from ground into ``node``, as ours do),
    ``D<k> anode cathode`` per diode with the near-ideal ``diode_model``. The ``.control`` block runs the
    analysis and prints ``name = value`` lines (17 digits) between ``EQPROP-BEGIN`` and ``EQPROP-END`` echoes,
    then quits; node names are ``netlist.name(node)`` (SPICE folds them to lower case).

    Args:
        netlist: a :class:`~eqprop.systems.netlist.Netlist`.
        diode_model: the SPICE model of the diodes (default :class:`DiodeModel`).
        title: the deck's first line.
        options: ``.options`` (default :data:`DEFAULT_OPTIONS`).
    """
    shockley = getattr(netlist, "diode_model", None)
    model = DiodeModel() if diode_model is None else diode_model
    opts = dict(DEFAULT_OPTIONS if options is None else options)
    if shockley is not None:  # the netlist's own junctions, at their temperature
        model = shockley_deck_model(shockley)
        opts.update(temp=shockley.temperature, tnom=shockley.temperature)
    names = _node_names(netlist)
    amps = getattr(netlist, "amplifiers", torch.zeros(0, 2, dtype=torch.long))
    aux = [f"xamp{k}" for k in range(len(amps))]
    if {a.lower() for a in aux} & {name.lower() for name in names}:
        raise ConfigError("to_spice: a node is named like the amplifiers' internal nodes (xamp<k>)")
    title = " ".join(str(title).split()) or "eqprop"
    g = netlist.conductances.tolist()
    lines = [
        title,
        f"* written by eqprop.analysis.spice.to_spice: {netlist.n_nodes} nodes, {len(g)} resistors, "
        f"{len(netlist.diodes)} diodes, {len(netlist.sources)} voltage sources, {len(netlist.injections)} "
        "current sources",
        "* run: ngspice -b THIS_FILE   (prints 'node = volts' lines between EQPROP-BEGIN and EQPROP-END)",
        ".options " + " ".join(f"{k}={_num(v)}" for k, v in opts.items()),
        model.model_line(),
    ]
    for k, (node, v) in enumerate(zip(netlist.sources.tolist(), netlist.voltages.tolist(), strict=True)):
        lines.append(f"V{k} {names[node]} 0 DC {_num(v)}")
    for k, (node, i) in enumerate(zip(netlist.injections.tolist(), netlist.currents.tolist(), strict=True)):
        lines.append(f"I{k} 0 {names[node]} DC {_num(i)}")
    for k, ((a, b), gk) in enumerate(zip(netlist.resistors.tolist(), g, strict=True)):
        if gk > 0 and math.isfinite(1.0 / gk):
            lines.append(f"R{k} {names[a]} {names[b]} {_num(1.0 / gk)}")
    for k, (a, c) in enumerate(netlist.diodes.tolist()):
        lines.append(f"D{k} {names[a]} {names[c]} {model.name}")
    # a bidirectional amplifier: VCVS E (output = gain·input) behind a 0 V sensor VA, and a CCCS F drawing
    # back_gain·I(VA) out of the input node (I(VA): the current the output delivers into the circuit)
    for k, ((i, o), a, b) in enumerate(
        zip(
            amps.tolist(),
            netlist.gains.tolist() if len(amps) else [],
            netlist.back_gains.tolist() if len(amps) else [],
            strict=True,
        )
    ):
        lines += [
            f"E{k} {aux[k]} 0 {names[i]} 0 {_num(a)}",
            f"VA{k} {aux[k]} {names[o]} DC 0",
            f"F{k} {names[i]} 0 VA{k} {_num(b)}",
        ]
    lines += [
        ".op",
        ".control",
        "set numdgt=17",
        "run",
        f"echo {_BEGIN}",
        "print all",
        f"echo {_END}",
        "quit",
        ".endc",
        ".end",
        "",
    ]
    return "\n".join(lines)


def find_ngspice() -> str | None:
    """The path of the ``ngspice`` executable, or ``None``."""
    return shutil.which("ngspice")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_ngspice(deck: str, *, timeout: float = 600.0, executable: str | None = None) -> dict[str, float]:
    """Run ``ngspice -b`` on a deck from :func:`to_spice`; return ``{node name (lower case): volts}``.

    Raises:
        NgspiceNotFoundError: ngspice is not installed.
        SpiceError: ngspice failed, timed out, reported an error, or printed no voltages (the message ends
            with the tail of its output).
    """
    exe = executable or find_ngspice()
    if exe is None:
        raise NgspiceNotFoundError("ngspice is not installed (no 'ngspice' on PATH)", hint=_INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="eqprop-spice-") as tmp:
        path = Path(tmp) / "circuit.cir"
        path.write_text(deck)
        try:
            proc = subprocess.run(
                [exe, "-b", str(path)], cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as err:
            out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            raise SpiceError(
                f"ngspice ran longer than {timeout:g} s; output tail:\n{_tail(out)}",
                hint="raise the timeout, or check a smaller circuit",
            ) from None
        except OSError as err:
            raise NgspiceNotFoundError(f"could not run ngspice ({exe}): {err}", hint=_INSTALL_HINT) from None
    output = proc.stdout + ("\n" + proc.stderr if proc.stderr else "")
    errors = [ln for ln in output.splitlines() if re.match(r"\s*(error|fatal)\b", ln, re.IGNORECASE)]
    if proc.returncode != 0 or errors or _BEGIN not in proc.stdout or _END not in proc.stdout:
        raise SpiceError(
            f"ngspice failed (exit status {proc.returncode}"
            + (f"; {errors[0].strip()}" if errors else "")
            + f"); output tail:\n{_tail(output)}",
            hint="run the deck by hand: ngspice -b FILE (eqprop spice-check --netlist-out FILE keeps it)",
        )
    body = proc.stdout.split(_BEGIN, 1)[1].split(_END, 1)[0]
    volts: dict[str, float] = {}
    for line in body.splitlines():
        m = re.match(r"^\s*([^\s=]+)\s*=\s*(\S+)\s*$", line)
        if m and "#" not in m.group(1):
            volts[m.group(1).lower()] = float(m.group(2))
    if not volts:
        raise SpiceError(f"ngspice printed no node voltages; output tail:\n{_tail(output)}")
    return volts


# -- the tolerance ------------------------------------------------------------------------------------------------
def _inflows(netlist: Any, v: Tensor) -> Tensor:
    """The net current flowing into each node through the resistors and current sources, ``(n_nodes + 1,)``."""
    a, b = netlist.resistors[:, 0], netlist.resistors[:, 1]
    i_ab = netlist.conductances * (v[a] - v[b])  # from a to b
    flow = v.new_zeros(netlist.n_nodes + 1)
    flow.index_add_(0, b, i_ab).index_add_(0, a, -i_ab)
    return flow.index_add_(0, netlist.injections, netlist.currents)


def floating_nodes(netlist: Any) -> Tensor:
    """The free nodes that no resistor of nonzero conductance touches (their potential is not defined by the
    resistive network; :func:`spice_check` leaves them out), as node numbers."""
    total = torch.zeros(netlist.n_nodes + 1, dtype=torch.float64)
    g = netlist.conductances
    total.index_add_(0, netlist.resistors[:, 0], g).index_add_(0, netlist.resistors[:, 1], g)
    free = netlist.free_nodes()
    return free[total[free] <= 0]


def _reduced_conductance_solve(netlist: Any, free: Tensor, rhs: Tensor) -> Tensor | None:
    """``A⁻¹·rhs`` for the reduced conductance matrix ``A`` of the free nodes; ``None`` if ``A`` is singular."""
    n = len(free)
    local = torch.full((netlist.n_nodes + 1,), -1, dtype=torch.long)
    local[free] = torch.arange(n)
    ends = local[netlist.resistors]  # (R, 2), -1 at fixed nodes
    g = netlist.conductances
    diag = g.new_zeros(n)
    for side in (0, 1):
        mine = ends[:, side] >= 0
        diag.index_add_(0, ends[mine, side], g[mine])
    both = (ends[:, 0] >= 0) & (ends[:, 1] >= 0) & (g > 0)
    i, j, gb = ends[both, 0], ends[both, 1], g[both]
    if n <= DENSE_LIMIT:
        a = torch.diag(diag)
        a.index_put_((i, j), -gb, accumulate=True)
        a.index_put_((j, i), -gb, accumulate=True)
        chol, info = torch.linalg.cholesky_ex(a)
        if int(info) != 0:
            return None
        return torch.cholesky_solve(rhs, chol)
    # large circuits: Jacobi-preconditioned conjugate gradients on the sparse matrix
    if bool((diag <= 0).any()):
        return None

    def mat(p: Tensor) -> Tensor:  # A·p from the edge list
        out = diag[:, None] * p
        out.index_add_(0, i, -gb[:, None] * p[j]).index_add_(0, j, -gb[:, None] * p[i])
        return out

    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = r / diag[:, None]
    p = z.clone()
    rz = (r * z).sum(0)
    target = 1e-13 * rhs.norm(dim=0)
    for _ in range(20 * n + 1):
        if bool((r.norm(dim=0) <= target).all()):
            return x
        ap = mat(p)
        curv = (p * ap).sum(0)
        alpha = torch.where(curv > 0, rz / curv.clamp_min(torch.finfo(curv.dtype).tiny), 0.0)
        x += alpha * p
        r -= alpha * ap
        z = r / diag[:, None]
        rz_new = (r * z).sum(0)
        p = z + torch.where(rz > 0, rz_new / rz.clamp_min(torch.finfo(rz.dtype).tiny), 0.0) * p
        rz = rz_new
    return None


def spice_tolerance(
    netlist: Any,
    potentials: Tensor,
    *,
    diode_model: DiodeModel | None = None,
    options: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The largest ``|V_spice − V_ours|`` that SPICE's non-ideal diodes, its tolerances and the residual of our
    potentials allow (see the module docstring), with its terms.

    Args:
        netlist: the circuit.
        potentials: our potentials of every node ``0 … n_nodes`` (ground first), ``(n_nodes + 1,)``.
        diode_model, options: as given to :func:`to_spice`.

    Returns a dict (volts, amperes): ``tolerance`` = ``forward_drop + leakage + solver + spice``; ``solver`` =
    ``kcl_residual·max(A⁻¹1) + bound_violation``, where ``kcl_residual`` is the largest Kirchhoff imbalance
    (or diode-complementarity violation) of ``potentials`` at a free node, computed here from the netlist, and
    ``bound_violation`` the most a node sits on the wrong side of a diode; ``max_diode_current`` and
    ``conducting_diodes`` of our steady state; ``note``. The :func:`floating_nodes` are left out. The
    tolerance is ``inf`` (with a note) where the bound does not apply: a diode between two free nodes, or
    free nodes with no resistive path to a fixed potential.
    """
    model = DiodeModel() if diode_model is None else diode_model
    opts = dict(DEFAULT_OPTIONS if options is None else options)
    v = potentials.detach().double().reshape(-1)
    n = netlist.n_nodes + 1
    if len(v) != n:
        raise ConfigError(f"spice_tolerance: {len(v)} potentials for {n} nodes (ground first)")
    connected = torch.ones(n, dtype=torch.bool)
    connected[floating_nodes(netlist)] = False
    v_max = float(v[connected].abs().max())
    free = netlist.free_nodes()
    free = free[connected[free]]
    is_free = torch.zeros(n, dtype=torch.bool)
    is_free[free] = True
    note = ""
    # per free node: the diode bounds lo <= V <= hi set by the fixed terminals, and the number of diodes
    lo = torch.full((n,), -math.inf, dtype=torch.float64)
    hi = torch.full((n,), math.inf, dtype=torch.float64)
    count = torch.zeros(n, dtype=torch.float64)
    for anode, cathode in netlist.diodes.tolist():
        if is_free[anode] and is_free[cathode]:
            note = "a diode joins two free nodes: the bound assumes every diode has a fixed terminal"
        elif is_free[cathode]:
            lo[cathode] = max(float(lo[cathode]), float(v[anode]))
            count[cathode] += 1
        elif is_free[anode]:
            hi[anode] = min(float(hi[anode]), float(v[cathode]))
            count[anode] += 1
    flow = _inflows(netlist, v)[free]  # what the network pushes into each free node
    vf, lof, hif = v[free], lo[free], hi[free]
    at_lo, at_hi = vf <= lof, vf >= hif
    # a diode at its lower bound can only push current in (flow <= 0), at its upper bound only draw it out
    imbalance = torch.where(at_lo, flow.clamp_min(0), torch.where(at_hi, (-flow).clamp_min(0), flow.abs()))
    residual = float(imbalance.max()) if len(free) else 0.0
    violation = float(torch.maximum(lof - vf, vf - hif).clamp_min(0).max()) if len(free) else 0.0
    diode_current = torch.where(at_lo | at_hi, flow.abs(), 0.0)
    i_max = float(diode_current.max()) if len(free) else 0.0
    conducting = int((diode_current > 10 * residual + 1e-12).sum())
    # the forward drop at twice the largest diode current (margin for SPICE's slightly different currents)
    forward = model.forward_drop(2.0 * i_max) if len(netlist.diodes) else 0.0
    leak = model.saturation_current + float(opts.get("gmin", 1e-12)) * 2.0 * v_max
    rhs = torch.stack((count[free], torch.ones(len(free), dtype=torch.float64)), 1)
    solved = _reduced_conductance_solve(netlist, free, rhs) if len(free) else rhs
    if solved is None:
        note = note or "free nodes with no resistive path to a fixed potential (singular conductance matrix)"
        leakage = solver = math.inf
    else:
        leakage = leak * float(solved[:, 0].max()) if len(free) else 0.0
        solver = residual * float(solved[:, 1].max()) + violation if len(free) else 0.0
    spice = 10.0 * (float(opts.get("reltol", 1e-3)) * v_max + float(opts.get("vntol", 1e-6)))
    total = math.inf if note else forward + leakage + solver + spice
    return {
        "tolerance": total,
        "forward_drop": forward,
        "leakage": leakage,
        "solver": solver,
        "spice": spice,
        "kcl_residual": residual,
        "bound_violation": violation,
        "max_diode_current": i_max,
        "conducting_diodes": conducting,
        "note": note,
    }


# -- the check ----------------------------------------------------------------------------------------------------
def spice_check(
    system: Any,
    x: Tensor,
    state: Any = None,
    *,
    iterations: int = 5000,
    diode_model: DiodeModel | None = None,
    options: Mapping[str, float] | None = None,
    timeout: float = 600.0,
    netlist_out: str | Path | None = None,
) -> dict[str, Any]:
    """Compare our steady state of one example with ngspice's.

    Args:
        system: a :class:`~eqprop.DeepResistive` or a :class:`~eqprop.systems.netlist.ResistiveCircuit`.
        x: one example, ``(n_inputs,)`` or ``(1, n_inputs)``.
        state: our steady state of ``x`` (batch 1); default: solved here in float64 by
            ``BlockCoordinate(iterations, tol=1e-14)`` (``odd-even`` for a DeepResistive, ``forward`` for a
            ResistiveCircuit).
        iterations: sweeps of that solver.
        diode_model, options: as for :func:`to_spice`.
        timeout: seconds ngspice may take.
        netlist_out: also write the deck there.

    Returns a JSON-ready dict: ``passed`` (``max_abs_dv <= tolerance``, both finite), ``max_abs_dv`` (volts, over every
    node), ``worst_node``, ``tolerance`` and its terms (:func:`spice_tolerance`), ``kcl_residual``, the sizes
    of the circuit, ``spice_seconds``.
    """
    import copy

    from eqprop.analysis.spice_analog import analog_tolerance
    from eqprop.solvers import BlockCoordinate, Newton
    from eqprop.solvers.base import solve
    from eqprop.systems.analog import AnalogResistive
    from eqprop.systems.netlist import ResistiveCircuit
    from eqprop.systems.resistive import DeepResistive

    if not isinstance(system, DeepResistive | ResistiveCircuit | AnalogResistive):
        raise ConfigError(
            f"spice_check: {type(system).__name__} is not a resistive network (DeepResistive, ResistiveCircuit "
            "or AnalogResistive)"
        )
    if isinstance(system, AnalogResistive) and system.diode is None:
        raise ConfigError(
            "spice_check: an AnalogResistive with ideal diodes; the bound for ideal diodes assumes no amplifiers",
            hint="check it with Shockley diodes (system.diode = 'shockley'), which SPICE models exactly",
        )
    if iterations < 1:
        raise ConfigError(f"spice_check(iterations={iterations}): need >= 1")
    sys64 = copy.deepcopy(system).double().cpu()
    x64 = x.detach().double().cpu().reshape(1, -1)
    if state is None:
        order = "odd-even" if isinstance(system, DeepResistive) else "forward"
        solver = (
            Newton(iterations=min(iterations, 200), tol=1e-13)
            if isinstance(system, AnalogResistive)
            else BlockCoordinate(iterations, order=order, tol=1e-14, check_every=10)
        )
        with torch.no_grad():
            state = solve(sys64, x64, solver, throw=False).state
    state = tuple(s.detach().double().cpu().reshape(1, -1) for s in state)
    with torch.no_grad():
        ours = sys64.node_potentials(x64, state)[0]
    netlist = sys64.to_netlist(x64[0])
    model = DiodeModel() if diode_model is None else diode_model
    deck = to_spice(netlist, diode_model=model, options=options, title=f"eqprop {sys64._label()}")
    if netlist_out is not None:
        Path(netlist_out).write_text(deck)
    start = time.perf_counter()
    volts = run_ngspice(deck, timeout=timeout)
    seconds = time.perf_counter() - start
    names = [netlist.name(i).lower() for i in range(netlist.n_nodes + 1)]
    left_out = set(floating_nodes(netlist).tolist())
    missing = [n for i, n in enumerate(names[1:], start=1) if n not in volts and i not in left_out]
    if missing:
        raise SpiceError(f"ngspice printed no voltage for {len(missing)} nodes, e.g. {missing[:3]}")
    theirs = torch.tensor([0.0] + [volts.get(n, math.nan) for n in names[1:]], dtype=torch.float64)
    analog = netlist.diode_model is not None or len(netlist.amplifiers) > 0
    floating = floating_nodes(netlist) if not analog else torch.zeros(0, dtype=torch.long)
    keep = torch.ones(netlist.n_nodes + 1, dtype=torch.bool)
    keep[floating] = False  # not defined by the resistive network: left out
    diff = torch.where(keep, (theirs - ours).abs(), 0.0)
    worst = int(diff.argmax())
    if analog:  # the same Shockley junctions on both sides: the solvers' errors and GMIN
        bound = analog_tolerance(
            netlist, ours, theirs, options=DEFAULT_OPTIONS if options is None else options
        )
        if netlist.diode_model is not None:
            model = shockley_deck_model(netlist.diode_model)
    else:
        bound = spice_tolerance(netlist, ours, diode_model=model, options=options)
    max_dv = float(diff.max())
    return {
        # an infinite or NaN tolerance (or difference) is no pass: the bound does not apply there
        "passed": bool(
            math.isfinite(max_dv) and math.isfinite(bound["tolerance"]) and max_dv <= bound["tolerance"]
        ),
        "max_abs_dv": max_dv,
        "worst_node": netlist.name(worst),
        "ours_at_worst": float(ours[worst]),
        "spice_at_worst": float(theirs[worst]),
        **bound,
        "max_abs_potential": float(ours[keep].abs().max()),
        "floating_nodes": [netlist.name(i) for i in floating.tolist()],
        "system": sys64._label(),
        "nodes": netlist.n_nodes,
        "free_nodes": len(netlist.free_nodes()),
        "resistors": int((netlist.conductances > 0).sum()),
        "diodes": len(netlist.diodes),
        "amplifiers": len(netlist.amplifiers),
        "voltage_sources": len(netlist.sources),
        "current_sources": len(netlist.injections),
        "diode_model": {"IS": model.saturation_current, "N": model.emission},
        "spice_seconds": seconds,
    }


def random_deep_resistive(
    n_nodes: int, *, seed: int = 0, input_gain: float = 5.0, bias: float = 0.5
) -> tuple[Any, Tensor]:
    """A seeded random :class:`~eqprop.DeepResistive` of about ``n_nodes`` nodes (two hidden layers, bias
    currents ``N(0, bias²)``) and one input ``U(0, 1)``: ``(system, x)`` in float64."""
    from eqprop.systems.resistive import DeepResistive

    if n_nodes < 12:
        raise ConfigError(f"random_deep_resistive(n_nodes={n_nodes}): need at least 12 nodes")
    n_out = max(2, n_nodes // 15)
    rest = n_nodes - n_out
    n_in = max(1, rest // 5)
    hidden = rest - 2 * n_in
    h1 = max(2, 2 * round(hidden * 0.55 / 2))
    h2 = max(2, 2 * ((hidden - h1) // 2))
    gen = torch.Generator().manual_seed(seed)
    net = DeepResistive([n_in, h1, h2, n_out], input_gain=input_gain, generator=gen).double()
    with torch.no_grad():
        for b in net.biases:
            b.copy_(bias * torch.randn(b.shape, generator=gen, dtype=torch.float64))
    x = torch.rand(n_in, generator=gen, dtype=torch.float64)
    return net, x
