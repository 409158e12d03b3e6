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
from eqprop.cli import RULES_HELP
from eqprop.rules import RULE_NAMES, by_name
from eqprop.rules.names import lookup
from eqprop.train.config import apply_overrides, apply_rule_name, build, load_preset

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


def test_the_table_holds_the_nine_names_of_the_study_in_order():
    assert list(RULE_NAMES) == list(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_by_name_builds_the_rule(name):
    rule = by_name(name, beta=0.3, steps=7, cg_iterations=50)
    assert rule == EXPECTED[name][0]
    assert type(rule) is type(EXPECTED[name][0])
    assert by_name(name.lower(), beta=0.3, steps=7, cg_iterations=50) == rule  # case-insensitive


@pytest.mark.parametrize("name", EXPECTED)
def test_a_name_sets_the_config_kind_and_variant_and_keeps_beta(name):
    config = apply_overrides(load_preset("fmnist-quick"), ["rule.beta=0.3", "rule.cg_iterations=50"])
    named = apply_rule_name(config, name)
    _, kind, variant = EXPECTED[name]
    assert named.rule.kind == kind
    if variant is not None:
        assert named.rule.variant == variant
    assert named.rule.beta == 0.3
    *_, rule = build(named)
    if name == "TBP":  # truncated at the nudged phase's sweeps (15 in the preset)
        assert rule == BackpropThroughSolver(steps=15)
    else:
        assert rule == EXPECTED[name][0]


def test_tbp_keeps_explicit_steps_and_counts_the_nudged_solver():
    config = load_preset("fmnist-quick")
    assert apply_rule_name(apply_overrides(config, ["rule.steps=4"]), "TBP").rule.steps == 4
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
    for name, (_, kind, variant) in EXPECTED.items():
        line = next(line for line in RULES_HELP.splitlines() if line.split()[:1] == [name])
        expected = [kind, variant] if variant else [kind]
        assert line.split()[1 : 1 + len(expected)] == expected
    assert "continual" in RULES_HELP and "NOT the continual" in RULES_HELP


@pytest.mark.parametrize("kind", ["contrastive", "coupled"])
def test_clamping_rules_need_the_squared_error_in_the_config(kind):
    config = load_preset("fmnist-quick")
    with pytest.raises(ConfigError, match="squared_error"):
        apply_overrides(config, [f"rule.kind={kind}", "cost.kind=cross_entropy_readout"])
