"""The literature's rule names (Scellier, Ernoult, Kendall & Kumar 2023) map onto the right rules and configs."""

from __future__ import annotations

import pytest

from eqprop import (
    BackpropThroughSolver,
    ConfigError,
    ContrastiveLearning,
    CoupledLearning,
    EqProp,
    ImplicitDiff,
)
from eqprop.cli._common import rules_help
from eqprop.rules import (
    RULE_NAMES,
    RULES,
    ContinualEqProp,
    HolomorphicEqProp,
    VectorFieldEqProp,
    by_name,
)
from eqprop.rules.names import lookup
from eqprop.train import apply_overrides, apply_rule_name, build, load_preset

# Written out by hand from the comparative study's Table 1 (not derived from RULE_NAMES).
EXPECTED = {
    "CL": (ContrastiveLearning(), "contrastive", None),
    "PEP": (EqProp(beta=0.3, variant="positive"), "eqprop", "positive"),
    "NEP": (EqProp(beta=0.3, variant="negative"), "eqprop", "negative"),
    "CEP": (EqProp(beta=0.3, variant="centered"), "eqprop", "centered"),
    "PCpL": (CoupledLearning(beta=0.3, variant="positive"), "coupled", "positive"),
    "NCpL": (CoupledLearning(beta=0.3, variant="negative"), "coupled", "negative"),
    "CCpL": (CoupledLearning(beta=0.3, variant="centered"), "coupled", "centered"),
    "TBP": (BackpropThroughSolver(steps=7), "backprop", None),
    "RBP": (ImplicitDiff(cg_iterations=50), "implicit", None),
}


def test_the_table_holds_the_nine_names_of_the_study_in_order_then_the_others():
    assert list(RULE_NAMES)[:9] == list(EXPECTED)
    assert list(RULE_NAMES)[9:] == ["C-EP", "VF", "hEP"]


def test_the_names_beyond_the_study():
    assert by_name("C-EP", beta=0.3) == ContinualEqProp(beta=0.3, variant="positive")
    assert by_name("vf", beta=0.3) == VectorFieldEqProp(beta=0.3, variant="positive")
    assert by_name("HEP", beta=0.3) == HolomorphicEqProp(beta=0.3, points=4)
    config = apply_rule_name(apply_overrides(load_preset("fmnist-hep-mlp"), ["rule.beta=0.3"]), "CEP")
    assert config.rule == EqProp(beta=0.3, variant="centered")  # our CEP, not continual EqProp


@pytest.mark.parametrize("name", EXPECTED)
def test_by_name_builds_the_rule(name):
    rule = by_name(name, beta=0.3, steps=7, cg_iterations=50)
    assert rule == EXPECTED[name][0]
    assert type(rule) is type(EXPECTED[name][0])
    assert by_name(name.lower(), beta=0.3, steps=7, cg_iterations=50) == rule  # case-insensitive


@pytest.mark.parametrize("name", EXPECTED)
def test_a_name_sets_the_config_kind_and_variant_and_keeps_beta(name):
    config = apply_overrides(load_preset("fmnist-quick"), ["rule.beta=0.3"])  # an EqProp rule
    named = apply_rule_name(config, name)
    _, kind, variant = EXPECTED[name]
    assert named.rule.kind == kind
    if variant is not None:
        assert named.rule.variant == variant
        assert named.rule.beta == 0.3  # every kind with a variant has a beta: it is kept
    rule = build(named).rule
    if name == "TBP":  # truncated at the nudged phase's sweeps (15 in the preset)
        assert rule == BackpropThroughSolver(steps=15)
    elif name == "RBP":  # EqProp has no cg_iterations to keep: the new kind's default
        assert rule == ImplicitDiff()
    else:
        assert rule == EXPECTED[name][0]


def test_a_name_keeps_the_settings_the_new_kind_shares():
    config = apply_overrides(load_preset("fmnist-quick"), ["rule.kind=implicit", "rule.cg_iterations=50"])
    assert build(apply_rule_name(config, "RBP")).rule == EXPECTED["RBP"][0]
    # ... and drops those it does not: the EqProp of CEP takes its own defaults
    assert apply_rule_name(config, "CEP").rule == EqProp(variant="centered")


def test_tbp_keeps_explicit_steps_and_counts_the_nudged_solver():
    config = load_preset("fmnist-quick")
    backprop = apply_overrides(config, ["rule.kind=backprop", "rule.steps=4"])
    assert apply_rule_name(backprop, "TBP").rule.steps == 4
    config = apply_overrides(config, ["nudged_solver.iterations=9"])
    assert apply_rule_name(config, "TBP").rule.steps == 9


@pytest.mark.parametrize("bad", ["EP", "cep2", "", "Contrastive"])
def test_unknown_names_list_the_valid_ones(bad):
    with pytest.raises(ConfigError, match="choose one of CL, PEP, NEP, CEP, PCpL, NCpL, CCpL, TBP, RBP"):
        lookup(bad)
    with pytest.raises(ConfigError, match="unknown rule name"):
        by_name(bad)


def test_close_names_get_a_suggestion():
    with pytest.raises(ConfigError) as info:
        lookup("PCPL2")
    assert "did you mean 'PCpL'" in info.value.hint


def test_the_help_text_documents_every_name():
    text = rules_help()
    for name, (_, kind, variant) in EXPECTED.items():
        line = next(line for line in text.splitlines() if line.split()[:1] == [name])
        expected = [kind, variant] if variant else [kind]
        assert line.split()[1 : 1 + len(expected)] == expected
    assert "continual" in text and "not the continual" in text
    for kind, cls in RULES.items():  # every kind, with its class and settings
        line = next(line for line in text.splitlines() if line.split()[:1] == [kind])
        assert line.split()[1].startswith(f"{cls.__name__}(")


@pytest.mark.parametrize("kind", ["contrastive", "coupled"])
def test_clamping_rules_need_the_squared_error_in_the_config(kind):
    sets = [f"rule.kind={kind}", "cost.kind=cross_entropy_readout"]
    config = apply_overrides(load_preset("fmnist-quick"), sets)
    with pytest.raises(ConfigError, match="needs a cost without parameters") as info:
        build(config)  # the rule refuses the cost once both are built
    assert "squared_error" in info.value.hint
