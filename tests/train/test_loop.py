"""End-to-end tests of the training loop (eqprop.train.loop.fit and `eqprop train`) on a tiny fake dataset."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from eqprop.cli import main
from eqprop.data import Augment, Batches
from eqprop.errors import CheckpointError, ConfigError
from eqprop.rules import AgnosticEqProp, EqProp
from eqprop.train import (
    RunConfig,
    apply_overrides,
    build,
    config_from_dict,
    config_to_dict,
    fit,
    list_presets,
    load_data,
    load_preset,
    read_checkpoint,
    resume,
)
from eqprop.train.calibrate import calibrate
from eqprop.train.checkpoint import load_checkpoint, rng_state, save_checkpoint
from eqprop.train.monitor import Monitoring
from eqprop.train.optim import AdamConfig, SGDConfig
from helpers import assert_same, make_fake_cifar, make_fake_fashion_mnist

pytestmark = pytest.mark.usefixtures("quiet_torch")

TINY = ["--set", "system.sizes=[784,32,10]", "--set", "optimizer.lr=0.05", "--batch-size", "16"]
RECORD_KEYS = {
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "train_seconds",
    "examples_per_s",
    "lr",
}
TIMING_KEYS = {"train_seconds", "examples_per_s"}


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def _assert_same_run(a: Path, b: Path) -> None:
    """Two run directories end with bit-identical weights, optimizer, schedule and data order."""
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert ca["epoch"] == cb["epoch"]
    for key in ("system", "cost", "optimizer", "scheduler", "order_generator"):
        assert_same(ca[key], cb[key], key)
    strip = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in ca["history"]]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in cb["history"]]
    ma, mb = _metrics(a), _metrics(b)
    assert [r["epoch"] for r in mb] == list(range(1, len(ma) + 1))
    assert [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in ma] == [
        {k: v for k, v in r.items() if k not in TIMING_KEYS} for r in mb
    ]


def _clean_error(err: str, *fragments: str) -> None:
    """stderr ends with one `eqprop: error:` line (and an optional `hint:` line), without a traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("eqprop: error: ")]
    assert len(errors) == 1, err
    tail = lines[errors[0] + 1 :]
    assert len(tail) <= 1 and all(line.startswith("hint: ") for line in tail), err
    text = "\n".join(lines[errors[0] :])
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"


# -- a plain run -------------------------------------------------------------------------------------------------
def test_fit_writes_the_run_directory_and_learns(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    config = tiny_config("train.epochs=2")
    run = tmp_path / "run"
    summary = fit(config, run, progress=False)

    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.pt",
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "tensorboard",
    ]
    assert config_from_dict(json.loads((run / "config.json").read_text())) == config
    assert json.loads((run / "summary.json").read_text()) == summary

    records = _metrics(run)
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert set(r) == RECORD_KEYS
        assert 0.0 <= r["train_accuracy"] <= 1.0 and 0.0 <= r["test_accuracy"] <= 1.0
        assert math.isfinite(r["train_loss"]) and r["train_loss"] > 0
        assert r["examples_per_s"] > 0 and r["train_seconds"] > 0
    # the exponential schedule: lr × 0.99 after every epoch, for each layer's group
    groups = len(records[0]["lr"])
    assert groups >= 2
    assert records[0]["lr"] == pytest.approx([0.05 * 0.99] * groups)
    assert records[1]["lr"] == pytest.approx([0.05 * 0.99**2] * groups)
    # the fake classes are learnable: far above chance (0.1)
    assert records[-1]["test_accuracy"] > 0.5
    assert records[-1]["train_loss"] < records[0]["train_loss"]

    assert summary["epochs"] == 2
    assert summary["test_accuracy"] == records[-1]["test_accuracy"]
    assert summary["train_accuracy"] == records[-1]["train_accuracy"]
    assert summary["preset"] == "fmnist-quick" and summary["device"] == "cpu"
    assert summary["out"] == str(run)
    assert "validation_accuracy" not in summary

    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"] == config_to_dict(config)
    assert len(ckpt["history"]) == 2
    saved, _ = read_checkpoint(run)
    assert saved == config


