"""The reference gradient: implicit differentiation at the free equilibrium (recurrent backprop)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from eqprop._types import State
from eqprop.errors import ConfigError
from eqprop.rules.base import Estimate, Rule, cost_param_grads
from eqprop.solvers.phases import Phases, raise_if_diverged

__all__ = ["ImplicitDiff"]


def _dot(a: State, b: State) -> Tensor:
    """Per-example inner product of two states, shape ``(batch,)``."""
    out = None
    for u, v in zip(a, b, strict=True):
        d = (u * v).flatten(1).sum(1)
        out = d if out is None else out + d
    assert out is not None
    return out


def _axpy(alpha: Tensor, x: State, y: State) -> State:
    """``y + alpha·x`` with one scalar ``alpha`` per example."""
    return tuple(v + alpha.view(-1, *([1] * (u.dim() - 1))) * u for u, v in zip(x, y, strict=True))


@dataclass(frozen=True)
class ImplicitDiff(Rule):
    r"""The exact gradient of ``L(θ) = C(s*(θ), y)`` at the free equilibrium, by the implicit function theorem
    (recurrent backprop, Almeida–Pineda; thesis §2 and Scellier & Bengio 2019):

    .. math::
        ∇_θ L = ∂_θ C − ∂_θ\big(λ·∂_sE(θ, s^*)\big), \qquad H_{FF}\,λ_F = ∂_{s_F}C,\ λ_{\bar F} = 0

    where ``H = ∂²E/∂s²`` and ``F`` is the set of free units: a unit held at a bound of its box (the
    clipped units of a hard-sigmoid layer) does not move with ``θ``, so it is excluded (its adjoint is 0).
    ``H_FF λ = g`` is solved per example by conjugate gradients with Hessian-vector products from autograd, or
    exactly by the system when it can (:meth:`~eqprop.systems.EnergySystem.hessian_solve`: the action of a
    Lagrangian system, whose Hessian is indefinite, where conjugate gradients would fail).

    Args:
        cg_iterations: cap on conjugate-gradient iterations.
        cg_tol: stop when every example's residual norm is ``<= cg_tol·‖∂C/∂s‖``.

    Example:
        >>> ref = ImplicitDiff().gradients(net, SquaredError(), BlockCoordinate(iterations=200), x, y)
    """

    kind: ClassVar[str] = "implicit"

    cg_iterations: int = 500
    cg_tol: float = 1e-10

    bias_order = None

    def __post_init__(self) -> None:
        if self.cg_iterations < 1:
            raise ConfigError(f"ImplicitDiff(cg_iterations={self.cg_iterations}): need >= 1")
        if not self.cg_tol > 0:
            raise ConfigError(f"ImplicitDiff(cg_tol={self.cg_tol}): need > 0")

    def _estimate(self, phases: Phases, out: Mapping[str, Tensor] | None) -> Estimate:
        system, cost, x = phases.system, phases.cost, phases.x
        target = phases.target
        free = phases.free
        raise_if_diverged(free)
        masks = system.active_mask(free.state)
        batch = x.shape[0]
        params = dict(system.named_parameters())
        with torch.enable_grad():
            leaves = tuple(s.detach().requires_grad_(True) for s in free.state)
            c = cost(leaves, target)
            g_c = torch.autograd.grad(c.sum(), leaves, allow_unused=True)
            rhs = tuple(
                (torch.zeros_like(s) if g is None else g) * m
                for s, g, m in zip(leaves, g_c, masks, strict=True)
            )
            g_e = torch.autograd.grad(system.energy(x, leaves).sum(), leaves, create_graph=True)

            def hvp(v: State) -> State:  # masked H v: the Hessian restricted to the free units
                hv = torch.autograd.grad(
                    g_e,
                    leaves,
                    grad_outputs=tuple(u * m for u, m in zip(v, masks, strict=True)),
                    retain_graph=True,
                )
                return tuple(h * m for h, m in zip(hv, masks, strict=True))

            exact = system.hessian_solve(x, free.state, rhs)  # a system that solves H exactly (any sign)
            if exact is None:
                lam, cg_res, cg_steps = self._cg(hvp, rhs)
            else:
                lam = tuple(z * m for z, m in zip(exact, masks, strict=True))
                cg_res, cg_steps = rhs[0].new_zeros(batch), 0
            # ∇θ L = −∂θ(λ·∂sE)/batch for the system; ∂θ C/batch for the cost's own parameters.
            adjoint = sum((lam_k.detach() * g).sum() for lam_k, g in zip(lam, g_e, strict=True))
            sys_grads = torch.autograd.grad(adjoint, list(params.values()), allow_unused=True)
            grads = {
                f"system.{n}": (torch.zeros_like(p) if g is None else -g / batch)
                for (n, p), g in zip(params.items(), sys_grads, strict=True)
            }
            grads.update(cost_param_grads(cost, cost(free.state, target).mean()))
        with torch.no_grad():
            loss = c.detach().mean()
            scores = cost.predict(free.state)
        return Estimate(
            grads={k: v.detach() for k, v in grads.items()},
            loss=loss,
            scores=scores,
            phases=(free,),
            metrics={
                "residual": free.stats.residual.max().reshape(1),
                "cg_residual": cg_res,
                "cg_iterations": torch.tensor(cg_steps),
            },
        )

    def _cg(self, hvp, b: State) -> tuple[State, Tensor, int]:
        """Batched conjugate gradients for ``H λ = b`` (one system per example)."""
        x = tuple(torch.zeros_like(u) for u in b)
        r = b
        p = b
        rr = _dot(r, r)
        stop = (self.cg_tol**2) * rr.clamp_min(torch.finfo(rr.dtype).tiny)
        steps = 0
        for steps in range(1, self.cg_iterations + 1):
            if bool((rr <= stop).all()):  # host sync: the reference is not a hot path
                steps -= 1
                break
            hp = hvp(p)
            php = _dot(p, hp)
            alpha = torch.where(
                php > 0, rr / php.clamp_min(torch.finfo(php.dtype).tiny), torch.zeros_like(rr)
            )
            alpha = torch.where(rr <= stop, torch.zeros_like(alpha), alpha)
            x = _axpy(alpha, p, x)
            r = _axpy(-alpha, hp, r)
            rr_new = _dot(r, r)
            beta = torch.where(
                rr > 0, rr_new / rr.clamp_min(torch.finfo(rr.dtype).tiny), torch.zeros_like(rr)
            )
            p = _axpy(beta, p, r)
            rr = rr_new
        return x, (rr / stop.div(self.cg_tol**2)).sqrt().max().reshape(1), steps
