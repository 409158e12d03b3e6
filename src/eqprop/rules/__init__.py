"""Learning rules: EqProp, contrastive and coupled learning, AEqprop, and the exact references.

``RULES`` maps a run configuration's ``rule.kind`` to the rule class (each class is a frozen dataclass whose
fields are that kind's settings); ``by_name("CEP")`` builds a rule from its name in the literature (see
:mod:`eqprop.rules.names`).
"""

from eqprop.rules.agnostic import AgnosticEqProp, agnostic_step
from eqprop.rules.base import VARIANTS, Estimate, Rule, named_parameters, phase_betas
from eqprop.rules.continual import ContinualEqProp
from eqprop.rules.contrastive import ContrastiveLearning, CoupledLearning
from eqprop.rules.echo import HamiltonianEcho
from eqprop.rules.eqprop import EqProp
from eqprop.rules.holomorphic import HolomorphicEqProp
from eqprop.rules.implicit import ImplicitDiff
from eqprop.rules.linear_response import LinearResponse
from eqprop.rules.names import RULE_NAMES, RULES, by_name
from eqprop.rules.physical import Homeostat, HomeostaticSystem, PhysicalSystem, SpringCoupled
from eqprop.rules.thermal import ThermalEqProp
from eqprop.rules.unrolled import BackpropThroughSolver
from eqprop.rules.vector_field import VectorFieldEqProp

__all__ = [
    "RULES",
    "RULE_NAMES",
    "VARIANTS",
    "AgnosticEqProp",
    "BackpropThroughSolver",
    "ContinualEqProp",
    "ContrastiveLearning",
    "CoupledLearning",
    "EqProp",
    "Estimate",
    "HamiltonianEcho",
    "HolomorphicEqProp",
    "Homeostat",
    "HomeostaticSystem",
    "ImplicitDiff",
    "LinearResponse",
    "PhysicalSystem",
    "Rule",
    "SpringCoupled",
    "ThermalEqProp",
    "VectorFieldEqProp",
    "agnostic_step",
    "by_name",
    "named_parameters",
    "phase_betas",
]
