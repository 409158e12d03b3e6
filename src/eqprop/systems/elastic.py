r"""Central-force spring networks: nonlinear elasticity, strains in and strains out (allostery, Rocks et al. 2017;
coupled learning in elastic networks, Stern et al. 2020–21; Altman et al. 2024).

Nodes in the plane joined by springs of stiffness ``k_e`` and rest length ``ℓ_e``, both trainable. The energy of the
node positions ``r`` is exact (no small-displacement approximation):

.. math::
    E = \sum_e ½ k_e\,(‖r_{b_e} − r_{a_e}‖ − ℓ_e)^2 + \sum_s ½ K\,(‖r_{b_s} − r_{a_s}‖ − ℓ^0_s(1 + x_s))^2
        + ½ k_0 ‖r − r^0‖^2 ,

where the second sum is the input: an actuator of stiffness ``K`` between the two nodes of each *source pair*
imposes the strain ``x_s`` (as an experimenter pulls two nodes apart), and ``k₀`` (tiny) grounds the free nodes to
their reference positions ``r⁰`` so that a floppy mode does not leave the minimum undetermined. The output is the
strain ``ε_t = ‖r_b − r_a‖/ℓ⁰_t − 1`` of each *target pair*, which is a state variable: each target pair's two nodes
are written as a midpoint, an angle and that strain, so the squared-error cost reads it directly and nudging is a
pair of opposite forces along the pair (Stern's nudge), and coupled learning clamps it.

State variables: ``hidden`` (the other free nodes' positions), ``pose`` (each target pair's midpoint and angle),
``strain`` (each target pair's strain; last). ``∂E/∂k_e = ½(d_e − ℓ_e)²`` and ``∂E/∂ℓ_e = −k_e(d_e − ℓ_e)``: the local
rules of coupled learning and EqProp. Relax with ``fire`` or ``newton`` (``merit = "energy"``: a damped Newton
that never raises the energy; the Hessian is dense, per example).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from eqprop._files import save_png
from eqprop._types import State, Variable
from eqprop.errors import ConfigError
from eqprop.systems.base import EnergySystem

__all__ = ["CentralForceNetwork"]


class CentralForceNetwork(EnergySystem):
    """A nonlinear central-force spring network with strain inputs and strain outputs.

    Args:
        positions: ``(N, 2)`` reference node coordinates (the springs' initial rest lengths are their lengths here,
            so the reference configuration is stress-free).
        edges: ``(E, 2)`` node pairs joined by springs.
        pinned: nodes held at their reference positions (three non-collinear ones remove the rigid motions).
        sources: ``(S, 2)`` node pairs strained by the input (one feature each).
        targets: ``(T, 2)`` node pairs whose strain is the output; their nodes are free, distinct, and not sources.
        stiffness: ``(mean, spread)``: initial ``k = mean·(1 + spread·U(−½, ½))``.
        input_stiffness: ``K``, the actuators' stiffness (large against ``k``: the input strain is nearly imposed).
        bounds: ``(k_min, k_max)``: the stiffnesses after every update.
        min_length: the rest lengths' lower bound, as a fraction of their reference length.
        grounding: ``k₀``.
        train_rest_length: whether the rest lengths are parameters (else constants: the stiffnesses alone learn).
        generator: for the initial stiffnesses.
    """

    def __init__(
        self,
        positions: Tensor,
        edges: Tensor,
        *,
        pinned: Sequence[int],
        sources: Sequence[Sequence[int]],
        targets: Sequence[Sequence[int]],
        stiffness: tuple[float, float] = (1.0, 0.1),
        input_stiffness: float = 100.0,
        bounds: tuple[float, float] = (1e-3, 1e2),
        min_length: float = 0.1,
        grounding: float = 1e-4,
        train_rest_length: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        pos = torch.as_tensor(positions, dtype=torch.float64)
        pairs = torch.as_tensor(edges, dtype=torch.long)
        n = pos.shape[0] if pos.dim() == 2 else 0
        if pos.dim() != 2 or pos.shape[1] != 2 or pairs.dim() != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
            raise ConfigError("CentralForceNetwork: positions must be (N, 2) and edges (E, 2) with E >= 1")
        if int(pairs.min()) < 0 or int(pairs.max()) >= n or bool((pairs[:, 0] == pairs[:, 1]).any()):
            raise ConfigError(f"CentralForceNetwork: edges must join two different nodes among 0 … {n - 1}")
        src = torch.as_tensor(sources, dtype=torch.long).reshape(-1, 2)
        tgt = torch.as_tensor(targets, dtype=torch.long).reshape(-1, 2)
        pinned = sorted({int(p) for p in pinned})
        if not len(src) or not len(tgt):
            raise ConfigError("CentralForceNetwork: give at least one source pair and one target pair")
        for name, t in (("sources", src), ("targets", tgt)):
            if int(t.min()) < 0 or int(t.max()) >= n or bool((t[:, 0] == t[:, 1]).any()):
                raise ConfigError(
                    f"CentralForceNetwork: {name} must be pairs of two different nodes among 0 … {n - 1}"
                )
        target_nodes = tgt.flatten().tolist()
        if len(set(target_nodes)) != len(target_nodes) or set(target_nodes) & (
            set(pinned) | set(src.flatten().tolist())
        ):
            raise ConfigError(
                "CentralForceNetwork: the target pairs' nodes must be distinct, free (not pinned) and not source nodes"
            )
        if any(not 0 <= p < n for p in pinned):
            raise ConfigError(f"CentralForceNetwork: pinned nodes must lie among 0 … {n - 1}")
        lo, hi = (float(b) for b in bounds)
        if not 0 < lo < hi:
            raise ConfigError(f"CentralForceNetwork(bounds={tuple(bounds)}): need 0 < k_min < k_max")
        if not (
            math.isfinite(input_stiffness) and input_stiffness > 0 and grounding >= 0 and 0 < min_length < 1
        ):
            raise ConfigError(
                "CentralForceNetwork: need input_stiffness > 0, grounding >= 0 and 0 < min_length < 1"
            )
        lengths = (pos[pairs[:, 1]] - pos[pairs[:, 0]]).norm(dim=1)
        if bool((lengths == 0).any()):
            raise ConfigError(
                "CentralForceNetwork: two joined nodes sit at the same place (a spring of zero length)"
            )
        mean, spread = stiffness
        if not (mean > 0 and 0 <= spread < 2):
            raise ConfigError(
                f"CentralForceNetwork(stiffness={tuple(stiffness)}): need mean > 0, 0 <= spread < 2"
            )
        self.stiffness = nn.Parameter(
            mean * (1 + spread * (torch.rand(len(pairs), generator=generator, dtype=torch.float64) - 0.5))
        )
        if train_rest_length:
            self.rest_length = nn.Parameter(lengths.clone())
        else:  # a constant of the network (stiffnesses alone learn, as in Stern et al.'s elastic networks)
            self.register_buffer("rest_length", lengths.clone())
        self.register_buffer("reference", pos)
        self.register_buffer("pairs", pairs)
        self.register_buffer("source_pairs", src)
        self.register_buffer("target_pairs", tgt)
        self.register_buffer("reference_lengths", lengths.clone())
        self.register_buffer("source_lengths", (pos[src[:, 1]] - pos[src[:, 0]]).norm(dim=1))
        self.register_buffer("target_lengths", (pos[tgt[:, 1]] - pos[tgt[:, 0]]).norm(dim=1))
        # the parameters at initialisation, for the before/after figure
        self.register_buffer("initial_stiffness", self.stiffness.detach().clone())
        self.register_buffer("initial_rest_length", lengths.clone())
        hidden = [i for i in range(n) if i not in set(pinned) and i not in set(target_nodes)]
        self.register_buffer("hidden_nodes", torch.tensor(hidden, dtype=torch.long))
        self.register_buffer("pinned_nodes", torch.tensor(pinned, dtype=torch.long))
        listed = torch.cat((self.pinned_nodes, self.hidden_nodes, tgt[:, 0], tgt[:, 1]))
        order = torch.empty(n, dtype=torch.long)
        order[listed] = torch.arange(n)
        self.register_buffer("node_order", order)  # node -> its row in [pinned, hidden, target a, target b]
        self.bounds = (lo, hi)
        self.min_length = float(min_length)
        self.input_stiffness = float(input_stiffness)
        self.grounding = float(grounding)
        self.input_shape = (len(src),)
        self.variables = (
            Variable("hidden", (2 * len(hidden),)),
            Variable("pose", (3 * len(tgt),)),
            Variable("strain", (len(tgt),)),
        )

    # -- geometry ---------------------------------------------------------------------------------------------------
    def positions(self, state: State) -> Tensor:
        """Every node's position, ``(batch, N, 2)``, from the state (pinned nodes at their reference)."""
        hidden, pose, strain = state
        batch = hidden.shape[0]
        pose = pose.reshape(batch, -1, 3)
        half = (0.5 * self.target_lengths.to(hidden.dtype) * (1 + strain)).unsqueeze(-1)
        direction = torch.stack((torch.cos(pose[..., 2]), torch.sin(pose[..., 2])), -1)
        pinned = self.reference[self.pinned_nodes].to(hidden.dtype).expand(batch, -1, -1)
        parts = (
            pinned,
            hidden.reshape(batch, -1, 2),
            pose[..., :2] - half * direction,
            pose[..., :2] + half * direction,
        )
        return torch.cat(parts, 1)[:, self.node_order]  # out of place (vmap-able): node i from its part

    def spring_lengths(self, state: State) -> Tensor:
        """Every spring's length ``‖r_b − r_a‖``, ``(batch, E)``."""
        r = self.positions(state)
        return (r[:, self.pairs[:, 1]] - r[:, self.pairs[:, 0]]).norm(dim=-1)

    def init_state(self, x: Tensor) -> State:
        """The reference configuration: every free node at its reference position, the targets unstrained."""
        batch = x.shape[0]
        ref = self.reference.to(x.dtype)
        hidden = ref[self.hidden_nodes].reshape(1, -1).expand(batch, -1).clone()
        a, b = ref[self.target_pairs[:, 0]], ref[self.target_pairs[:, 1]]
        d = b - a
        pose = torch.cat(((a + b) / 2, torch.atan2(d[:, 1], d[:, 0]).unsqueeze(1)), 1).reshape(1, -1)
        return hidden, pose.expand(batch, -1).clone(), x.new_zeros(batch, len(self.target_pairs))

    # -- energy -----------------------------------------------------------------------------------------------------
    def energy(self, x: Tensor, state: State) -> Tensor:
        r = self.positions(state)
        d = (r[:, self.pairs[:, 1]] - r[:, self.pairs[:, 0]]).norm(dim=-1)
        stretch = d - self.rest_length
        e = 0.5 * (stretch * stretch) @ self.stiffness
        sp = self.source_pairs
        ds = (r[:, sp[:, 1]] - r[:, sp[:, 0]]).norm(dim=-1)
        drive = ds - self.source_lengths.to(x.dtype) * (1 + x)
        e = e + 0.5 * self.input_stiffness * (drive * drive).sum(-1)
        if self.grounding:
            moved = r - self.reference.to(r.dtype)
            e = e + 0.5 * self.grounding * (moved * moved).sum((1, 2))
        return e

    def param_grads(self, x: Tensor, state: State) -> dict[str, Tensor]:
        """``∂E/∂k = ½⟨(d − ℓ)²⟩``, ``∂E/∂ℓ = −k⟨d − ℓ⟩`` (batch means)."""
        stretch = self.spring_lengths(state) - self.rest_length
        grads = {"stiffness": 0.5 * (stretch * stretch).mean(0)}
        if isinstance(self.rest_length, nn.Parameter):
            grads["rest_length"] = -self.stiffness * stretch.mean(0)
        return grads

    # -- fast paths: forces and the Hessian in closed form ------------------------------------------------------------
    def _springs(self, x: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Every spring and actuator as one list: ends ``(M, 2)``, stiffness ``(M,)`` and rest length ``(batch, M)``,
        with their unit vectors ``(batch, M, 2)`` and lengths ``(batch, M)`` at the positions ``r``."""
        ends = torch.cat((self.pairs, self.source_pairs))
        k = torch.cat(
            (self.stiffness, self.stiffness.new_full((len(self.source_pairs),), self.input_stiffness))
        )
        rest = torch.cat(
            (self.rest_length.expand(x.shape[0], -1), self.source_lengths.to(x.dtype) * (1 + x)), 1
        )
        d = r[:, ends[:, 1]] - r[:, ends[:, 0]]
        length = d.norm(dim=-1)
        return ends, k, rest, d / length.unsqueeze(-1), length

    def _chain(self, state: State) -> tuple[Tensor, Tensor, Tensor]:
        """For each target pair: ``h = ½ℓ⁰(1 + ε)``, ``u = (cos φ, sin φ)`` and ``u' = (−sin φ, cos φ)``."""
        pose = state[1].reshape(state[1].shape[0], -1, 3)
        phi = pose[..., 2]
        half = 0.5 * self.target_lengths.to(phi.dtype) * (1 + state[2])
        u = torch.stack((torch.cos(phi), torch.sin(phi)), -1)
        du = torch.stack((-torch.sin(phi), torch.cos(phi)), -1)
        return half, u, du

    def _node_grads(self, x: Tensor, state: State) -> tuple[Tensor, Tensor]:
        """``∂E/∂r`` of every node, ``(batch, N, 2)``, and the positions."""
        r = self.positions(state)
        ends, k, rest, unit, length = self._springs(x, r)
        f = (k * (length - rest)).unsqueeze(-1) * unit  # ∂E/∂r_b of each spring (and −∂E/∂r_a)
        g = torch.zeros_like(r)
        g.index_add_(1, ends[:, 1], f).index_add_(1, ends[:, 0], -f)
        if self.grounding:
            g = g + self.grounding * (r - self.reference.to(r.dtype))
        return g, r

    def state_grad(self, x: Tensor, state: State, drive: Any = None) -> State:
        """``∂E/∂s`` in closed form: the node forces, carried onto the target pairs' midpoint, angle and strain."""
        g, _ = self._node_grads(x, state)
        batch = g.shape[0]
        half, u, du = self._chain(state)
        ga, gb = g[:, self.target_pairs[:, 0]], g[:, self.target_pairs[:, 1]]
        diff = gb - ga
        pose = torch.cat((ga + gb, (half * (du * diff).sum(-1)).unsqueeze(-1)), -1).reshape(batch, -1)
        strain = 0.5 * self.target_lengths.to(g.dtype) * (u * diff).sum(-1)
        return g[:, self.hidden_nodes].reshape(batch, -1), pose, strain

    def _jacobian(self, state: State) -> Tensor:
        """``∂r/∂s``: ``(batch, 2N, n)`` (node coordinates by state coordinates)."""
        batch = state[0].shape[0]
        n_nodes = self.reference.shape[0]
        sizes = [s.shape[1] for s in state]
        jac = state[0].new_zeros(batch, 2 * n_nodes, sum(sizes))
        hid = self.hidden_nodes
        rows = torch.stack((2 * hid, 2 * hid + 1), 1).flatten()
        jac[:, rows, torch.arange(sizes[0], device=rows.device)] = 1.0
        half, u, du = self._chain(state)
        base_pose, base_strain = sizes[0], sizes[0] + sizes[1]
        for t, (a, b) in enumerate(self.target_pairs.tolist()):
            for node, sign in ((a, -1.0), (b, 1.0)):
                for axis in (0, 1):
                    row = 2 * node + axis
                    jac[:, row, base_pose + 3 * t + axis] = 1.0
                    jac[:, row, base_pose + 3 * t + 2] = sign * half[:, t] * du[:, t, axis]
                    jac[:, row, base_strain + t] = sign * 0.5 * float(self.target_lengths[t]) * u[:, t, axis]
        return jac

    def hessian(self, x: Tensor, state: State) -> Tensor:
        """``∂²E/∂s²`` per example, ``(batch, n, n)``: ``Jᵀ K J`` with ``K`` the springs' stiffness matrix (per spring
        ``k[n̂n̂ᵀ + (1 − ℓ/d)(I − n̂n̂ᵀ)]``) plus the curvature of the target pairs' coordinates."""
        r = self.positions(state)
        batch, n_nodes = r.shape[0], r.shape[1]
        ends, k, rest, unit, length = self._springs(x, r)
        outer = unit.unsqueeze(-1) * unit.unsqueeze(-2)  # (batch, M, 2, 2)
        eye = torch.eye(2, dtype=r.dtype, device=r.device)
        block = k[:, None, None] * (outer + (1 - rest / length)[..., None, None] * (eye - outer))
        big = r.new_zeros(batch, 2 * n_nodes, 2 * n_nodes)
        a, b = ends[:, 0], ends[:, 1]
        axis = torch.arange(2, device=r.device)
        which = torch.arange(batch, device=r.device)[:, None, None, None]
        for p, q, sign in ((a, a, 1.0), (b, b, 1.0), (a, b, -1.0), (b, a, -1.0)):
            rows = (2 * p[:, None, None] + axis[None, :, None]).expand(-1, 2, 2)
            cols = (2 * q[:, None, None] + axis[None, None, :]).expand(-1, 2, 2)
            big.index_put_((which, rows[None], cols[None]), sign * block, accumulate=True)
        if self.grounding:
            big = big + self.grounding * torch.eye(2 * n_nodes, dtype=r.dtype, device=r.device)
        jac = self._jacobian(state)
        h = jac.transpose(1, 2) @ big @ jac
        # the second derivatives of the target nodes' positions, against their forces
        g, _ = self._node_grads(x, state)
        half, u, du = self._chain(state)
        sizes = [s.shape[1] for s in state]
        base_pose, base_strain = sizes[0], sizes[0] + sizes[1]
        ga, gb = g[:, self.target_pairs[:, 0]], g[:, self.target_pairs[:, 1]]
        diff = gb - ga
        for t in range(len(self.target_pairs)):
            i_phi, i_eps = base_pose + 3 * t + 2, base_strain + t
            h[:, i_phi, i_phi] += -half[:, t] * (u[:, t] * diff[:, t]).sum(-1)
            cross = 0.5 * float(self.target_lengths[t]) * (du[:, t] * diff[:, t]).sum(-1)
            h[:, i_phi, i_eps] += cross
            h[:, i_eps, i_phi] += cross
        return h

    def hessian_solve(self, x: Tensor, state: State, rhs: State, shift: State | None = None) -> State | None:
        """``(∂²E/∂s² + diag(shift)) z = rhs`` per example, with :meth:`hessian`."""
        sizes = [s.shape[1] for s in state]
        h = self.hessian(x, tuple(s.detach() for s in state))
        if shift is not None:
            h = h + torch.diag_embed(torch.cat(shift, 1))
        z = torch.linalg.solve(h, torch.cat(rhs, 1).unsqueeze(-1)).squeeze(-1)
        return tuple(z.split(sizes, 1))

    def constrain_parameters(self) -> None:
        """Stiffnesses within their bounds; rest lengths at least ``min_length`` of their reference length."""
        with torch.no_grad():
            self.stiffness.clamp_(*self.bounds)
            if isinstance(self.rest_length, nn.Parameter):
                self.rest_length.copy_(
                    torch.maximum(self.rest_length, self.min_length * self.reference_lengths)
                )

    def extra_repr(self) -> str:
        return (
            f"{self.reference.shape[0]} nodes, {len(self.pairs)} springs, {len(self.source_pairs)} source pairs, "
            f"{len(self.target_pairs)} target pairs, {len(self.pinned_nodes)} pinned"
        )

    # -- the figure ---------------------------------------------------------------------------------------------------
    def plot(self, x: Tensor, relax: Callable[[EnergySystem, Tensor], State], path: Path) -> Path:
        """The network before and after training, each deformed by the first input ``x[0]`` (``relax(system, x)``
        gives the steady state): springs drawn by stiffness (width), sources and targets marked. Written to
        ``path`` (PNG)."""
        import copy

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure

        before = copy.deepcopy(self)
        with torch.no_grad():
            before.stiffness.copy_(self.initial_stiffness)
            before.rest_length.copy_(self.initial_rest_length)
        fig = Figure(figsize=(9.0, 4.4), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        top = float(torch.maximum(self.stiffness.detach(), self.initial_stiffness).max())
        for ax, net, title in ((axes[0], before, "before training"), (axes[1], self, "after training")):
            with torch.no_grad():
                state = relax(net, x[:1])
                r = net.positions(state)[0].double().cpu()
                strain = state[-1][0].double().cpu()
            p = net.pairs.cpu()
            k = net.stiffness.detach().double().cpu()
            segments = torch.stack((r[p[:, 0]], r[p[:, 1]]), 1).numpy()
            ax.add_collection(
                LineCollection(segments, linewidths=0.3 + 2.5 * (k / top).numpy(), colors="0.35")
            )
            ax.scatter(r[:, 0], r[:, 1], s=4, c="0.2")
            for pairs, colour, label in (
                (net.source_pairs, "tab:blue", "source"),
                (net.target_pairs, "tab:red", "target"),
            ):
                for j, (a, b) in enumerate(pairs.cpu().tolist()):
                    ax.plot(
                        [r[a, 0], r[b, 0]],
                        [r[a, 1], r[b, 1]],
                        color=colour,
                        lw=2.5,
                        label=label if j == 0 else None,
                    )
            pin = net.pinned_nodes.cpu()
            ax.scatter(r[pin, 0], r[pin, 1], marker="s", s=30, c="k", label="pinned")
            shown = ", ".join(f"{float(s):+.3f}" for s in strain[:3])
            ax.set_title(f"{title}: target strain {shown}", fontsize=9)
            ax.set_aspect("equal")
            ax.autoscale()
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0].legend(fontsize=7, loc="lower left")
        source = ", ".join(f"{float(v):+.3f}" for v in x[0, :3])
        fig.suptitle(f"CentralForceNetwork under source strain {source} (line width: stiffness)", fontsize=10)
        return save_png(fig, path, dpi=90)
