"""``eqprop compare``: several rules × seeds trained with fit(), tabulated as CSV and Markdown, plotted as PNG."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from eqprop.cli import main
from eqprop.errors import ConfigError
from eqprop.train.compare import parse_rule_names, summarize_runs

pytestmark = pytest.mark.usefixtures("quiet_torch")

RULES = ["CL", "CEP", "PCpL", "TBP", "RBP"]
TINY = ["--set", "system.sizes=[784,16,10]", "--batch-size", "32", "--threads", "1", "--no-progress"]


def _compare(fake_data: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "--data-dir", str(fake_data), "--out-dir", str(out), *TINY, *extra]


def _last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def comparison(fake_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    """Five rules × two seeds × one epoch on the fake data (shared, read-only): (folder, JSON result, stdout)."""
    import contextlib
    import io

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("compare") / "cmp"
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(_compare(fake_data, out, "--rules", ",".join(RULES), "--epochs", "1", "--seeds", "2"))
    finally:
        torch.set_num_threads(threads)
    assert code == 0, stderr.getvalue()
    return out, _last_json(stdout.getvalue()), stdout.getvalue()


def test_compare_trains_every_rule_and_seed_into_its_own_folder(comparison):
    out, result, _ = comparison
    assert result["rules"] == RULES
    assert result["runs"] == {"trained": 10, "resumed": 0, "skipped": 0}
    for rule in RULES:
        for seed in (0, 1):
            run = out / rule / f"seed{seed}"
            config = json.loads((run / "config.json").read_text())
            assert config["train"]["seed"] == seed
            assert (run / "summary.json").exists()
    kinds = {r: json.loads((out / r / "seed0" / "config.json").read_text())["rule"] for r in RULES}
    assert kinds["CL"]["kind"] == "contrastive"
    assert (kinds["PCpL"]["kind"], kinds["PCpL"]["variant"]) == ("coupled", "positive")
    assert (kinds["CEP"]["kind"], kinds["CEP"]["variant"]) == ("eqprop", "centered")
    assert (kinds["TBP"]["kind"], kinds["TBP"]["steps"]) == ("backprop", 15)
    assert kinds["RBP"]["kind"] == "implicit"


def test_the_table_is_the_mean_and_std_of_the_runs_summaries(comparison):
    out, result, _ = comparison
    with (out / "compare.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["rule"] for r in rows] == RULES
    for row, jrow in zip(rows, result["rows"], strict=True):
        errors = [
            100
            * (1 - json.loads((out / row["rule"] / f"seed{s}" / "summary.json").read_text())["test_accuracy"])
            for s in (0, 1)
        ]
        assert float(row["test_error_pct_mean"]) == pytest.approx(statistics.mean(errors))
        assert float(row["test_error_pct_std"]) == pytest.approx(statistics.stdev(errors))
        assert jrow["test_error_pct_mean"] == pytest.approx(statistics.mean(errors))
        assert float(row["seconds_per_epoch"]) > 0
        assert row["seeds"] == "2" and row["epochs"] == "1"
    # the fake data is learnable: every rule beats chance (90 % error) after one epoch
    assert all(float(r["test_error_pct_mean"]) < 60 for r in rows)


def test_markdown_png_and_stdout(comparison):
    out, result, stdout = comparison
    markdown = (out / "compare.md").read_text(encoding="utf-8")
    body = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    assert body[0].startswith("| rule | algorithm | test error (%)")
    assert [line.split("|")[1].strip() for line in body[1:]] == RULES
    assert " ± " in body[1]
    assert markdown in stdout  # the table is printed before the JSON line
    png = Path(result["plot"])
    assert png == out / "compare.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "compare.json").read_text())["rows"] == result["rows"]


def test_a_second_run_skips_finished_runs_and_resumes_for_more_epochs(comparison, fake_data, capsys):
    out, _, _ = comparison
    # A copy of one rule's runs, so that the shared comparison stays as it is.
    work = out.parent / "resume"
    for seed in (0, 1):
        shutil.copytree(out / "CL" / f"seed{seed}", work / "CL" / f"seed{seed}")
    assert main(_compare(fake_data, work, "--rules", "CL", "--epochs", "1", "--seeds", "2", "--json")) == 0
    assert _last_json(capsys.readouterr().out)["runs"] == {"trained": 0, "resumed": 0, "skipped": 2}
    assert main(_compare(fake_data, work, "--rules", "cl", "--epochs", "2", "--seeds", "1", "--json")) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["runs"] == {"trained": 0, "resumed": 1, "skipped": 0}
    assert len(result["rows"][0]["curve"]["test_error_pct_mean"]) == 2
    assert result["rows"][0]["test_error_pct_std"] is None  # one seed: no spread


def test_a_folder_of_other_settings_is_refused(comparison, fake_data, capsys):
    out, _, _ = comparison
    argv = _compare(fake_data, out, "--rules", "CEP", "--epochs", "1", "--set", "rule.beta=0.3")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings" in err and "rule.beta = 0.2 there, 0.3 here" in err


def test_bad_rule_names_fail_before_training(fake_data, tmp_path, capsys):
    assert main(_compare(fake_data, tmp_path, "--rules", "CL,XEP", "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert "unknown rule name 'XEP'" in err
    assert "CL, PEP, NEP, CEP, PCpL, NCpL, CCpL, TBP, RBP" in err
    assert not any(tmp_path.iterdir())  # nothing was trained
    assert main(_compare(fake_data, tmp_path, "--rules", "CL", "--set", "rule.kind=eqprop")) == 2
    assert "do not also --set rule.kind" in capsys.readouterr().err


def test_train_rule_flag(fake_data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(fake_data), *TINY, "--epochs", "1", "--out", str(run)]
    assert main([*argv, "--rule", "nCpL", "--set", "rule.beta=0.4"]) == 0
    rule = json.loads((run / "config.json").read_text())["rule"]
    assert (rule["kind"], rule["variant"], rule["beta"]) == ("coupled", "negative", 0.4)
    assert _last_json(capsys.readouterr().out)["epochs"] == 1
    assert main([*argv, "--rule", "CEP", "--set", "rule.variant=positive"]) == 2
    assert "do not also --set rule.variant" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--rule", "CEP"]) == 2


def test_parse_rule_names():
    assert parse_rule_names("cl, CEP,,tbp,CL") == ["CL", "CEP", "TBP"]
    assert parse_rule_names(["RBP", "pcpl"]) == ["RBP", "PCpL"]
    with pytest.raises(ConfigError, match="no rule names"):
        parse_rule_names(" , ")


def test_summarize_runs_from_known_histories():
    def history(accuracies, seconds):
        return [
            {"epoch": e, "test_accuracy": a, "train_accuracy": a + 0.05, "train_seconds": s}
            for e, (a, s) in enumerate(zip(accuracies, seconds, strict=True), start=1)
        ]

    row = summarize_runs(
        "ncpl", [history([0.5, 0.9, 0.95], [1, 2, 3]), history([0.7, 0.8, 0.0], [3, 4, 5])], 2
    )
    assert (row["rule"], row["kind"], row["variant"], row["seeds"], row["epochs"]) == (
        "NCpL",
        "coupled",
        "negative",
        2,
        2,
    )
    assert row["test_error_pct_mean"] == pytest.approx(15.0)  # errors 10 and 20 after epoch 2
    assert row["test_error_pct_std"] == pytest.approx(50**0.5)
    assert row["train_error_pct_mean"] == pytest.approx(10.0)
    assert row["seconds_per_epoch"] == pytest.approx(2.5)  # epochs 1-2 only: (1 + 2 + 3 + 4) / 4
    assert row["curve"]["test_error_pct_mean"] == pytest.approx([40.0, 15.0])
    with pytest.raises(ConfigError, match="2 of 3 epochs"):
        summarize_runs("CL", [history([0.5, 0.6], [1, 1])], 3)


def test_gradcheck_rule_flag(fake_data, capsys):
    argv = [
        "gradcheck",
        "--preset",
        "fmnist-quick",
        "--data-dir",
        str(fake_data),
        "--set",
        "system.sizes=[784,8,10]",
    ]
    argv += ["--batch-size", "4", "--iterations", "60", "--betas", "0.1", "0.01", "--json"]
    assert main([*argv, "--rule", "NCpL"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["rule"] == "coupled" and result["expected_slopes"] == {"negative": None}
    assert [(r["variant"], r["beta"]) for r in result["eqprop"]] == [("negative", 0.1), ("negative", 0.01)]
    assert main([*argv, "--rule", "CEP"]) == 0
    result = _last_json(capsys.readouterr().out)
    assert result["expected_slopes"] == {"centered": 2} and result["eqprop"][1]["cosine"] > 0.999
    assert main([*argv, "--rule", "CL"]) == 2
    assert "has none" in capsys.readouterr().err


def test_compare_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["compare", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in ("--rules", "--seeds", "--out-dir", "compare.csv", "PCpL", "continual"):
        assert text in out


def test_compare_takes_the_rules_beyond_the_study(fake_data, tmp_path, capsys):
    """hEP beside CEP on the smooth net (complex phases inside the compare loop), by their names."""
    argv = _compare(
        fake_data, tmp_path / "hep", "--preset", "fmnist-hep-mlp", "--rules", "CEP,hEP", "--epochs", "1"
    )
    argv += [
        "--set",
        "solver.iterations=20",
        "--set",
        "nudged_solver.iterations=10",
        "--set",
        "optimizer.lr=0.01",
    ]
    assert main(argv) == 0
    rows = {r["rule"]: r for r in _last_json(capsys.readouterr().out)["rows"]}
    assert (rows["hEP"]["kind"], rows["CEP"]["kind"]) == ("holomorphic", "eqprop")
    assert all(r["test_error_pct_mean"] < 90 for r in rows.values())  # both learn the fake classes
