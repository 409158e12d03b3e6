"""``eqprop robustness``: one run per value of a setting, resumable, tabulated and plotted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eqprop.cli import main
from eqprop.errors import ConfigError
from eqprop.train.robustness import parse_vary


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_sweep_runs_each_value_once(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    args = [
        "robustness", "--data-dir", str(fake_data), "--set", "system.sizes=[784,16,10]", "--batch-size", "32",
        "--epochs", "1", "--threads", "1", "--vary", "hardware.read_noise=0,0.2", "--out-dir", str(out),
        "--no-progress", "--json",
    ]  # fmt: skip
    assert main(args) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["runs"] == {"trained": 2, "resumed": 0, "skipped": 0, "diverged": 0}
    assert [r["value"] for r in result["rows"]] == ["0", "0.2"]
    assert all(0 <= r["test_accuracy"] <= 1 for r in result["rows"])
    for name in ("robustness.csv", "robustness.md", "robustness.json"):
        assert (out / name).is_file()
    assert (out / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "hardware.read_noise=0.2" / "config.json").read_text())
    assert saved["hardware"]["read_noise"] == 0.2
    # run again: nothing to train
    assert main(args) == 0
    assert _last_json(capsys.readouterr().out)["runs"] == {
        "trained": 0,
        "resumed": 0,
        "skipped": 2,
        "diverged": 0,
    }


def test_a_diverging_value_is_a_result(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    args = [
        "robustness", "--data-dir", str(fake_data), "--set", "system.sizes=[784,16,10]", "--batch-size", "32",
        "--epochs", "1", "--threads", "1", "--vary", "optimizer.lr=0.05,1e30", "--out-dir", str(out),
        "--no-progress", "--json",
    ]  # fmt: skip
    assert main(args) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["runs"]["diverged"] == 1 and [r["diverged"] for r in result["rows"]] == [False, True]
    assert (out / "optimizer.lr=1e30" / "diverged.json").is_file()
    assert "| 1e30 | diverged |" in (out / "robustness.md").read_text()
    assert main(args) == 0  # not retried
    assert _last_json(capsys.readouterr().out)["runs"] == {
        "trained": 0,
        "resumed": 0,
        "skipped": 1,
        "diverged": 1,
    }


def test_bad_vary() -> None:
    with pytest.raises(ConfigError, match="KEY=V1"):
        parse_vary("hardware.read_noise")
    with pytest.raises(ConfigError, match="two distinct"):
        parse_vary("hardware.bits=4,4")
    assert parse_vary("hardware.range=[0,1];[0,2]") == ("hardware.range", ["[0,1]", "[0,2]"])
