"""The run layer for Lagrangian systems: the generated trajectory tasks, regression runs (loss, no accuracy),
trajectory figures, echo = BPTT on a whole training run, the refusal of naive initial-value EqProp, and
``eqprop gradcheck`` on an echo preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eqprop.cli import main
from eqprop.data import Split, load_dataset
from eqprop.data.trajectories import driven_chain_teacher, smooth_drives
from eqprop.errors import ConfigError
from eqprop.solvers import Leapfrog, solve
from eqprop.train import apply_overrides, fit, load_preset

SMALL = ["data.train_size=400", "data.test_size=40", "data.validation=20", "train.batch_size=20"]


def test_driven_chain_is_the_teachers_trajectories_and_the_same_every_time() -> None:
    a = load_dataset("driven-chain", flatten=False, dtype=torch.float64)
    b = load_dataset("driven-chain", flatten=False, dtype=torch.float64)
    assert (
        a.classes == 0 and tuple(a.train.x.shape) == (1000, 41, 2) and tuple(a.train.y.shape) == (1000, 40, 2)
    )
    assert torch.equal(a.train.y, b.train.y) and torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.train.x[:200], a.test.x)  # the test drives are other drives
    x = smooth_drives(1000, 41, 2, 0.1, seed=0)[:3]
    q = solve(driven_chain_teacher("initial"), x, Leapfrog()).state[-1]
    assert torch.allclose(q, a.train.y[:3], atol=1e-12)
    fixed = load_dataset("driven-chain-fixed", flatten=False)
    assert tuple(fixed.train.y.shape) == (1000, 39, 2)


def test_driven_chain_refuses_image_and_class_options() -> None:
    with pytest.raises(ConfigError, match="regression task on sequences"):
        load_dataset("driven-chain", classes=[0, 1])
    with pytest.raises(ConfigError, match="regression task on sequences"):
        load_dataset("driven-chain", crop=2)


def test_a_split_takes_float_targets_of_any_shape_but_labels_of_one_dimension() -> None:
    Split(x=torch.zeros(3, 5, 2), y=torch.zeros(3, 4, 2))
    with pytest.raises(ConfigError, match=r"y of shape \(n,\)"):
        Split(x=torch.zeros(3, 5, 2), y=torch.zeros(3, 4, dtype=torch.long))


def test_an_echo_run_learns_reports_loss_not_accuracy_and_draws_its_trajectories(tmp_path: Path) -> None:
    config = apply_overrides(load_preset("chain-echo"), [*SMALL, "train.epochs=3"])
    summary = fit(config, tmp_path / "run", progress=False)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["test_accuracy"] is None and history[0]["test_accuracy"] is None
    assert history[-1]["test_loss"] < 0.5 * history[0]["test_loss"]
    assert summary["selected_on_validation"]["validation_loss"] == min(r["validation_loss"] for r in history)
    figure = tmp_path / "run" / "trajectories.png"
    assert summary["figures"] == [str(figure)] and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(tmp_path / "run")]) == 0  # a regression run's report: losses, no accuracy
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "loss per epoch" in page and "test loss" in page


def test_the_centered_echo_trains_the_linear_chain_exactly_as_bptt(tmp_path: Path) -> None:
    """For a linear system the centered echo's gradient is BPTT's up to round-off (the echo's response to ε is
    linear), so two whole runs end at the same loss to ~1e-12; we allow 1e-9 for round-off accumulated over steps."""
    sets = [*SMALL, "train.epochs=2"]
    echo = fit(apply_overrides(load_preset("chain-echo"), sets), tmp_path / "echo", progress=False)
    bptt = fit(
        apply_overrides(load_preset("chain-echo"), [*sets, "rule.kind=backprop"]),
        tmp_path / "bptt",
        progress=False,
    )
    assert echo["test_loss"] == pytest.approx(bptt["test_loss"], rel=1e-9)


def test_a_lagrangian_eqprop_run_learns(tmp_path: Path) -> None:
    config = apply_overrides(load_preset("chain-lep"), [*SMALL, "train.epochs=2"])
    fit(config, tmp_path / "run", progress=False)
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["test_loss"] < 0.7 * history[0]["test_loss"]


def test_naive_initial_value_eqprop_is_refused_at_build(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["train", "--preset", "chain-echo", "--out", str(tmp_path / "run"), "--set", "rule.kind=eqprop"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "retarded response" in err and "echo" in err and "fixed" in err


def test_gradcheck_on_the_echo_preset(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["gradcheck", "--preset", "chain-echo", "--batch-size", "4", "--betas", "0.01", "0.001", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rule"] == "echo" and result["reference"]["method"] == "BPTT through the integrator"
    assert result["slopes"]["positive"] == pytest.approx(1.0, abs=0.1)
    for row in result["eqprop"]:
        assert set(row["per_tensor"]) == {"system.coupling", "system.input_weights", "system.stiffness"}
        if row["variant"] == "centered":  # exact for a linear chain
            assert row["relative_error"] < 1e-9


def test_compare_and_robustness_refuse_a_regression_preset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert (
        main(["compare", "--preset", "chain-echo", "--rules", "CEP,TBP", "--out", str(tmp_path / "c")]) != 0
    )
    assert "regression task" in capsys.readouterr().err
    assert (
        main(
            [
                "robustness",
                "--preset",
                "chain-echo",
                "--vary",
                "rule.beta=0.001,0.01",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        != 0
    )
    assert "regression task" in capsys.readouterr().err
    assert (
        not (tmp_path / "c").exists() and not (tmp_path / "r").exists()
    )  # refused before anything was trained
