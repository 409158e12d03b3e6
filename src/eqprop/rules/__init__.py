"""Learning rules: EqProp and the exact references it is checked against."""

from eqprop.rules.base import Estimate, Rule, named_parameters
from eqprop.rules.eqprop import EqProp
from eqprop.rules.implicit import ImplicitDiff
from eqprop.rules.unrolled import BackpropThroughSolver

__all__ = ["BackpropThroughSolver", "EqProp", "Estimate", "ImplicitDiff", "Rule", "named_parameters"]
