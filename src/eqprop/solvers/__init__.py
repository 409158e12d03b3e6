"""Relaxation algorithms: how the state reaches equilibrium, s* = argmin_s E + βC."""

from eqprop.solvers.base import Equilibrium, Solver, SolveStats, TotalEnergy, solve
from eqprop.solvers.block import BlockCoordinate
from eqprop.solvers.flow import GradientFlow

__all__ = ["BlockCoordinate", "Equilibrium", "GradientFlow", "SolveStats", "Solver", "TotalEnergy", "solve"]