def test_fit_with_a_progress_bar_runs_quietly(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = fit(tiny_config(), tmp_path / "run", progress=True)  # stderr is not a terminal: no bar
    assert summary["epochs"] == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [
        line for line in err.strip().splitlines() if line.startswith("epoch 1/1")
    ]


def test_train_command_writes_the_same_run(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(fake_data), *TINY, "--epochs", "2", "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    summary = _last_json(out)
    assert summary == json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.5
    assert len(_metrics(run)) == 2
    assert [line.split(":")[0] for line in err.strip().splitlines()] == ["epoch 1/2", "epoch 2/2"]


def test_data_dir_from_the_environment(
    fake_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EQPROP_DATA_DIR", str(fake_data))
    monkeypatch.chdir(tmp_path)  # no --out: runs/<preset>-seed<seed> in the working directory
    assert main(["train", *TINY, "--seed", "3", "--no-progress"]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert Path(summary["out"]) == Path("runs/fmnist-quick-seed3")
    assert (tmp_path / "runs" / "fmnist-quick-seed3" / "checkpoint.pt").is_file()
    assert read_checkpoint(tmp_path / "runs" / "fmnist-quick-seed3")[0].train.seed == 3


def test_validation_split_adds_validation_accuracy(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(fake_data), *TINY, "--set", "data.validation=32"]
    assert main([*argv, "--epochs", "2", "--out", str(run), "--no-progress"]) == 0
    summary = _last_json(capsys.readouterr().out)
    records = _metrics(run)
    assert len(records) == 2
    for r in records:
        assert set(r) == RECORD_KEYS | {"validation_loss", "validation_accuracy"}
        assert 0.0 <= r["validation_accuracy"] <= 1.0
    assert summary["validation_accuracy"] == records[-1]["validation_accuracy"]
    assert records[-1]["validation_accuracy"] > 0.5


def test_same_seed_same_run_other_seed_other_run(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    fit(tiny_config(), tmp_path / "a", progress=False)
    fit(tiny_config(), tmp_path / "b", progress=False)
    fit(tiny_config("train.seed=1"), tmp_path / "c", progress=False)
    _assert_same_run(tmp_path / "a", tmp_path / "b")
    a, c = (
        load_checkpoint(tmp_path / "a" / "checkpoint.pt"),
        load_checkpoint(tmp_path / "c" / "checkpoint.pt"),
    )
    assert not torch.equal(a["system"]["weights.0"], c["system"]["weights.0"])


def test_a_random_sign_run_is_reproducible_and_resumes_bit_exactly(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    """EqProp's random sign draws from torch's global generator: the run seeds it, and checkpoints carry it."""
    sets = ('rule.variant="positive"', "rule.random_sign=true")
    fit(tiny_config(*sets, "train.epochs=2"), tmp_path / "a", progress=False)
    fit(tiny_config(*sets, "train.epochs=2"), tmp_path / "b", progress=False)
    _assert_same_run(tmp_path / "a", tmp_path / "b")
    fit(tiny_config(*sets, "train.epochs=1"), tmp_path / "c", progress=False)
    resume(tmp_path / "c", epochs=2, progress=False)
    _assert_same_run(tmp_path / "a", tmp_path / "c")
    fit(tiny_config('rule.variant="positive"', "train.epochs=2"), tmp_path / "d", progress=False)
    a, d = (load_checkpoint(tmp_path / n / "checkpoint.pt")["system"] for n in "ad")
    assert not torch.equal(a["weights.0"], d["weights.0"])


def test_continual_eqprop_learns_and_resumes_bit_exactly(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    """C-EP steps the optimizer at every nudged step itself (the loop must not step again), with TensorBoard on."""
    sets = (
        'rule.kind="continual"',
        'rule.variant="positive"',
        "rule.beta=0.1",
        'solver.kind="gradient_flow"',
        "solver.step_size=1.0",
        "solver.iterations=20",
        'nudged_solver.kind="gradient_flow"',
        "nudged_solver.step_size=1.0",
        "nudged_solver.iterations=4",
        "optimizer.lr=0.01",
    )
    summary = fit(
        tiny_config(*sets, "train.epochs=2"),
        tmp_path / "a",
        progress=False,
        monitoring=Monitoring(probe_every=5),
    )
    assert summary["test_accuracy"] > 0.5
    assert any((tmp_path / "a" / "tensorboard").iterdir())
    fit(
        tiny_config(*sets, "train.epochs=1"),
        tmp_path / "b",
        progress=False,
        monitoring=Monitoring(probe_every=5),
    )
    resume(tmp_path / "b", epochs=2, progress=False, monitoring=Monitoring(probe_every=5))
    _assert_same_run(tmp_path / "a", tmp_path / "b")


def test_holomorphic_eqprop_trains_a_smooth_network(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    """Complex phases inside the loop: the smooth Hopfield net learns by hEP, logged (the probe included)."""
    sets = (
        'system.kind="smooth_hopfield"',
        'rule.kind="holomorphic"',
        "rule.beta=0.5",
        "rule.points=4",
        'solver.kind="gradient_flow"',
        "solver.step_size=0.5",
        "solver.iterations=30",
        'nudged_solver.kind="gradient_flow"',
        "nudged_solver.step_size=0.5",
        "nudged_solver.iterations=20",
        "optimizer.lr=0.1",
        "train.epochs=2",
    )
    summary = fit(tiny_config(*sets), tmp_path / "run", progress=False, monitoring=Monitoring(probe_every=8))
    assert summary["test_accuracy"] > 0.5


def test_thermal_eqprop_trains_through_the_loop(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    """Langevin chains (several per example) in the loop: the scores are the chains' average, the monitor logs."""
    sets = (
        'rule.kind="thermal"',
        "rule.samples=4",
        "rule.beta=0.2",
        'solver.kind="langevin"',
        "solver.temperature=0.001",
        "solver.step_size=0.5",
        "solver.iterations=30",
        "optimizer.lr=0.1",
        "train.epochs=2",
    )
    summary = fit(tiny_config(*sets), tmp_path / "run", progress=False, monitoring=Monitoring(probe_every=8))
    assert summary["test_accuracy"] > 0.5


# -- resume ---------------------------------------------------------------------------------------------------------
def test_resume_is_bit_exact(fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["train", "--data-dir", str(fake_data), *TINY, "--no-progress"]
    assert main([*common, "--epochs", "3", "--out", str(a)]) == 0
    assert main([*common, "--epochs", "1", "--out", str(b)]) == 0
    assert len(_metrics(b)) == 1
    capsys.readouterr()

    assert main(["train", "--resume", str(b), "--epochs", "3", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    summary = _last_json(out)
    assert summary["epochs"] == 3
    assert [line.split(":")[0] for line in err.strip().splitlines()] == ["epoch 2/3", "epoch 3/3"]
    assert len(_metrics(b)) == 3
    _assert_same_run(a, b)
    assert summary["test_accuracy"] == _metrics(a)[-1]["test_accuracy"]
    # the resumed run records the new epoch budget and nothing else changes
    assert read_checkpoint(b)[0] == read_checkpoint(a)[0]


def test_resume_of_a_finished_run_with_the_same_budget_changes_nothing(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    fit(tiny_config("train.epochs=2"), run, progress=False)
    before = load_checkpoint(run / "checkpoint.pt")
    summary = resume(run, epochs=2, progress=False)
    assert summary["epochs"] == 2
    assert_same(before, load_checkpoint(run / "checkpoint.pt"))
    assert len(_metrics(run)) == 2


def test_resume_keeps_the_saved_settings_except_the_epoch_budget(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = tiny_config()
    fit(config, run, progress=False)
    # resume() takes everything but where the run runs (here: the epoch budget) from the checkpoint
    summary = resume(run, epochs=2, progress=False)
    assert summary["epochs"] == 2
    saved, _ = read_checkpoint(run)
    assert (saved.train.epochs, saved.rule.beta, saved.train.seed) == (2, 0.2, 0)
    assert saved == dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=2))
    assert config_from_dict(json.loads((run / "config.json").read_text())) == saved
    # without an epoch budget, resume() keeps the stored one: a finished run trains no further
    assert resume(run, progress=False)["epochs"] == 2
    assert read_checkpoint(run)[0] == saved


def _kill_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_kill_9_then_resume_matches_an_uninterrupted_run(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    epochs = 25
    common = ["train", "--data-dir", str(fake_data), *TINY, "--epochs", str(epochs), "--no-progress"]
    killed = tmp_path / "killed"
    log = tmp_path / "killed.stderr"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eqprop", *common, "--out", str(killed)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=_kill_env(),
        )
        try:
            deadline = time.monotonic() + 60
            while not (killed / "checkpoint.pt").exists():
                assert proc.poll() is None, f"the run ended before its first checkpoint: {log.read_text()}"
                assert time.monotonic() < deadline, "no checkpoint after 60 s"
                time.sleep(0.002)
            assert proc.poll() is None, "the run finished before it could be killed; raise `epochs`"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    reached = load_checkpoint(killed / "checkpoint.pt")["epoch"]
    assert 1 <= reached < epochs
    assert len(_metrics(killed)) in (reached, reached + 1)  # at most one epoch logged but not checkpointed

    assert main(["train", "--resume", str(killed), "--epochs", str(epochs), "--no-progress"]) == 0
    assert _last_json(capsys.readouterr().out)["epochs"] == epochs
    straight = tmp_path / "straight"
    assert main([*common, "--out", str(straight)]) == 0
    assert len(_metrics(killed)) == epochs
    _assert_same_run(straight, killed)


# -- refusals ---------------------------------------------------------------------------------------------------------
def test_new_run_into_an_existing_run_is_refused(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(fake_data), *TINY, "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    before = load_checkpoint(run / "checkpoint.pt")
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    _clean_error(err, "already holds a run", f"--resume {run}")
    assert_same(before, load_checkpoint(run / "checkpoint.pt"))
    assert len(_metrics(run)) == 1


def test_fit_refuses_to_overwrite_a_run(tiny_config: Callable[..., RunConfig], tmp_path: Path) -> None:
    fit(tiny_config(), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="already holds a run") as info:
        fit(tiny_config(), tmp_path, progress=False)
    assert info.value.hint is not None and "--resume" in info.value.hint


@pytest.mark.parametrize("which", ["empty", "missing"])
def test_resume_without_a_checkpoint_is_refused(
    which: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    if which == "empty":
        run.mkdir()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    _clean_error(err, str(run))
    assert not (run / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "rule.beta=0.1"], "only --epochs, --device, --threads and --data-dir may be given"),
        (["--seed", "2"], "only --epochs, --device, --threads and --data-dir may be given"),
        (["--batch-size", "8"], "only --epochs, --device, --threads and --data-dir may be given"),
        (["--out", "elsewhere"], "do not also pass a different --out"),
        (["--preset", "fmnist-dhn1h"], "--preset cannot change them"),
        (["--rule", "CL"], "--rule cannot change them"),
        # every refused flag is named in the one error
        (
            ["--preset", "fmnist-quick", "--seed", "2", "--set", "train.seed=2"],
            "--preset, --set, --seed cannot",
        ),
    ],
)
def test_resume_refuses_other_settings(
    extra: list[str],
    message: str,
    tiny_config: Callable[..., RunConfig],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    fit(tiny_config(), run, progress=False)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", *extra, "--no-progress"]) == 2
    _clean_error(capsys.readouterr().err, message)
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1


def test_resume_refuses_an_epoch_budget_below_the_epochs_done(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    fit(tiny_config("train.epochs=2"), run, progress=False)
    files = {name: (run / name).read_bytes() for name in ("config.json", "metrics.jsonl", "checkpoint.pt")}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    _clean_error(err, "--epochs 1", "already trained 2 epochs", "give --epochs 2 or more")
    # nothing was written: the stored budget, the log and the checkpoint are as they were
    assert {name: (run / name).read_bytes() for name in files} == files
    with pytest.raises(ConfigError, match="already trained 2 epochs"):
        resume(run, epochs=1, progress=False)
    assert (run / "config.json").read_bytes() == files["config.json"]


def test_a_checkpoint_without_its_optimizer_state_is_refused_by_name(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    summary = fit(tiny_config(), run, progress=False)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    del ckpt["optimizer"]
    save_checkpoint(run / "checkpoint.pt", ckpt)
    files = {name: (run / name).read_bytes() for name in ("config.json", "metrics.jsonl", "checkpoint.pt")}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    _clean_error(err, "'optimizer'")
    with pytest.raises(CheckpointError, match="'optimizer'"):
        resume(run, epochs=2, progress=False)
    assert {name: (run / name).read_bytes() for name in files} == files  # the run is left as it was
    # evaluation needs no optimizer: it either works or says what is missing, without a traceback
    code = main(["eval", str(run)])
    out, err = capsys.readouterr()
    if code == 0:
        assert _last_json(out)["test_accuracy"] == summary["test_accuracy"]
    else:
        assert code == 2 and out == ""
        _clean_error(err, "'optimizer'")


# -- runs written by the previous version (config version 1) -------------------------------------------------------
V1_RUNS = Path(__file__).resolve().parent / "data" / "v1"
"""Run folders written before issue 10 (see fingerprint.py): config without "config_version", flat sections with
every kind's fields, AEqprop's beta as the spread and its `mode`. Resuming them is checked by test_fingerprints.py."""


@pytest.fixture(scope="module")
def v1_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake data the version-1 runs were trained and evaluated on."""
    return make_fake_fashion_mnist(tmp_path_factory.mktemp("v1-data"), n_train=64, n_test=16)


@pytest.mark.parametrize("name", ["dhn", "aeqprop", "conv"])
def test_eval_of_a_version_1_run(
    name: str, v1_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / name
    shutil.copytree(V1_RUNS / name, run)
    stored = load_checkpoint(run / "checkpoint.pt")
    assert "config_version" not in stored  # really a version-1 checkpoint
    summary = json.loads((run / "summary.json").read_text())
    assert main(["eval", str(run), "--data-dir", str(v1_data)]) == 0
    result = _last_json(capsys.readouterr().out)
    assert (result["epoch"], result["examples"], result["preset"]) == (1, 16, summary["preset"])
    # the free phase and the weights are the old run's: the same test figures as at the end of its epoch
    assert result["test_accuracy"] == summary["test_accuracy"]
    assert result["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    # evaluation reads the run and leaves it as it was
    assert (run / "checkpoint.pt").read_bytes() == (V1_RUNS / name / "checkpoint.pt").read_bytes()


def test_version_1_configs_are_read_as_todays() -> None:
    dhn, _ = read_checkpoint(V1_RUNS / "dhn")
    assert dhn.rule == EqProp(beta=0.2, variant="centered")  # its unused AEqprop settings are dropped
    # the run used Adam: today's Adam has no momentum (version 1 stored momentum 0.0 beside it)
    assert dhn.optimizer == AdamConfig(lr=0.001)
    assert not hasattr(dhn.optimizer, "momentum")
    assert not hasattr(dhn.system, "channels")  # the conv fields of a dense system are gone
    aeq, _ = read_checkpoint(V1_RUNS / "aeqprop")
    # mode "optimistic" nudged at (0, +0.5): today's positive variant with beta unchanged
    assert aeq.rule == AgnosticEqProp(
        beta=0.5,
        variant="positive",
        epsilon=[0.1, 0.05],
        epsilon_biases=[0.02, 0.01],
        phase2_start="free",
    )
    assert aeq.optimizer == SGDConfig(lr=0.05)
    conv, _ = read_checkpoint(V1_RUNS / "conv")
    # mode "centered" with beta 0.5 nudged at ±0.25: today's centered variant with beta 0.25
    assert (conv.rule.kind, conv.rule.beta, conv.rule.variant) == ("aeqprop", 0.25, "centered")
    assert conv.system.kind == "conv_hopfield" and not hasattr(conv.system, "sizes")
    assert conv.rule.betas == (-0.25, 0.25)


# -- the run's state --------------------------------------------------------------------------------------------------
def _shrunk(name: str, fake_data: Path, tmp_path: Path) -> RunConfig:
    """Preset ``name`` small enough to build and step in a fraction of a second, on fake data of its dataset;
    every per-layer list keeps its length (the depth is kept, the widths shrink)."""
    config = load_preset(name)
    system = config.system
    sets = ["train.batch_size=8", "solver.iterations=3"]
    if config.nudged_solver is not None:
        sets.append("nudged_solver.iterations=2")
    if system.kind in ("conv_hopfield", "conv_vector_field"):
        sets.append(f"system.channels={[2] * len(system.channels)}")
    elif (
        system.kind == "spring_network"
    ):  # a smaller network, as many loads; fewer images, every one moves it
        sets += ["system.nodes=150", "data.train_size=40", "data.validation=8", "data.test_size=10"]
        sets.append("rule.misclassified_only=false")
    elif system.kind == "flow_network":  # a smaller graph, as many input and output edges; fewer images
        sets += ["system.nodes=150", "system.edges=600", "data.train_size=40", "data.validation=8"]
        sets.append(
            "rule.misclassified_only=false"
        )  # every example moves the conductances (fake data: few errors)
        sets.append("data.test_size=10")
    elif system.kind == "hamiltonian_rnn":  # fewer oscillators, all read
        sets += ["system.units=8", "system.outputs=8", "system.springs=8", "data.validation=16"]
    elif system.kind == "central_force":  # a smaller network; fewer strains
        sets += ["system.nodes=16", "data.train_size=40", "data.validation=8", "data.test_size=10"]
    elif system.kind in ("spring_chain", "coupled_oscillators"):  # the generated task: fewer drives
        sets += ["data.train_size=40", "data.validation=8", "data.test_size=10"]
    elif system.kind == "quantum_ising":  # already a few qubits; the generated phase task: fewer chains
        sets += ["data.train_size=24", "data.validation=8", "data.test_size=10"]
    else:  # a resistive net's output curvature grows with the conductances feeding it: beta up to 2 needs width
        width = 256 if system.kind in ("deep_resistive", "analog_resistive") else 16
        sets.append(f"system.sizes={[784, *[width] * (system.layers - 1), system.output_width]}")
    if (
        config.data.train_size is not None and config.data.dataset == "fashion-mnist"
    ):  # the fake set holds 256
        sets += ["data.train_size=40", "data.test_size=10"]
    dataset = config.data.dataset
    data = make_fake_cifar(tmp_path / "data", dataset, n=4) if dataset.startswith("cifar") else fake_data
    sets.append(f"data.data_dir={json.dumps(str(data))}")
    return apply_overrides(config, sets)


@pytest.mark.parametrize("name", list_presets())
def test_a_runs_state_round_trips_through_a_checkpoint(name: str, fake_data: Path, tmp_path: Path) -> None:
    """build -> a few training steps -> state() -> checkpoint -> build + restore() gives the same run, bit for bit."""
    config = _shrunk(name, fake_data, tmp_path)
    run = build(config)
    data = load_data(config, run.device, run.dtype)
    calibrate(run, data.train, 64)  # costs that set themselves from the untrained net (class-mean targets)
    augment = Augment(
        crop_padding=config.data.crop_padding,
        flip=config.data.flip,
        fill=config.data.crop_fill,
        image_shape=data.image_shape,
    )
    for step, (x, y) in enumerate(
        Batches(data.train, config.train.batch_size, shuffle=True, generator=run.order)
    ):
        if step == 2:
            break
        if augment.enabled:
            x = augment(x, run.augment)
        run.rule.gradients(
            run.system, run.cost, run.solver, x, y, nudged_solver=run.nudged_solver, out="grad"
        )
        run.optimizer.step()
        run.system.constrain_parameters()
    if not augment.enabled:
        torch.rand(3, generator=run.augment)  # so that the restored augment generator is not a fresh one's
    run.scheduler.step()
    run.epoch = 1
    run.history.append(
        {"epoch": 1, "test_accuracy": 0.5, "lr": [g["lr"] for g in run.optimizer.param_groups]}
    )
    state = run.state()
    assert state["config"] == config_to_dict(config) and state["config_version"] == 2
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")

    other = build(config)
    # a fresh build starts elsewhere: the restore below is what makes them equal
    assert any(
        not torch.equal(a, b) for a, b in zip(run.system.parameters(), other.system.parameters(), strict=True)
    )
    assert not torch.equal(run.order.get_state(), other.order.get_state())
    assert not torch.equal(run.augment.get_state(), other.augment.get_state())
    other.restore(ckpt)
    assert_same(rng_state(), ckpt["rng"], "global RNGs after restore")  # the RNGs are set back too

    assert_same(other.system.state_dict(), run.system.state_dict(), "system")
    assert_same(other.cost.state_dict(), run.cost.state_dict(), "cost")
    assert_same(other.optimizer.state_dict(), run.optimizer.state_dict(), "optimizer")
    assert_same(other.scheduler.state_dict(), run.scheduler.state_dict(), "scheduler")
    assert torch.equal(other.order.get_state(), run.order.get_state())
    assert torch.equal(other.augment.get_state(), run.augment.get_state())
    assert (other.epoch, other.history) == (1, run.history)
    assert [g["lr"] for g in other.optimizer.param_groups] == [g["lr"] for g in run.optimizer.param_groups]
    again = other.state()
    assert again.keys() == state.keys()
    assert_same(
        {k: v for k, v in again.items() if k != "rng"}, {k: v for k, v in state.items() if k != "rng"}
    )


def test_diverging_run_exits_2_with_one_line(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(fake_data), *TINY, "--set", "optimizer.lr=1e6"]
    assert main([*argv, "--epochs", "2", "--out", str(run), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    _clean_error(err, "non-finite state during relaxation", "the run is diverging", "lower the learning rate")
    # nothing was checkpointed, so the same --out can be reused
    assert not (run / "checkpoint.pt").exists()
    assert _metrics(run) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error for a machine without CUDA")
def test_resume_honours_device(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    fit(tiny_config(), run, progress=False)
    capsys.readouterr()
    code = main(["train", "--resume", str(run), "--epochs", "2", "--device", "cuda", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2
    _clean_error(err, "CUDA is not available")


def test_resume_honours_data_dir(fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    moved = tmp_path / "data"
    shutil.copytree(fake_data, moved)
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(moved), *TINY, "--out", str(run), "--no-progress"]) == 0
    new = tmp_path / "data-moved"
    moved.rename(new)
    capsys.readouterr()
    code = main(["train", "--resume", str(run), "--epochs", "2", "--data-dir", str(new), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert len(_metrics(run)) == 2
