r"""Mechanical systems whose trajectory makes an action stationary (thesis ch. 6; anchors-physics §4).

A :class:`MechanicalSystem` is defined by its Lagrangian ``𝓛(θ, u_t, q, q̇) = ½ q̇ᵀMq̇ − V(θ, u_t, q)``: a diagonal
mass ``M`` (a buffer, not trained) and a potential energy ``V`` with trainable couplings, driven by the input
sequence ``u_t``. Time is discretised on the grid ``t_k = kΔt`` with the trapezoidal discrete Lagrangian

.. math::
    L_d(q_k, q_{k+1}) = Δt\,\Big[\tfrac12\Big(\frac{q_{k+1}-q_k}{Δt}\Big)^{\!⊤} M \Big(\frac{q_{k+1}-q_k}{Δt}\Big)
    - \tfrac12 V_k(q_k) - \tfrac12 V_{k+1}(q_{k+1})\Big], \qquad V_k(q) = V(θ, u_k, q),

whose discrete Euler–Lagrange equations ``M(q_{k+1} − 2q_k + q_{k−1})/Δt² = −∇V_k(q_k)`` are the Störmer–Verlet
(leapfrog) scheme: a variational integrator, symplectic and time-reversible. The system's ``boundary`` says which
problem the trajectory solves, and with it what the state is and which learning rule is exact:

- ``"fixed"``: ``q_0 = q_N = 0`` (rest at both ends). The state is the interior ``q_1 … q_{N−1}``, the "energy" is
  the discrete action ``S = Σ_k L_d``, and a trajectory is a stationary point of ``S`` (a saddle in general, not
  a minimum). Lagrangian EqProp is EqProp on ``S + βC``: relax with the ``newton`` solver.
- ``"periodic"``: ``q_N ≡ q_0``; the state is ``q_0 … q_{N−1}`` (``N`` = the input's time points, the period).
- ``"initial"``: the physical initial-value problem, from rest (``q_0 = 0``, ``p_0 = 0``), integrated forward by
  the ``leapfrog`` solver. It is not a stationary point of anything the nudge could act on: nudging it forward and
  reading ``∂θS`` gives the retarded response, not the gradient, so the two-phase rules refuse it
  (:meth:`check_stationary`); train it with the Hamiltonian echo (``rule.kind = "echo"``) or by BPTT.

The state variables are ``hidden`` and ``output`` (the last ``outputs`` units) over the time points the cost sees,
``(T, units)``; with ``boundary = "initial"`` a first variable ``momentum`` holds ``p_N``, and ``observe = "final"``
keeps only the final positions (no time axis: the memory of a step does not grow with the sequence). The cost is
summed over the time points it sees (``Δt`` is folded into β).

Inputs are sequences ``(batch, points, features)``, or images ``(batch, C, H, W)`` read row by row (``H`` time
points of ``C·W`` features: sequential Fashion-MNIST).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from eqprop._types import State, Variable
from eqprop.errors import ConfigError, DivergenceError
from eqprop.systems.base import EnergySystem

__all__ = ["BOUNDARIES", "OBSERVE", "Boundary", "MechanicalSystem", "Observe"]

Boundary = Literal["fixed", "periodic", "initial"]
Observe = Literal["trajectory", "final"]
BOUNDARIES: tuple[str, ...] = ("fixed", "periodic", "initial")
OBSERVE: tuple[str, ...] = ("trajectory", "final")


class MechanicalSystem(EnergySystem):
    """Base class: ``𝓛 = ½q̇ᵀMq̇ − V(θ, u_t, q)``. Subclasses implement :meth:`potential` (and may override the
    fast paths :meth:`force`, :meth:`potential_hessian`, :meth:`potential_param_grads`, which default to autograd).

    Args:
        units: the number of coordinates ``q`` (masses, oscillators).
        outputs: the last ``outputs`` units are the output variable the cost reads.
        input_shape: ``(points, features)`` for sequences, or ``(C, H, W)`` for images read row by row.
        dt: the time step ``Δt``.
        boundary: ``"fixed"``, ``"periodic"`` or ``"initial"`` (see the module docstring).
        observe: ``"trajectory"`` (the cost sees every free time point) or ``"final"`` (only ``q_N``; initial-value
            problems only).
        mass: one mass for all units, or one per unit (> 0).
    """

    def __init__(
        self,
        units: int,
        *,
        outputs: int,
        input_shape: Sequence[int],
        dt: float,
        boundary: Boundary = "initial",
        observe: Observe = "trajectory",
        mass: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ConfigError(f"{name}(units={units!r}): need an integer >= 1")
        if isinstance(outputs, bool) or not isinstance(outputs, int) or not 1 <= outputs <= units:
            raise ConfigError(f"{name}(outputs={outputs!r}): need an integer in 1 … units ({units})")
        if not (isinstance(dt, int | float) and 0 < dt < math.inf):
            raise ConfigError(f"{name}(dt={dt!r}): the time step must be a finite number > 0")
        if boundary not in BOUNDARIES:
            raise ConfigError(
                f"{name}(boundary={boundary!r}): choose one of {', '.join(map(repr, BOUNDARIES))}"
            )
        if observe not in OBSERVE:
            raise ConfigError(f"{name}(observe={observe!r}): choose 'trajectory' or 'final'")
        if observe == "final" and boundary != "initial":
            raise ConfigError(
                f"{name}(observe='final', boundary={boundary!r}): the final point of a {boundary} trajectory is "
                "fixed by the boundary condition, so a cost on it cannot learn",
                hint="observe the trajectory, or use boundary='initial'",
            )
        shape = tuple(int(d) for d in input_shape)
        if len(shape) == 3:
            points, features = shape[1], shape[0] * shape[2]
        elif len(shape) == 2:
            points, features = shape
        else:
            raise ConfigError(
                f"{name}(input_shape={list(shape)}): give (points, features) for a sequence, or (C, H, W) for "
                "images read row by row"
            )
        least = {"fixed": 3, "periodic": 2, "initial": 2}[boundary]
        if points < least or features < 1:
            raise ConfigError(
                f"{name}(input_shape={list(shape)}): a {boundary} trajectory needs at least {least} time points "
                f"and one feature, got {points} and {features}"
            )
        masses = torch.as_tensor(mass, dtype=torch.get_default_dtype()).flatten()
        if masses.numel() == 1:
            masses = masses.expand(units).clone()
        if masses.numel() != units or not bool(torch.isfinite(masses).all()) or not bool((masses > 0).all()):
            raise ConfigError(
                f"{name}(mass={mass!r}): give one mass > 0, or one per unit ({units}): the kinetic energy ½q̇ᵀMq̇ "
                "must be convex in the velocities for the variational integrator to define a trajectory"
            )
        self.units, self.outputs = units, outputs
        self.hidden = units - outputs
        self.input_shape = shape
        self.points, self.features = points, features
        self.dt = float(dt)
        self.boundary: Boundary = boundary
        self.observe: Observe = observe
        self.steps = points if boundary == "periodic" else points - 1
        self.register_buffer("mass", masses)
        self.free_times = {"fixed": self.steps - 1, "periodic": self.steps, "initial": self.steps}[boundary]
        time = () if observe == "final" else (self.free_times,)
        variables = [Variable("momentum", (units,))] if boundary == "initial" else []
        if self.hidden:
            variables.append(Variable("hidden", (*time, self.hidden)))
        variables.append(Variable("output", (*time, outputs)))
        self.variables = tuple(variables)

    echo_chunk: int = 32
    """Steps of the echo whose ``∂V/∂θ`` are summed in one :meth:`potential_param_grads` call (memory: this many
    states, whatever the sequence length)."""

    # -- helpers of the subclasses' constructors ----------------------------------------------------------------
    def _check_nonnegative(self, **values: float) -> None:
        """Raise :class:`ConfigError` unless every setting given is a finite number >= 0."""
        for name, value in values.items():
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ConfigError(f"{type(self).__name__}({name}={value!r}): need a finite number >= 0")

    def _input_weights(self, rows: int, scale: float, generator: torch.Generator | None) -> nn.Parameter:
        """Input weights ``(rows, features)`` drawn ``N(0, scale²/features)``."""
        w = torch.randn(rows, self.features, generator=generator) * (scale / math.sqrt(self.features))
        return nn.Parameter(w)

    # -- the physics: subclasses -------------------------------------------------------------------------------
    @abstractmethod
    def potential(self, u: Tensor, q: Tensor) -> Tensor:
        """``V(θ, u, q)`` for drives ``u (..., features)`` and positions ``q (..., units)``: shape ``(...)``."""

    def force(self, u: Tensor, q: Tensor) -> Tensor:
        """``−∂V/∂q``, shape of ``q``. Generic path: autograd on :meth:`potential` (differentiable when grad is on)."""
        create = torch.is_grad_enabled()
        with torch.enable_grad():
            leaf = q if create and q.requires_grad else q.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.potential(u, leaf).sum(), leaf, create_graph=create)
        return -g

    def potential_hessian(self, u: Tensor, q: Tensor) -> Tensor:
        """``∂²V/∂q²``, shape ``(..., units, units)``. Generic path: autograd, one row per unit."""
        with torch.enable_grad():
            leaf = q.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.potential(u, leaf).sum(), leaf, create_graph=True)
            rows = [
                torch.autograd.grad(g[..., i].sum(), leaf, retain_graph=i < self.units - 1)[0]
                for i in range(self.units)
            ]
        return torch.stack(rows, -2).detach()

    def potential_param_grads(self, u: Tensor, q: Tensor, weight: Tensor) -> dict[str, Tensor]:
        """``Σ weight·∂V/∂θ(u, q)`` summed over the leading dimensions, keyed like ``named_parameters()``.
        ``weight`` broadcasts against ``V``'s shape (e.g. ``+1`` and ``−1`` halves: a contrast in one call).
        Generic path: autograd."""
        params = dict(self.named_parameters())
        with torch.enable_grad():
            v = (self.potential(u, q.detach()) * weight).sum()
            grads = torch.autograd.grad(v, list(params.values()), allow_unused=True)
        return {
            n: torch.zeros_like(p) if g is None else g
            for (n, p), g in zip(params.items(), grads, strict=True)
        }

    # -- layout ----------------------------------------------------------------------------------------------
    @property
    def stationary(self) -> bool:
        """Whether the solver's trajectories are stationary points of ``S + βC`` (fixed or periodic boundaries):
        what EqProp's theorem needs. False for the initial-value problem."""
        return self.boundary != "initial"

    def check_stationary(self, rule: str) -> None:
        if self.stationary:
            return
        raise ConfigError(
            f"{rule} cannot train {type(self).__name__} with boundary='initial': nudging a forward initial-value "
            "trajectory and reading ∂θS gives the retarded response, not the gradient (the boundary term at t = T "
            "does not vanish, so the error does not shrink with β: 60-150 % on a 3-mass spring chain, with cosines "
            "from -0.5 to 0.9 over 20 seeds); train it with the Hamiltonian echo, or use fixed or periodic boundaries",
            hint="rule.kind='echo' (or 'backprop', BPTT) with the leapfrog solver; or boundary='fixed' or "
            "'periodic' (Lagrangian EqProp) with solver.kind='newton'",
        )

    def check_input(self, x: Tensor) -> None:
        """As every system's, with the time grid named when the number of time points is what differs."""
        shape = tuple(self.input_shape)
        if isinstance(x, Tensor) and x.dim() == len(shape) + 1 and tuple(x.shape[1:]) != shape:
            axis = 1 if len(shape) == 2 else 2  # (points, features) or images (C, H, W) read row by row
            got = x.shape[axis]
            if got != self.points and tuple(x.shape[axis + 1 :]) == shape[axis:]:
                raise ConfigError(
                    f"{type(self).__name__}'s time grid has {self.points} time points (dt {self.dt}, {self.steps} "
                    f"steps) but x has {got}",
                    hint=f"build the system with input_shape {[*shape[: axis - 1], got, *shape[axis:]]}, or resample "
                    "the input onto its grid",
                )
        super().check_input(x)

    def sequence(self, x: Tensor) -> Tensor:
        """The drive ``u``, ``(batch, points, features)``: the input itself, or images read row by row."""
        if x.dim() == 4:
            b, c, h, w = x.shape
            return x.permute(0, 2, 1, 3).reshape(b, h, c * w)
        return x

    def prepare(self, x: Tensor) -> Tensor:
        return self.sequence(x)

    def _drive(self, x: Tensor, drive: Any) -> Tensor:
        return self.sequence(x) if drive is None else drive

    def positions(self, state: State) -> Tensor:
        """The positions held by ``state``, ``(batch, T, units)`` (``(batch, units)`` with ``observe = "final"``)."""
        q = state[1:] if self.boundary == "initial" else state
        return q[0] if len(q) == 1 else torch.cat(q, -1)

    def split(self, q: Tensor, momentum: Tensor | None = None) -> State:
        """The state holding positions ``q`` (and, for initial-value problems, the final ``momentum``)."""
        parts = (q[..., : self.hidden], q[..., self.hidden :]) if self.hidden else (q,)
        return parts if momentum is None else (momentum, *parts)

    def path(self, positions: Tensor) -> Tensor:
        """The whole discrete trajectory of a boundary-value state: ``q_0 … q_N`` with the fixed ends (rest), or
        ``q_0 … q_{N−1}`` for a periodic one."""
        if self.boundary != "fixed":
            return positions
        rest = positions.new_zeros(positions.shape[0], 1, self.units)
        return torch.cat((rest, positions, rest), 1)

    def init_state(self, x: Tensor) -> State:
        b = x.shape[0]
        time = () if self.observe == "final" else (self.free_times,)
        q = x.new_zeros(b, *time, self.units)
        return self.split(q, x.new_zeros(b, self.units) if self.boundary == "initial" else None)

    # -- action and Hamiltonian ------------------------------------------------------------------------------
    def _potential_weights(self, like: Tensor) -> Tensor:
        """``Δt·w_k`` of the trapezoidal rule on the path: ½ at the fixed ends, 1 inside (and everywhere on a
        periodic path)."""
        w = like.new_full((like.shape[1],), self.dt)
        if self.boundary == "fixed":
            w[0] = w[-1] = 0.5 * self.dt
        return w

    def action(self, u: Tensor, path: Tensor) -> Tensor:
        """The discrete action ``S = Σ_k L_d(q_k, q_{k+1})`` of a path (see :meth:`path`), per example."""
        nxt = torch.roll(path, -1, 1) if self.boundary == "periodic" else path[:, 1:]
        cur = path if self.boundary == "periodic" else path[:, :-1]
        dq = nxt - cur
        kinetic = 0.5 * (dq * dq * self.mass).sum((1, 2)) / self.dt
        v = self.potential(u[:, : path.shape[1]], path)
        return kinetic - (v * self._potential_weights(path)).sum(1)

    def hamiltonian(self, u: Tensor, q: Tensor, p: Tensor) -> Tensor:
        """``H = ½pᵀM⁻¹p + V(θ, u, q)`` per example (``u``, ``q``, ``p`` at one time)."""
        return 0.5 * (p * p / self.mass).sum(-1) + self.potential(u, q)

    def energy(self, x: Tensor, state: State) -> Tensor:
        """The discrete action of the trajectory (fixed, periodic), or the final Hamiltonian ``H(q_N, p_N)`` of an
        initial-value trajectory (``observe = "final"``; with ``"trajectory"``, ``q_N`` is its last point)."""
        u = self.sequence(x)
        q = self.positions(state)
        if self.boundary == "initial":
            q_end = q if self.observe == "final" else q[:, -1]
            return self.hamiltonian(u[:, -1], q_end, state[0])
        return self.action(u, self.path(q))

    def state_grad(self, x: Tensor, state: State, drive: Any = None) -> State:
        """``∂S/∂q_k = M(2q_k − q_{k−1} − q_{k+1})/Δt + Δt·w_k·∂V_k/∂q`` (minus the discrete Euler–Lagrange
        residual); the generic path for initial-value states."""
        if self.boundary == "initial":
            return super().state_grad(x, state, drive)
        u = self._drive(x, drive)
        q = self.positions(state)
        path = self.path(q)
        if self.boundary == "periodic":
            lap = 2 * path - torch.roll(path, 1, 1) - torch.roll(path, -1, 1)
            f = self.force(u[:, : self.steps], path)
        else:
            lap = 2 * path[:, 1:-1] - path[:, :-2] - path[:, 2:]
            f = self.force(u[:, 1:-1], q)
        g = lap * (self.mass / self.dt) + self.dt * f
        return self.split(g)

    # -- Newton's linear algebra -------------------------------------------------------------------------------
    def hessian_solve(self, x: Tensor, state: State, rhs: State, shift: State | None = None) -> State | None:
        """Solve ``(∂²S/∂q² + diag(shift)) z = rhs`` per example, exactly: the action's Hessian is block
        tridiagonal (``2M/Δt − Δt·∇²V_k`` on the diagonal, ``−M/Δt`` beside it; cyclic when periodic). Fixed ends:
        a block Thomas sweep, ``O(T·units³)``; periodic: one dense solve of ``T·units`` unknowns. Returns ``None``
        for an initial-value state (no action to differentiate)."""
        if self.boundary == "initial":
            return None
        u = self.sequence(x)
        q = self.positions(state)
        times = u[:, 1:-1] if self.boundary == "fixed" else u[:, : self.steps]
        n, t, b = self.units, q.shape[1], q.shape[0]
        eye = torch.eye(n, dtype=q.dtype, device=q.device)
        diag = eye * (2 * self.mass / self.dt) - self.dt * self.potential_hessian(times, q)
        if shift is not None:
            diag = diag + torch.diag_embed(self.positions(shift))
        r = self.positions(rhs)
        off = -self.mass / self.dt  # (units,): the coupling of neighbouring times is diagonal
        if self.boundary == "periodic":
            big = q.new_zeros(b, t, n, t, n)
            idx = torch.arange(t, device=q.device)
            big[:, idx, :, idx, :] = diag.transpose(0, 1)
            offm = torch.diag(off)
            if t == 2:  # both neighbours are the same time point
                offm = 2 * offm
            big[:, idx, :, (idx + 1) % t, :] += offm
            if t > 2:
                big[:, idx, :, (idx - 1) % t, :] += offm
            z = torch.linalg.solve(big.reshape(b, t * n, t * n), r.reshape(b, t * n, 1)).reshape(b, t, n)
            return self.split(z)
        # block Thomas: G_1 = D_1, G_k = D_k − c·G_{k−1}⁻¹·c, y_k = r_k − c·G_{k−1}⁻¹ y_{k−1}
        factors = []
        ys = []
        g_inv_c = None
        y_prev = None
        coupling = torch.diag(off).expand(b, n, n)  # the right-hand side of G_k⁻¹·c, the same at every k
        for k in range(t):
            d = diag[:, k]
            y = r[:, k]
            if g_inv_c is not None:
                d = d - off[:, None] * g_inv_c
                y = y - off * y_prev
            lu = torch.linalg.lu_factor(d)
            g_inv_c = torch.linalg.lu_solve(*lu, coupling)
            y_solved = torch.linalg.lu_solve(*lu, y.unsqueeze(-1)).squeeze(-1)
            factors.append(lu)
            ys.append(y)
            y_prev = y_solved
        z = [None] * t
        nxt = None
        for k in reversed(range(t)):
            y = ys[k] if nxt is None else ys[k] - off * nxt
            nxt = torch.linalg.lu_solve(*factors[k], y.unsqueeze(-1)).squeeze(-1)
            z[k] = nxt
        return self.split(torch.stack(z, 1))

    # -- the initial-value problem ---------------------------------------------------------------------------
    def integrate(
        self, x: Tensor, *, record: bool | None = None, start: tuple[Tensor, Tensor] | None = None
    ) -> State:
        """The leapfrog (velocity Verlet) trajectory, as a state: ``p_N`` and the observed positions ``q_1 … q_N``.
        Differentiable when grad is on (BPTT).

        Args:
            x: the input (its time points set the number of steps).
            record: whether the positions of every step are kept (default: ``observe == "trajectory"``).
            start: ``(q_0, p_0)``, each ``(batch, units)``; default: rest (zeros), the system's initial condition.
        """
        if self.boundary != "initial":
            raise ConfigError(
                f"{type(self).__name__}.integrate solves the initial-value problem, and this system's trajectory is "
                f"a {self.boundary} boundary-value problem",
                hint="solve it with the newton solver, or build the system with boundary='initial'",
            )
        u = self.sequence(x)
        keep = self.observe == "trajectory" if record is None else record
        if start is None:
            q = u.new_zeros(u.shape[0], self.units)
            p = torch.zeros_like(q)
        else:
            q, p = start
            if q.shape != (u.shape[0], self.units) or p.shape != q.shape:
                raise ConfigError(
                    f"{type(self).__name__}.integrate: start = (q_0, p_0) must be two tensors of shape "
                    f"{(u.shape[0], self.units)}, got {tuple(q.shape)} and {tuple(p.shape)}"
                )
        h = self.dt
        f = self.force(u[:, 0], q)
        seen = []
        for k in range(self.steps):
            p = p + 0.5 * h * f
            q = q + h * p / self.mass
            f = self.force(u[:, k + 1], q)
            p = p + 0.5 * h * f
            if keep:
                seen.append(q)
        qs = torch.stack(seen, 1) if keep else q
        return self.split(qs, p)

    def echo(
        self, x: Tensor, q_end: Tensor, p_end: Tensor, inject: Tensor, scales: tuple[float, float]
    ) -> dict[str, Tensor]:
        r"""Two Hamiltonian echoes and the gradient they measure (Lopez-Pastor & Marquardt 2023; RHEL, Pourcel &
        Ernoult 2025), in ``O(1)`` memory in the sequence length.

        Each echo starts from the final state with the momentum flipped, ``(q_N, −p_N)``, and runs the same leapfrog
        on the time-reversed drive; at the half kick before each drift the momentum receives ``−ε·∂C/∂q_k``
        (``inject[:, k−1]``, the cost's gradient at forward time ``k``). At ``ε = 0`` the echo retraces the
        forward trajectory backwards (time reversibility); its linear response to ``ε`` is the adjoint of the
        discrete Euler–Lagrange equations, so

        ``∂L/∂θ = d/dε Σ_{j=1}^{N} Δt·w_j·∂V/∂θ(u_{N−j}, r_j^ε)`` (``w_N = ½``, else 1),

        measured here as the contrast of the echoes at ``ε = scales[1]`` and ``scales[0]`` (batched as one).

        Args:
            x: the input; q_end, p_end: ``(batch, units)`` at ``t_N``.
            inject: ``(batch, N, units)``: ``∂C/∂q_k`` per example for ``k = 1 … N``; or ``(batch, units)``, a cost
                on ``q_N`` alone.
            scales: ``(ε₁, ε₂)``, ``ε₁ < ε₂``.

        Returns:
            ``∂L/∂θ``, batch mean, keyed like ``named_parameters()``.
        """
        u = self.sequence(x)
        b = u.shape[0]
        lo, hi = scales
        eps = torch.cat((u.new_full((b, 1), hi), u.new_full((b, 1), lo)))  # (2b, 1): the ε of each half
        sign = torch.cat((u.new_ones(b), -u.new_ones(b)))  # the contrast: + the ε₂ half, − the ε₁ half
        q = torch.cat((q_end, q_end))
        p = -torch.cat((p_end, p_end))
        final_only = inject.dim() == 2  # a cost on q_N only: one kick, nothing read per step
        h = self.dt
        total: dict[str, Tensor] | None = None
        # ∂V/∂θ is accumulated a chunk of steps at a time: a few large kernels instead of many small ones, in memory
        # that does not grow with the sequence (the drive and the injection are sliced per step, never copied whole)
        chunk = self.echo_chunk
        held_u: list[Tensor] = []
        held_q: list[Tensor] = []
        held_w: list[Tensor] = []

        def drain() -> None:
            nonlocal total
            if not held_q:
                return
            step = self.potential_param_grads(torch.stack(held_u), torch.stack(held_q), torch.stack(held_w))
            total = step if total is None else {n: total[n].add_(g) for n, g in step.items()}
            held_u.clear(), held_q.clear(), held_w.clear()

        def both(t: Tensor) -> Tensor:
            return torch.cat((t, t))

        weight, last = sign * h, sign * (0.5 * h)  # Δt·w_j: ½ at the trajectory's start
        drift = h / self.mass
        with torch.no_grad():
            f = self.force(both(u[:, -1]), q)
            for j in range(self.steps):
                k = self.steps - j  # the forward time of the echo's current point
                p.add_(f, alpha=0.5 * h)  # p is the echo's own: updated in place
                if not final_only:
                    p.sub_(eps * both(inject[:, k - 1]))
                elif j == 0:
                    p.sub_(eps * both(inject))
                q = torch.addcmul(q, p, drift)  # a new tensor: the chunk holds the old one
                uk = both(u[:, k - 1])
                f = self.force(uk, q)
                p.add_(f, alpha=0.5 * h)
                held_u.append(uk)
                held_q.append(q)
                held_w.append(last if k == 1 else weight)
                if len(held_q) == chunk:
                    drain()
            drain()
            if not bool(torch.isfinite(q).all()):
                raise DivergenceError(
                    "the Hamiltonian echo became non-finite",
                    hint="lower the echo's beta or the learning rate, or shorten dt",
                )
        assert total is not None
        scale = 1.0 / ((hi - lo) * b)
        return {n: g * scale for n, g in total.items()}

    @property
    def first_free_point(self) -> int:
        """The time index of the state's first point: 1 (``q_0`` is fixed) unless the trajectory is periodic."""
        return 0 if self.boundary == "periodic" else 1

    def trajectory(self, x: Tensor, state: State | None = None) -> Tensor:
        """The whole free trajectory, ``(batch, points, units)``, boundary points included: an initial-value one
        integrated again with every step kept (whatever ``observe`` keeps), a boundary-value one from its solved
        ``state`` (required then)."""
        with torch.no_grad():
            if self.boundary == "initial":
                q = self.positions(self.integrate(x, record=True))
                return torch.cat((q.new_zeros(q.shape[0], 1, self.units), q), 1)  # q_0: rest
            if state is None:
                raise ConfigError(
                    f"{type(self).__name__}.trajectory: a {self.boundary} trajectory is solved, not integrated: "
                    "pass the state the solver returned"
                )
            return self.path(self.positions(state))

    def check_trajectory(self, state: State) -> None:
        """Raise :class:`DivergenceError` if a trajectory is not finite (one host sync)."""
        if not all(bool(torch.isfinite(s).all()) for s in state):
            raise DivergenceError(
                f"{type(self).__name__}: the trajectory became non-finite",
                hint="shorten dt (the leapfrog step must resolve the fastest oscillation: ω·dt < 2), or lower "
                "the learning rate",
            )
