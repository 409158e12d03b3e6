"""Learning rules: EqProp, contrastive and coupled learning, AEqprop, and the exact references.

``by_name("CEP")`` builds a rule from its name in the literature (see :mod:`eqprop.rules.names`).
"""

from eqprop.rules.agnostic import AgnosticEqProp, agnostic_step
from eqprop.rules.base import Estimate, Rule, named_parameters
from eqprop.rules.contrastive import ContrastiveLearning, CoupledLearning
from eqprop.rules.eqprop import EqProp
from eqprop.rules.implicit import ImplicitDiff
from eqprop.rules.names import RULE_NAMES, by_name
from eqprop.rules.unrolled import BackpropThroughSolver

__all__ = [
    "RULE_NAMES",
    "AgnosticEqProp",
    "BackpropThroughSolver",
    "ContrastiveLearning",
    "CoupledLearning",
    "EqProp",
    "Estimate",
    "ImplicitDiff",
    "Rule",
    "agnostic_step",
    "by_name",
    "named_parameters",
]
