"""docs/scripts/probe.py (the probes in docs/reproductions.md) trains a preset on a subset and reports it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.mark.usefixtures("quiet_torch")
def test_a_probe_trains_on_the_subset_and_reports_its_accuracy(
    doc_script: Callable[[str], ModuleType], fake_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = doc_script("probe")
    argv = ["fmnist-quick", "--n", "64", "--m", "32", "--data-dir", str(fake_data)]
    assert probe.main([*argv, "--set", "system.sizes=[784,32,10]", "--set", "train.batch_size=16"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["n"] == 64 and row["m"] == 32 and row["epochs"] == 1
    assert 0.0 <= row["test"] <= 1.0 and row["examples_per_s"] > 0
    # the same probe by TBP is a different run (the rule name is applied)
    assert probe.main([*argv, "--set", "system.sizes=[784,32,10]", "--rule", "TBP"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rule"] == "TBP"


def test_a_probe_refuses_a_subset_larger_than_the_data(
    doc_script: Callable[[str], ModuleType], fake_data: Path
) -> None:
    probe = doc_script("probe")
    with pytest.raises(SystemExit) as info:
        probe.main(["fmnist-quick", "--n", "100000", "--data-dir", str(fake_data)])
    assert info.value.code == 2
