"""Deep resistive networks through the run machinery: presets, training (conductances stay physical),
checkpoints, gradcheck and AEqprop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eqprop.cli import main
from eqprop.errors import ConfigError
from eqprop.train import apply_overrides, build, load_preset
from eqprop.train.checkpoint import load_checkpoint
from eqprop.train.config import validate

pytestmark = pytest.mark.usefixtures("quiet_torch")

SMALL = ["system.sizes=[784,16,10]", "system.input_gain=4.0", "train.batch_size=8", "rule.beta=0.1"]


@pytest.mark.parametrize("name", ["drn-xs", "drn-1h", "drn-2h", "drn-3h"])
def test_drn_presets_build_the_papers_networks(name):
    config = load_preset(name)
    validate(config)
    run = build(config)
    system, solver, rule = run.system, run.solver, run.rule
    assert type(system).__name__ == "DeepResistive"
    assert system.sizes[0] == 784 and system.sizes[-1] == 10
    assert config.train.batch_size == 4 and config.rule.variant == "centered"
    expected = {
        "drn-xs": (100, 4, 1.0),
        "drn-1h": (1024, 4, 1.0),
        "drn-2h": (1024, 5, 1.0),
        "drn-3h": (1024, 6, 2.0),
    }
    width, iterations, beta = expected[name]
    assert system.sizes[1] == width and solver.iterations == iterations and rule.beta == beta
    assert all(bool((g >= 0).all()) for g in system.conductances)
    assert config.published  # the numbers it targets are documented


def test_resistive_needs_the_squared_error():
    # the system refuses the cost when the run is built (DeepResistive.check_cost), not when the config is read
    config = apply_overrides(load_preset("drn-xs"), ["cost.kind=cross_entropy_readout"])
    with pytest.raises(
        ConfigError, match=r"DeepResistive needs .*squared error.*got CrossEntropyReadout"
    ) as info:
        build(config)
    assert info.value.hint is not None and "cost.kind = squared_error" in info.value.hint


def test_training_a_drn_learns_and_keeps_conductances_non_negative(fake_data: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--preset", "drn-xs", "--data-dir", str(fake_data), "--epochs", "2", "--out", str(run)]
    argv += ["--no-progress", "--set", "optimizer.lr=[0.05,0.05]"]
    for s in SMALL:
        argv += ["--set", s]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["test_accuracy"] > 0.5  # chance is 0.1 on the fake data
    state = load_checkpoint(run / "checkpoint.pt")["system"]
    conductances = [t for k, t in state.items() if k.startswith("conductances.")]
    assert conductances and all(bool((g >= 0).all()) for g in conductances)
    assert any(bool((g == 0).any()) for g in conductances)  # the clip was active: some are pinned at 0


def test_gradcheck_on_a_drn_matches_the_theory(fake_data: Path, capsys):
    betas = ["0.004", "0.002", "0.001"]  # small enough that no nudged phase crosses a diode kink
    argv = ["gradcheck", "--preset", "drn-xs", "--data-dir", str(fake_data), "--batch-size", "4"]
    argv += ["--iterations", "300", "--betas", *betas, "--json"]
    for s in SMALL:
        argv += ["--set", s]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["reference"]["free_residual"] < 1e-9
    assert abs(result["slopes"]["centered"] - 2) < 0.3
    assert abs(result["slopes"]["positive"] - 1) < 0.3
    rows = {(r["variant"], r["beta"]): r for r in result["eqprop"]}
    assert rows["centered", 0.001]["cosine"] > 0.99999


def test_aeqprop_trains_a_drn(fake_data: Path, tmp_path: Path, capsys):
    """Agnostic EqProp runs on resistive networks too (issue 6): the conductances move physically, stay >= 0."""
    run = tmp_path / "aeq"
    argv = ["train", "--preset", "drn-xs", "--data-dir", str(fake_data), "--epochs", "2", "--out", str(run)]
    argv += ["--no-progress", "--set", "rule.kind=aeqprop", "--set", "rule.variant=centered"]
    argv += ["--set", "rule.epsilon=0.5"]
    for s in SMALL:
        argv += ["--set", s]
    # nudging at ±0.05 (what the old centered mode did with SMALL's beta 0.1): steps at lr ε·2β = 0.05,
    # as the EqProp test above
    argv += ["--set", "rule.beta=0.05"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["test_accuracy"] > 0.5  # chance is 0.1
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["config"]["rule"]["kind"] == "aeqprop"
    assert (ckpt["config"]["rule"]["beta"], ckpt["config"]["rule"]["variant"]) == (0.05, "centered")
    # the rule sets the step ε·(β₂ − β₁) = 0.5·0.1 for every tensor, decayed by the schedule after each epoch
    assert ckpt["history"][0]["lr"] == pytest.approx([0.05 * 0.99] * len(ckpt["history"][0]["lr"]))
    state = ckpt["system"]
    assert all(bool((t >= 0).all()) for k, t in state.items() if k.startswith("conductances."))


def test_a_drn_checkpoint_round_trips_bit_exactly(fake_data: Path, tmp_path: Path, capsys):
    run = tmp_path / "rt"
    argv = ["train", "--preset", "drn-xs", "--data-dir", str(fake_data), "--epochs", "1", "--out", str(run)]
    argv += ["--no-progress"]
    for s in SMALL:
        argv += ["--set", s]
    assert main(argv) == 0
    capsys.readouterr()
    state = load_checkpoint(run / "checkpoint.pt")["system"]
    config = apply_overrides(load_preset("drn-xs"), SMALL)
    system = build(config).system
    system.load_state_dict(state)
    for k, t in system.state_dict().items():
        assert torch.equal(t, state[k])
    assert main(["eval", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert evaluated["test_accuracy"] == summary["test_accuracy"]
