"""Learning rules: EqProp and the exact references it is checked against."""

from eqprop.rules.agnostic import AgnosticEqProp, agnostic_step
from eqprop.rules.base import Estimate, Rule, named_parameters
from eqprop.rules.eqprop import EqProp
from eqprop.rules.implicit import ImplicitDiff
from eqprop.rules.unrolled import BackpropThroughSolver

__all__ = [
    "AgnosticEqProp",
    "BackpropThroughSolver",
    "EqProp",
    "Estimate",
    "ImplicitDiff",
    "Rule",
    "agnostic_step",
    "named_parameters",
]
