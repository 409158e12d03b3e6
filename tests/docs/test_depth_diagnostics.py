"""docs/scripts/depth_diagnostics.py (the evidence behind docs/reproductions.md's drn-3h finding) runs and says
what it claims: relative steps from the rule's gradient and the optimizer's rates, and a converged relaxation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.mark.usefixtures("quiet_torch")
def test_depth_diagnostics_on_a_small_resistive_net(
    doc_script: Callable[[str], ModuleType], fake_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = doc_script("depth_diagnostics")
    sets = [
        f"data.data_dir={json.dumps(str(fake_data))}",
        "system.sizes=[784,32,256,10]",
        "optimizer.kind=sgd",  # the paper's per-layer rates
        "optimizer.lr=[0.002,0.006,0.018]",
    ]
    argv = ["drn-2h", "--batch", "8", "--examples", "16", "--long", "60"]
    assert script.main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    params = result["parameters"]
    # SGD: the step is lr * g with the preset's per-layer rates; conductances start non-zero, biases at 0
    assert {"conductances.0", "conductances.1", "conductances.2"} <= set(params)
    for k in range(3):
        row = params[f"conductances.{k}"]
        assert row["norm"] > 0 and row["step"] > 0
        assert row["relative_step"] == pytest.approx(row["step"] / row["norm"])
    assert [params[f"conductances.{k}"]["lr"] for k in range(3)] == [0.002, 0.006, 0.018]
    assert [layer["units"] for layer in result["layers"]] == [32, 256, 10]
    assert all(layer["signal"] >= 0 and layer["common_mode"] >= 0 for layer in result["layers"])
    # block-coordinate relaxation of a resistive net converges: 60 sweeps barely move the preset's 5-sweep state
    assert result["relaxation"]["sweeps"] == 5 and result["relaxation"]["long_sweeps"] == 60
    assert result["relaxation"]["largest_change"] < 1e-2


@pytest.mark.usefixtures("quiet_torch")
def test_adams_first_step_is_the_rate_times_the_sign(
    doc_script: Callable[[str], ModuleType], fake_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = doc_script("depth_diagnostics")
    sets = [
        f"data.data_dir={json.dumps(str(fake_data))}",
        "system.sizes=[784,32,10]",
        "optimizer.kind=adam",
        "optimizer.lr=0.001",
    ]
    assert (
        script.main(
            [
                "drn-1h",
                "--batch",
                "8",
                "--examples",
                "8",
                "--long",
                "8",
                *[a for s in sets for a in ("--set", s)],
            ]
        )
        == 0
    )
    (result,) = json.loads(capsys.readouterr().out)["results"]
    # Adam's first step moves every element by lr where g != 0: 0 < |step| <= lr sqrt(n), whatever g's scale
    for name, row in result["parameters"].items():
        if name.startswith("conductances"):
            assert 0 < row["step"] <= 0.001 * row["numel"] ** 0.5 * (1 + 1e-6)
            assert row["step"] > 0.001  # many elements move, not one


@pytest.mark.usefixtures("quiet_torch")
def test_a_trained_run_is_diagnosed_at_its_weights_with_its_saturation(
    doc_script: Callable[[str], ModuleType],
    fake_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from eqprop.train import apply_overrides, fit, load_preset
    from eqprop.train.monitor import Monitoring

    config = apply_overrides(
        load_preset("fmnist-quick"),
        [f"data.data_dir={json.dumps(str(fake_data))}", "system.sizes=[784,16,10]"],
    )
    fit(config, tmp_path / "run", progress=False, monitoring=Monitoring(tensorboard=False))
    script = doc_script("depth_diagnostics")
    assert script.main([str(tmp_path / "run"), "--batch", "8", "--examples", "16", "--long", "30"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["source"] == str(tmp_path / "run")
    hidden, output = result["layers"]
    assert hidden["units"] == 16 and output["units"] == 10
    # the fmnist-dhn1h family boxes its hidden units in [0, 1] and leaves the output free (no bound: None)
    assert 0 <= hidden["at_lower_bound"] <= 1 and 0 <= hidden["at_upper_bound"] <= 1
    assert hidden["at_lower_bound"] + hidden["at_upper_bound"] <= 1
    assert output["at_lower_bound"] is None and output["at_upper_bound"] is None
    with pytest.raises(SystemExit, match="--set applies to presets"):
        script.main([str(tmp_path / "run"), "--set", "rule.beta=0.1"])


@pytest.mark.usefixtures("quiet_torch")
def test_the_estimate_check_compares_the_runs_sweeps_with_long_ones(
    doc_script: Callable[[str], ModuleType], fake_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = doc_script("depth_diagnostics")
    sets = ["--set", f"data.data_dir={json.dumps(str(fake_data))}", "--set", "system.sizes=[784,16,10]"]
    argv = ["fmnist-quick", "--batch", "8", "--examples", "8", "--estimate", *sets]
    # as many sweeps as the preset's (15 per phase): the same estimate
    assert script.main([*argv, "--long", "15"]) == 0
    same = json.loads(capsys.readouterr().out)["results"][0]["estimate"]
    assert same["sweeps"] == [15, 15] and same["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert same["norm_ratio"] == pytest.approx(1.0, abs=1e-6)
    # two sweeps per phase: a different (truncated) estimate of the same gradient
    assert script.main([*argv, "--long", "2"]) == 0
    truncated = json.loads(capsys.readouterr().out)["results"][0]["estimate"]
    assert truncated["long_sweeps"] == 2 and truncated["cosine"] < 1 - 1e-6
