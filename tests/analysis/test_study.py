"""The architecture study (eqprop.analysis.study, `eqprop arch-study`): the analysis on fabricated results,
the `ci` preset end to end on a tiny synthetic dataset (resumable, torn lines, mismatched settings), and one
slow run on the real Fashion-MNIST."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest

from eqprop.analysis import thermo
from eqprop.analysis.study import MEASURES, PRESETS, StudyConfig, analyze_results, family, run_study
from eqprop.analysis.thermo.train import EqPropSettings
from eqprop.cli import main
from eqprop.data import find_dataset_dir
from eqprop.errors import ConfigError, DataError
from helpers import make_fake_fashion_mnist


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 training and 200 test 28×28 images; class c lights the c-th 7×7 block (learnable in one epoch)."""
    return make_fake_fashion_mnist(tmp_path_factory.mktemp("tiny-idx"), n_train=400, n_test=200)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_analysis_of_fabricated_results():
    """Results that fall with depth: depth's ρ is −1, H's (which grows with depth here) is negative, the
    seed spread is the sd over seeds, and a missing run leaves a NaN, not an error."""
    config = dataclasses.replace(PRESETS["fmnist-60k"], seeds=2)
    members = family(config)
    records = []
    for arch, _ in members:
        for seed in (0, 1):
            acc = 0.9 - 0.01 * arch.depth + 0.001 * seed
            for method in ("bp", "eqprop"):
                if method == "eqprop" and seed == 1 and arch.depth == 6:
                    continue  # a run that has not happened yet
                records.append(
                    {
                        "arch": str(arch),
                        "method": method,
                        "seed": seed,
                        "test_accuracy": acc,
                        "train_accuracy": acc + 0.02,
                        "train_loss": 1 - acc,
                        "gap": 0.02,
                        "grad_norm_init": 1.0 / arch.depth,
                    }
                )
    summary = analyze_results(config, members, records)
    assert summary["study"] == "fmnist-60k" and len(summary["family"]) == len(members)
    bp = summary["methods"]["bp"]
    assert bp["runs"] == 2 * len(members) and summary["methods"]["eqprop"]["runs"] < bp["runs"]
    rows = {(c["measure"], c["target"]): c for c in bp["correlations"]}
    assert {m for m, _ in rows} == set(MEASURES) and {t for _, t in rows} == {
        "test_accuracy",
        "train_loss",
        "gap",
    }
    depth = rows[("depth", "test_accuracy")]
    assert depth["rho"] == pytest.approx(-1.0) and depth["tau"] == pytest.approx(-1.0)
    assert depth["rho_partial"] is None  # depth partialled on itself: undefined, written as null
    assert rows[("depth", "train_loss")]["rho"] == pytest.approx(1.0)
    assert rows[("gaussian_entropy", "test_accuracy")]["rho"] < -0.5
    assert rows[("grad_norm_init", "test_accuracy")]["rho"] == pytest.approx(1.0)
    assert bp["mean_seed_sd_test_accuracy"] == pytest.approx(math.sqrt(0.001**2 / 2))
    assert bp["best"]["arch"] == "784-75-10"
    picks = {s["rho_max"]: s["arch"] for s in bp["selection"]}
    assert picks[None] is not None and thermo.Arch.parse(picks[None]).depth == 6
    json.dumps(summary, allow_nan=False)  # strictly valid JSON


