r"""The energy a physical learner spends: power dissipated at its equilibria, per inference and per training step,
beside a digital estimate of the same work.

For a resistive (or flow) network in physical units (conductances in siemens, potentials in volts) the power at an
equilibrium is ``P = Σ g ΔV²`` (:meth:`dissipated_power` of the system: ideal diodes and sources dissipate none).
Held for a settling time ``t``, an inference costs ``P_free·t``, and a training step the sum over its phases (the
free one and each nudged one) of ``P·t``, per example. The digital side counts multiply-accumulates (MACs): the
simulation of the same step (every sweep of every phase reads every weight twice, forward and back, and the update
forms one product per weight and phase) and, for scale, a backprop step of a feedforward net with as many weights
(three MACs per weight: forward, backward, weight gradient), times an energy per MAC.

Default energy per MAC: 4.6 pJ, a 32-bit floating-point multiply (3.7 pJ) plus add (0.9 pJ) at 45 nm, from M.
Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014 (figures recalled from that
paper's table; arithmetic only: reading the weights from DRAM costs far more, so the digital figures are a floor).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from eqprop.costs import Cost
from eqprop.errors import ConfigError
from eqprop.rules.base import Rule, phase_betas
from eqprop.solvers.base import Solver, solve
from eqprop.systems.base import EnergySystem

__all__ = ["HOROWITZ_PJ_PER_MAC", "energy_table"]

HOROWITZ_PJ_PER_MAC = 4.6
"""pJ per FP32 multiply-accumulate at 45 nm (Horowitz, ISSCC 2014: multiply 3.7 pJ + add 0.9 pJ)."""


def energy_table(
    system: EnergySystem,
    cost: Cost,
    solver: Solver,
    rule: Rule,
    x: Tensor,
    y: Tensor,
    *,
    nudged_solver: Solver | None = None,
    settling_time: float = 1e-6,
    pj_per_mac: float = HOROWITZ_PJ_PER_MAC,
    siemens_per_unit: float = 1.0,
    volts_per_unit: float = 1.0,
) -> dict[str, Any]:
    """Power and energy of ``system`` on the batch ``(x, y)``, per example (means over the batch).

    Args:
        system: a system with ``dissipated_power(x, state)`` (resistive and flow networks).
        cost, solver, rule: the run's; the rule's β and variant give the nudged phases.
        settling_time: how long each phase is held, in seconds.
        pj_per_mac: the digital estimate's energy per multiply-accumulate, in picojoules.
        siemens_per_unit, volts_per_unit: what one unit of the model's conductances and potentials is in
            hardware. Learning is unchanged by these scales (the equilibria scale with the inputs, the updates
            with the conductances), the power scales as ``siemens_per_unit·volts_per_unit²``. With Shockley
            junctions only the conductance scale is free (every conductance and ``IS`` scaled alike): the
            exponential fixes the volt.

    Raises:
        ConfigError: a system without a dissipated power, or a non-positive settling time or energy per MAC.
    """
    if not hasattr(system, "dissipated_power"):
        raise ConfigError(
            f"{type(system).__name__} reports no dissipated power",
            hint="the energy table is for resistive and flow networks (deep_resistive, flow_network)",
        )
    if not settling_time > 0 or not pj_per_mac > 0 or not siemens_per_unit > 0 or not volts_per_unit > 0:
        raise ConfigError(
            f"settling time {settling_time} s, {pj_per_mac} pJ/MAC, {siemens_per_unit} S and {volts_per_unit} V per "
            "unit: all must be > 0"
        )
    if volts_per_unit != 1.0 and not system.quadratic_blocks:
        raise ConfigError(
            f"--volts-per-unit {volts_per_unit}: {type(system).__name__} has Shockley junctions, whose exponential "
            "law i = IS(exp(v/(N·Vt)) − 1) fixes the volt; its potentials are already volts",
            hint="leave --volts-per-unit at 1 (--siemens-per-unit still applies: every conductance and IS scaled)",
        )
    scale = siemens_per_unit * volts_per_unit**2
    nudged = solver if nudged_solver is None else nudged_solver
    beta = float(getattr(rule, "beta", 0.0))
    variant = str(getattr(rule, "variant", "positive"))
    with torch.no_grad():
        free = solve(system, x, solver)
        phases = {"free": free}
        if beta:
            for b in phase_betas(variant, beta):
                if b != 0.0:
                    phases[f"nudged β={b:g}"] = solve(
                        system, x, nudged, cost=cost, y=y, beta=b, init=free.state
                    )
        power = {
            name: scale * float(system.dissipated_power(x, eq.state).mean())  # type: ignore[attr-defined]
            for name, eq in phases.items()
        }
    weights = sum(p.numel() for n, p in system.named_parameters() if not n.startswith("bias"))
    sweeps = solver.iterations + (len(phases) - 1) * nudged.iterations
    sim_macs = 2 * weights * sweeps + weights * (len(phases) - 1 if len(phases) > 1 else 1)
    backprop_macs = 3 * weights
    joule = 1e-12 * pj_per_mac
    inference = power["free"] * settling_time
    step = sum(power.values()) * settling_time
    return {
        "batch": int(x.shape[0]),
        "settling_time_s": settling_time,
        "units": {"siemens_per_unit": siemens_per_unit, "volts_per_unit": volts_per_unit},
        "power_w": power,
        "energy_per_inference_j": inference,
        "energy_per_training_step_j": step,
        "weights": weights,
        "digital": {
            "pj_per_mac": pj_per_mac,
            "source": "Horowitz, ISSCC 2014: FP32 multiply 3.7 pJ + add 0.9 pJ at 45 nm (arithmetic only)"
            if pj_per_mac == HOROWITZ_PJ_PER_MAC
            else "given",
            "simulated_step_macs": sim_macs,
            "simulated_step_j": sim_macs * joule,
            "backprop_step_macs": backprop_macs,
            "backprop_step_j": backprop_macs * joule,
            "inference_macs": weights,
            "inference_j": weights * joule,
        },
        "ratio_backprop_to_physical_step": backprop_macs * joule / step if step > 0 else None,
    }
