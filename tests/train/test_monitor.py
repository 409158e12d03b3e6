"""TensorBoard logging: the scalars a run writes, read back with tensorboard's own reader."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from eqprop.errors import ConfigError
from eqprop.train import RunConfig, fit, resume
from eqprop.train.monitor import FOLDER, Monitoring

pytestmark = pytest.mark.usefixtures("quiet_torch")


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's event files as tag -> [(step, value)], as TensorBoard shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / FOLDER), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_run_logs_every_scalar_the_issue_lists(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    config = tiny_config("train.epochs=2", "train.log_every=3")
    run = tmp_path / "run"
    fit(config, run, progress=False, monitoring=Monitoring(diagnostics_every=4, probe_every=8))
    steps = 2 * 256 // 16  # 2 epochs of 256 fake examples in batches of 16
    logged = _scalars(run)

    # per step: loss, accuracy, sweeps of each phase, the rule's residuals, the learning rates
    for tag in ("train/loss", "train/accuracy", "relaxation/0/sweeps", "relaxation/2/sweeps", "lr/weights.0"):
        assert [s for s, _ in logged[tag]] == list(range(1, steps + 1)), tag
    assert all(v == 15 for _, v in logged["relaxation/1/sweeps"])  # fmnist-quick: 15 sweeps per phase
    assert all(0.0 <= v <= 1.0 for _, v in logged["train/accuracy"])
    assert {"rule/residual/0", "rule/residual/1", "rule/residual/2"} <= set(logged)
    # the per-step losses are the ones the epoch's training loss averages
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first_epoch = [v for s, v in logged["train/loss"] if s <= steps // 2]
    assert sum(first_epoch) / len(first_epoch) == pytest.approx(history[0]["train_loss"], rel=1e-5)
    # the learning rate after the epoch's schedule step
    lrs = dict(logged["lr/weights.0"])
    assert lrs[1] == pytest.approx(0.05) and lrs[steps] == pytest.approx(0.05 * 0.99)

    # every 4 steps: energies of the three phases, saturation per bounded layer, norms per tensor
    diagnostic = list(range(4, steps + 1, 4))
    for tag in ("relaxation/0/energy", "relaxation/1/energy", "relaxation/2/energy", "saturation/s1"):
        assert [s for s, _ in logged[tag]] == diagnostic, tag
    for name in ("weights.0", "biases.0", "weights.1", "biases.1"):
        for kind in ("norm", "grad_norm", "update_norm"):
            assert [s for s, _ in logged[f"{kind}/{name}"]] == diagnostic, f"{kind}/{name}"
    assert "saturation/s2" not in logged  # the output layer is linear: nothing to saturate
    assert all(0.0 <= v <= 1.0 for _, v in logged["saturation/s1"])
    # the update norm is the optimizer's step: lr times the gradient norm for plain SGD
    for (s, update), (_, grad) in zip(
        logged["update_norm/weights.1"], logged["grad_norm/weights.1"], strict=True
    ):
        assert update == pytest.approx(lrs[s] * grad, rel=1e-4)
    assert all(torch.isfinite(torch.tensor(v)) for _, v in logged["relaxation/1/energy"])

    # every 8 steps: centered EqProp at beta 0.2 agrees with implicit differentiation on the probe batch
    probe = logged["probe/cosine_to_implicit"]
    assert [s for s, _ in probe] == list(range(8, steps + 1, 8))
    assert all(0.9 < v <= 1.0 + 1e-6 for _, v in probe)


def test_a_vector_field_run_logs_its_angles_and_no_energy(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    """A system without an energy: no energies, no implicit-differentiation probe; its own diagnostics (the angle
    between forward and backward weights) under system/."""
    sets = (
        'system.kind="vector_field"',
        'rule.kind="vector_field"',
        'rule.variant="positive"',
        "train.epochs=1",
    )
    run = tmp_path / "run"
    summary = fit(
        tiny_config(*sets), run, progress=False, monitoring=Monitoring(diagnostics_every=4, probe_every=4)
    )
    logged = _scalars(run)
    assert [s for s, _ in logged["system/angle/1"]] == list(range(4, 17, 4))
    assert all(0.0 < v < 180.0 for _, v in logged["system/angle/1"])
    assert not any("energy" in tag or "probe" in tag for tag in logged)
    assert all(torch.isfinite(torch.tensor(v)) for _, v in logged["train/loss"])
    assert summary["epochs"] == 1


def test_logging_changes_nothing_the_run_learns(
    tiny_config: Callable[..., RunConfig], tmp_path: Path
) -> None:
    config = tiny_config("train.epochs=1")
    fit(config, tmp_path / "on", progress=False, monitoring=Monitoring(diagnostics_every=1, probe_every=2))
    fit(config, tmp_path / "off", progress=False, monitoring=Monitoring(tensorboard=False))
    assert not (tmp_path / "off" / FOLDER).exists()
    a = torch.load(tmp_path / "on" / "checkpoint.pt", weights_only=True)["system"]
    b = torch.load(tmp_path / "off" / "checkpoint.pt", weights_only=True)["system"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_logs_each_step_once(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps a crashed run logged after its last checkpoint are replaced by the resumed run's (TensorBoard's
    purge at the resumed step): every step appears once, with the uninterrupted run's value."""
    config = tiny_config("train.epochs=2", "train.log_every=1")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    fit(config, whole, progress=False, monitoring=Monitoring(probe_every=0))

    real_step = torch.optim.SGD.step
    calls = {"n": 0}

    def crash_at_step_23(self: torch.optim.Optimizer, closure: object = None) -> None:
        calls["n"] += 1
        if calls["n"] == 23:
            raise RuntimeError("simulated crash")
        real_step(self)

    monkeypatch.setattr(torch.optim.SGD, "step", crash_at_step_23)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(config, cut, progress=False, checkpoint_every=5, monitoring=Monitoring(probe_every=0))
    monkeypatch.undo()
    assert max(s for s, _ in _scalars(cut)["train/loss"]) == 22  # logged past the checkpoint of step 20
    resume(cut, progress=False, monitoring=Monitoring(probe_every=0))
    a, b = _scalars(whole)["train/loss"], _scalars(cut)["train/loss"]
    assert [s for s, _ in b] == [s for s, _ in a] == list(range(1, 33))
    assert [v for _, v in b] == [v for _, v in a]


def test_monitoring_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="diagnostics_every"):
        Monitoring(diagnostics_every=0)
    with pytest.raises(ConfigError, match="probe_every"):
        Monitoring(probe_every=-1)


def test_the_cli_writes_event_files_unless_told_not_to(fake_data: Path, tmp_path: Path) -> None:
    from eqprop.cli import main

    base = ["train", "--data-dir", str(fake_data), "--set", "system.sizes=[784,16,10]", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a"), "--probe-every", "0"]) == 0
    assert any((tmp_path / "a" / FOLDER).glob("events.out.tfevents.*"))
    assert main([*base, "--out", str(tmp_path / "b"), "--no-tensorboard"]) == 0
    assert not (tmp_path / "b" / FOLDER).exists()
    shutil.rmtree(tmp_path / "a")