def test_ci_study_end_to_end_and_resume(tiny_data: Path, tmp_path: Path):
    out = tmp_path / "study"
    config = PRESETS["ci"]
    members = family(config)
    assert 2 <= len(members) <= 3
    logged: list[str] = []
    summary = run_study(config, out, data_dir=str(tiny_data), progress=False, log=logged.append)
    runs = len(members) * len(config.methods) * config.seeds
    assert summary["new_runs"] == runs == len(logged)
    records = _lines(out / "results.jsonl")
    assert len(records) == runs and {r["method"] for r in records} == {"bp", "eqprop"}
    for r in records:
        assert not r["diverged"] and 0 <= r["test_accuracy"] <= 1
        assert r["gap"] == pytest.approx(r["train_accuracy"] - r["test_accuracy"])
    assert all(r["grad_norm_init"] > 0 for r in records if r["method"] == "bp")
    written = ["study.json", "runs.csv", "measures.csv", "correlations.csv"]
    if importlib.util.find_spec("matplotlib") is not None:  # optional: without it no PNG is written
        written += ["study.png", "correlations.png"]
    assert summary["files"] == [str(out / name) for name in written]
    for name in written:
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "study.json").read_text())
    assert saved["methods"]["bp"]["runs"] == len(members)

    # rerun: nothing to train, same results
    again = run_study(config, out, data_dir=str(tiny_data), progress=False, log=logged.append)
    assert again["new_runs"] == 0 and _lines(out / "results.jsonl") == records

    # a run killed while writing its line: the torn line is dropped and the run trained again
    text = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(text[:-1]) + text[-1][:25])
    again = run_study(config, out, data_dir=str(tiny_data), progress=False, log=logged.append)
    assert again["new_runs"] == 1
    assert _lines(out / "results.jsonl")[:-1] == records[:-1]
    assert _lines(out / "results.jsonl")[-1]["arch"] == records[-1]["arch"]

    # other settings in the same folder are refused; more seeds extend the study
    with pytest.raises(ConfigError, match="other settings"):
        run_study(dataclasses.replace(config, budget=9000), out, data_dir=str(tiny_data), progress=False)
    more = run_study(
        dataclasses.replace(config, seeds=2, methods=("bp",)),
        out,
        data_dir=str(tiny_data),
        progress=False,
        log=logged.append,
    )
    assert more["new_runs"] == len(members) and more["methods"]["bp"]["runs"] == 2 * len(members)


def test_arch_study_command(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "cli"
    argv = [
        "arch-study",
        "--preset",
        "ci",
        "--methods",
        "bp",
        "--data-dir",
        str(tiny_data),
        "--out",
        str(out),
    ]
    assert main([*argv, "--no-progress"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["preset"] == "ci" and result["runs"] == {"bp": len(family(PRESETS["ci"]))}
    assert "gaussian_entropy" in result["test_accuracy_correlations"]["bp"]
    assert "rho|L" in captured.err
    assert main(["arch-study", "--list"]) == 0
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["presets"]) == set(PRESETS)


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--preset", "fmnist-60"], "did you mean 'fmnist-60k'"), (["--device", "nonsense:x"], "device")],
)
def test_arch_study_errors(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv, message
):
    assert (
        main(
            ["arch-study", *argv, "--data-dir", str(tiny_data), "--out", str(tmp_path / "x"), "--no-progress"]
        )
        == 2
    )
    assert message in capsys.readouterr().err


def test_missing_data_and_bad_settings(tmp_path: Path):
    with pytest.raises(DataError):
        run_study(PRESETS["ci"], tmp_path / "s", data_dir=str(tmp_path / "nowhere"), progress=False)
    with pytest.raises(ConfigError, match="methods"):
        StudyConfig(name="x", description="", methods=("sgd",))
    with pytest.raises(ConfigError, match="no architecture"):
        family(dataclasses.replace(PRESETS["ci"], budget=100))


@pytest.mark.slow
def test_study_on_real_fashion_mnist(tmp_path: Path):
    """A few hundred real Fashion-MNIST examples through both trainers: they learn (above chance)."""
    try:
        find_dataset_dir("fashion-mnist")
    except DataError:
        pytest.skip("Fashion-MNIST is not installed: sudo apt-get install dataset-fashion-mnist")
    config = dataclasses.replace(PRESETS["ci"], test_examples=1000, eval_train_examples=1000)
    config = dataclasses.replace(
        config,
        bp=dataclasses.replace(config.bp, train_examples=2000),
        eqprop=EqPropSettings(epochs=2, train_examples=2000),  # the full presets' relaxation budget
    )
    summary = run_study(config, tmp_path / "real", progress=False, log=print)
    for method in ("bp", "eqprop"):
        accs = [a for a in summary["methods"][method]["test_accuracy"].values() if a is not None]
        assert len(accs) == 3 and max(accs) > 0.6 and min(accs) > 0.15, (method, accs)
