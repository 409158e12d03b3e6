"""A run survives what happens to real runs: crashes and ``kill -9`` mid-epoch (step-level checkpoints, resumed
bit-identical), SIGTERM and Ctrl-C (a checkpoint and the command that resumes), two runs into one folder (a lock),
bad ``--out`` folders, altered checkpoints (a checksum), other threads or data on resume, and a full disk."""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eqprop.cli import main
from eqprop.errors import CheckpointError, ConfigError, Interrupted
from eqprop.rules.base import Rule
from eqprop.train import RunConfig, apply_overrides, fit, load_preset, read_checkpoint, resume
from eqprop.train.checkpoint import load_checkpoint, save_checkpoint
from eqprop.train.stops import Cadence
from helpers import assert_same, make_fake_fashion_mnist

pytestmark = pytest.mark.usefixtures("quiet_torch")

TIMING_KEYS = {"train_seconds", "examples_per_s"}
SAME_KEYS = (
    "epoch",
    "system",
    "cost",
    "checksum",
    "optimizer",
    "scheduler",
    "order_generator",
    "augment_generator",
)
"""What two runs that are the same run share, bit for bit, in their final checkpoints (besides the history)."""

SMALL = ["system.sizes=[784,16,10]", "train.epochs=2"]
CLI_RUN = [
    *("--set", "system.sizes=[784,16,10]", "--set", "optimizer.lr=0.05"),
    *("--batch-size", "16", "--epochs", "2", "--threads", "1", "--no-progress"),
]
"""The run of the subprocess tests: 2 epochs of 128 steps on :func:`big_data`, about a second with a checkpoint
after every step; a signal sent after the first step checkpoint reaches it long before its end."""
SLOW_RUN = [
    *("--set", "system.sizes=[784,64,10]", "--set", "solver.iterations=4000"),
    *("--batch-size", "512", "--epochs", "5", "--threads", "1", "--no-progress"),
]
"""A run of slow steps (4 an epoch, about half a second each): a test reacting to the first of two signals still
finds the process within the step that the first one interrupted."""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
WAIT_S = 120.0
"""Every wait for a subprocess gives up after this long (a slow machine is slow, not this slow)."""


# -- helpers ------------------------------------------------------------------------------------------------------
def _untimed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(straight: Path, other: Path) -> None:
    """``other`` ended as the uninterrupted run ``straight``: the same weights, optimizer, schedule, generators,
    history and metrics (timing fields aside), and no epoch in progress."""
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(other / "checkpoint.pt")
    assert "position" not in a and "position" not in b
    for key in SAME_KEYS:
        assert_same(a[key], b[key], key)
    assert _untimed(a["history"]) == _untimed(b["history"])
    assert _untimed(_metrics(straight)) == _untimed(_metrics(other))
    assert [r["epoch"] for r in _metrics(other)] == list(range(1, a["epoch"] + 1))


def _leftovers(out: Path) -> list[str]:
    """Temporary files of interrupted writes in ``out``."""
    return sorted(p.name for p in out.glob(".*.tmp"))


class SimulatedCrashError(RuntimeError):
    """What the patched rule raises: the process 'dies' in the middle of a step."""


def count_steps(monkeypatch: pytest.MonkeyPatch, crash_at: int | None = None) -> list[int]:
    """Count the training steps (calls of ``Rule.gradients``, the loop's one entry into a rule); the call number
    ``crash_at`` raises :class:`SimulatedCrashError` instead of computing anything."""
    calls = [0]
    original = Rule.gradients

    def counted(self: Rule, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == crash_at:
            raise SimulatedCrashError(f"simulated crash in step {crash_at}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Rule, "gradients", counted)
    return calls


def last_checkpointed_step(crash_at: int, every: int | str, per_epoch: int) -> int:
    """The global step of the last checkpoint before the step ``crash_at``: every epoch's end, and every
    ``every`` steps (a time cadence as short as ours: every step)."""
    if isinstance(every, str):
        return crash_at - 1
    return max([0, *(s for s in range(1, crash_at) if s % per_epoch == 0 or s % every == 0)])


@contextmanager
def eqprop(args: list[str], *, cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m eqprop ARGS`` in ``cwd``, stderr to ``log`` and stdout to ``log`` + ``.out``; killed on exit if
    still running."""
    with log.open("wb") as err, log.with_suffix(".out").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eqprop", *args], cwd=cwd, stdout=out, stderr=err, env=ENV
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT_S)


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Poll ``ready`` until it holds; fail if ``proc`` ends first or after :data:`WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (status {proc.returncode}) before {what}: {log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {WAIT_S:.0f} s: {log.read_text()}")
        time.sleep(0.002)


def wait_for_step_checkpoint(out: Path, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """Wait until ``out/checkpoint.pt`` is a step-level checkpoint (it has a "position"), polling its mtime and
    reading each new version once; return it."""
    path, seen, found = out / "checkpoint.pt", [None], {}

    def ready() -> bool:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        stamp = (stat.st_ino, stat.st_mtime_ns)
        if stamp == seen[0]:
            return False
        seen[0] = stamp
        found.clear()
        found.update(load_checkpoint(path))  # a complete file, old or new: the writer renames it into place
        return "position" in found

    wait_until(ready, proc, "a step-level checkpoint", log)
    return found


def check_stopped(err: str, name: str, out: str) -> list[str]:
    """stderr of a run stopped by signal ``name``: the notice, where it stopped, the checkpoint, how to resume
    (no traceback); return the resume command's words."""
    assert "Traceback" not in err, err
    assert f"eqprop: {name} received" in err, err
    where = r"(in epoch \d+ after batch \d+ of \d+|at the end of epoch \d+)"
    shown = re.escape(str(Path(out) / "checkpoint.pt"))
    assert re.search(rf"^eqprop: stopped by {name} {where}; the checkpoint {shown} holds", err, re.M), err
    commands = [line for line in err.splitlines() if line.startswith("resume with: ")]
    assert commands == [f"resume with: eqprop train --resume {shlex.quote(out)}"], err
    return shlex.split(commands[0].removeprefix("resume with: "))


# -- fixtures -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake Fashion-MNIST with 2048 training images (an epoch of :data:`CLI_RUN` takes a while)."""
    return make_fake_fashion_mnist(tmp_path_factory.mktemp("big-fake-fmnist"), n_train=2048, n_test=64)


@pytest.fixture(scope="module")
def cli_straight(big_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run of :data:`CLI_RUN` (by the CLI, in this process), to compare the others with."""
    out = tmp_path_factory.mktemp("cli-straight") / "run"
    assert main(["train", "--data-dir", str(big_data), *CLI_RUN, "--out", str(out)]) == 0
    return out


CRASH_SETS = {
    "eqprop": [],
    "warm-start": ["train.warm_start=true", "train.batch_size=24"],
    "augment": ["data.flip=true", "data.crop_padding=2"],  # on the dense net's flattened 28x28 images
}
"""The runs of the crash tests, besides ``aeqprop`` (the AEqprop preset, shrunk): :data:`SMALL` and these."""
STEPS_PER_EPOCH = {"eqprop": 16, "warm-start": 11, "augment": 16, "aeqprop": 8}
"""256 fake training images: batches of 16; of 24 (10, then one of 16: the warm state does not fit it); of 32."""
BATCH_SIZE = {"eqprop": 16, "warm-start": 24, "augment": 16, "aeqprop": 32}


@pytest.fixture
def crash_config(fake_data: Path, tiny_config: Callable[..., RunConfig]) -> Callable[[str], RunConfig]:
    """``crash_config(name)``: the small runs of the crash tests (2 epochs each, see :data:`STEPS_PER_EPOCH`)."""

    def make(name: str) -> RunConfig:
        if name == "aeqprop":
            sets = [*SMALL, "train.batch_size=32", f'data.data_dir="{fake_data}"']
            return apply_overrides(load_preset("fmnist-aeqprop-1h"), sets)
        return tiny_config(*SMALL, *CRASH_SETS[name])

    return make


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> the uninterrupted run of ``crash_config(name)``, trained once by the first test that needs it."""
    return {}


@pytest.fixture
def straight(
    straight_runs: dict[str, Path],
    crash_config: Callable[[str], RunConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], Path]:
    def get(name: str) -> Path:
        if name not in straight_runs:
            out = tmp_path_factory.mktemp(f"straight-{name}") / "run"
            fit(crash_config(name), out, progress=False)
            straight_runs[name] = out
        return straight_runs[name]

    return get


# -- 1. step-level checkpoints: a crash at any step resumes bit-identical -------------------------------------------
def crash_and_resume(
    config: RunConfig,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    crash_at: int,
    every: int | str,
    per_epoch: int,
) -> dict[str, Any]:
    """Train ``config`` into ``out`` with a checkpoint every ``every``, crash in step ``crash_at``, check what the
    crash left, resume: the resumed run takes up at the step after the last checkpoint. Return that checkpoint."""
    with monkeypatch.context() as m:
        calls = count_steps(m, crash_at)
        with pytest.raises(SimulatedCrashError):
            fit(config, out, progress=False, checkpoint_every=every)
        assert calls[0] == crash_at
    assert not (out / ".lock").exists()  # the crashed run let go of its folder
    assert _leftovers(out) == []
    ckpt = load_checkpoint(out / "checkpoint.pt")
    done = ckpt["epoch"] * per_epoch + (ckpt["position"]["batch"] if "position" in ckpt else 0)
    assert done == last_checkpointed_step(crash_at, every, per_epoch)
    assert ("position" in ckpt) == (done % per_epoch != 0)  # between epochs, no position
    with monkeypatch.context() as m:
        calls = count_steps(m)
        summary = resume(out, progress=False)
    assert calls[0] == 2 * per_epoch - done  # the steps after the checkpoint, each once
    assert summary["epochs"] == 2
    return ckpt


@pytest.mark.parametrize(
    ("name", "every", "crash_at"),
    [
        ("eqprop", 3, 4),  # just after a step checkpoint
        ("eqprop", 3, 8),  # two steps after one
        ("eqprop", 3, 16),  # the last batch of epoch 1
        ("eqprop", 3, 17),  # the first of epoch 2: back to the epoch's checkpoint
        ("eqprop", 3, 23),  # within epoch 2
        ("eqprop", "1e-6s", 10),  # a time cadence: a checkpoint after every step
        ("warm-start", 2, 5),
        ("warm-start", 2, 11),  # the short last batch, which starts cold
        ("warm-start", 2, 14),  # epoch 2, resumed from a warm state
        ("augment", 3, 7),
        ("augment", 3, 20),
        ("aeqprop", 3, 5),
        ("aeqprop", 3, 12),
    ],
)
def test_a_crash_mid_epoch_resumes_at_the_next_batch_bit_identical(
    name: str,
    every: int | str,
    crash_at: int,
    crash_config: Callable[[str], RunConfig],
    straight: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "run"
    per_epoch = STEPS_PER_EPOCH[name]
    ckpt = crash_and_resume(
        crash_config(name), out, monkeypatch, crash_at=crash_at, every=every, per_epoch=per_epoch
    )
    if "position" in ckpt:
        position = ckpt["position"]
        assert position["seen"] == position["batch"] * BATCH_SIZE[name]  # full batches so far
        assert 0 <= int(position["correct"]) <= position["seen"]
        warm = position["warm"]
        if name == "warm-start":
            assert warm is not None and all(isinstance(w, torch.Tensor) for w in warm)
        elif name == "eqprop":
            assert warm is None
    assert_same_run(straight(name), out)


@settings(
    max_examples=6, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(crash_at=st.integers(2, 32), every=st.integers(1, 17))
def test_a_crash_at_a_random_step_resumes_bit_identical(
    crash_at: int,
    every: int,
    crash_config: Callable[[str], RunConfig],
    straight: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if last_checkpointed_step(crash_at, every, 16) == 0:
        every = 1  # a crash before the first checkpoint leaves nothing to resume
    out = tmp_path_factory.mktemp("random-crash") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        crash_and_resume(
            crash_config("eqprop"), out, monkeypatch, crash_at=crash_at, every=every, per_epoch=16
        )
    assert_same_run(straight("eqprop"), out)


@pytest.mark.parametrize(
    ("sig", "at_step", "where"),
    [
        pytest.param(signal.SIGTERM, 5, "in epoch 1 after batch 5 of 16", id="SIGTERM-step-5"),
        # the last batch of an epoch: the run finishes the epoch (its evaluation and checkpoint), then stops
        pytest.param(signal.SIGINT, 16, "at the end of epoch 1", id="SIGINT-last-batch-of-epoch-1"),
        pytest.param(signal.SIGTERM, 20, "in epoch 2 after batch 4 of 16", id="SIGTERM-step-20"),
        # while the epoch's record is written: the epoch is finished and saved first
        pytest.param(signal.SIGINT, None, "at the end of epoch 1", id="SIGINT-end-of-epoch-1"),
    ],
)
def test_a_signal_stops_after_the_step_in_progress_and_the_run_resumes_bit_identical(
    sig: signal.Signals,
    at_step: int | None,
    where: str,
    crash_config: Callable[[str], RunConfig],
    straight: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In this process: the signal comes during a step (or while metrics.jsonl is appended to), the step is
    finished, a checkpoint written, Interrupted raised with the status and the command that resumes."""
    out, handlers = tmp_path / "run", {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def send() -> None:
        # without the run's handler, the signal would stop the test process itself
        assert signal.getsignal(sig) not in (handlers[sig], signal.SIG_DFL, signal.default_int_handler)
        os.kill(os.getpid(), sig)

    calls = [0]
    original_gradients, original_open = Rule.gradients, Path.open

    def gradients(self: Rule, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == at_step:
            send()
        return original_gradients(self, *args, **kwargs)

    def appending(self: Path, *args: Any, **kwargs: Any) -> Any:
        if (
            at_step is None
            and self.name == "metrics.jsonl"
            and kwargs.get("mode", args[0] if args else "r") == "a"
        ):
            send()
        return original_open(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Rule, "gradients", gradients)
        m.setattr(Path, "open", appending)
        with pytest.raises(Interrupted) as info:
            fit(crash_config("eqprop"), out, progress=False)
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the run's handlers are gone
    assert info.value.status == 128 + sig
    assert str(info.value) == (
        f"stopped by {sig.name} {where}; the checkpoint {out / 'checkpoint.pt'} holds the run up to there"
    )
    assert info.value.hint == f"resume with: eqprop train --resume {shlex.quote(str(out))}"
    ckpt = load_checkpoint(out / "checkpoint.pt")
    steps = 16 if at_step is None else at_step  # the step in progress was finished and saved
    assert ckpt["epoch"] * 16 + (ckpt["position"]["batch"] if "position" in ckpt else 0) == steps
    with monkeypatch.context() as m:
        resumed = count_steps(m)
        resume(out, progress=False)
    assert resumed[0] == 32 - steps
    assert_same_run(straight("eqprop"), out)


@pytest.mark.parametrize(
    ("given_every", "expected"),
    [
        (500, Cadence(steps=500)),
        ("500", Cadence(steps=500)),
        (" 7 ", Cadence(steps=7)),
        ("90s", Cadence(seconds=90.0)),
        ("10m", Cadence(seconds=600.0)),
        ("1h", Cadence(seconds=3600.0)),
        ("1.5m", Cadence(seconds=90.0)),
        (None, Cadence()),
    ],
)
def test_checkpoint_every_accepts_steps_and_times(given_every: int | str | None, expected: Cadence) -> None:
    assert Cadence.parse(given_every) == expected


@pytest.mark.parametrize("bad", [0, -2, "0", "-3", "10x", "", "s", "0s", "-1m", "ten"])
def test_checkpoint_every_refuses_other_values_naming_the_flag(bad: int | str) -> None:
    with pytest.raises(ConfigError, match="--checkpoint-every"):
        Cadence.parse(bad)


def test_cadence_is_due_every_n_steps_or_after_its_time() -> None:
    steps = Cadence.parse(3)
    assert [s for s in range(1, 10) if steps.due(s, 0.0)] == [3, 6, 9]
    timed = Cadence.parse("90s")
    assert not timed.due(1, 89.9) and timed.due(1, 90.0)
    assert not any(Cadence().due(s, 1e9) for s in range(1, 5))  # epochs only


def test_bad_checkpoint_every_is_refused_before_anything_is_written(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["train", "--data-dir", str(fake_data), "--set", "system.sizes=[784,16,10]", "--no-progress"]
    assert main([*args, "--out", str(out), "--checkpoint-every", "10x"]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint-every '10x'" in err and "Traceback" not in err
    assert not out.exists()


# -- 2. kill -9 in the middle of an epoch ---------------------------------------------------------------------------
def test_kill_9_mid_epoch_then_resume_is_bit_identical_and_cleans_up(
    big_data: Path, cli_straight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, log = tmp_path / "killed", tmp_path / "killed.log"
    args = ["train", "--data-dir", str(big_data), *CLI_RUN, "--checkpoint-every", "1", "--out", str(out)]
    with eqprop(args, cwd=tmp_path, log=log) as proc:
        wait_for_step_checkpoint(out, proc, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=WAIT_S)
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(out / "checkpoint.pt")  # whole: the last one written before the kill
    assert ckpt["epoch"] < 2
    assert (out / ".lock").exists()  # the killed run's lock file stays behind; the kernel released the lock
    # what a writer killed mid-write leaves behind: the next lock holder removes it
    (out / ".checkpoint.pt.0123456789abcdef.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    (out / ".config.json.tmp").write_text('{"half":')
    (out / ".metrics.jsonl.tmp").write_text('{"epoch": 1, "tr')
    capsys.readouterr()

    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "not be bit-identical" not in err
    assert _leftovers(out) == []
    assert not (out / ".lock").exists()
    assert_same_run(cli_straight, out)


# -- 3. SIGTERM and Ctrl-C ------------------------------------------------------------------------------------------
def test_sigterm_saves_says_how_to_resume_and_that_command_finishes_the_run(
    big_data: Path, cli_straight: Path, tmp_path: Path
) -> None:
    out, log = "term run", tmp_path / "term.log"  # relative to the working directory, with a space to quote
    args = ["train", "--data-dir", str(big_data), *CLI_RUN, "--checkpoint-every", "1", "--out", out]
    with eqprop(args, cwd=tmp_path, log=log) as proc:
        first = wait_for_step_checkpoint(tmp_path / out, proc, log)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT_S)
    err = log.read_text()
    assert proc.returncode == 143, err
    command = check_stopped(err, "SIGTERM", out)
    stopped = load_checkpoint(tmp_path / out / "checkpoint.pt")
    if "position" in stopped:  # stopped within an epoch: at or after the step we saw
        before = first["epoch"], first["position"]["batch"]
        assert (stopped["epoch"], stopped["position"]["batch"]) >= before
    assert _leftovers(tmp_path / out) == [] and not (tmp_path / out / ".lock").exists()

    assert command[:3] == ["eqprop", "train", "--resume"]
    done = subprocess.run(
        [sys.executable, "-m", "eqprop", *command[1:]],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "not be bit-identical" not in done.stderr and "Traceback" not in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["epochs"] == 2
    assert_same_run(cli_straight, tmp_path / out)


def test_ctrl_c_once_saves_and_the_run_resumes_bit_identical(
    big_data: Path, cli_straight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, log = tmp_path / "int", tmp_path / "int.log"
    args = ["train", "--data-dir", str(big_data), *CLI_RUN, "--checkpoint-every", "1", "--out", str(out)]
    with eqprop(args, cwd=tmp_path, log=log) as proc:
        wait_for_step_checkpoint(out, proc, log)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=WAIT_S)
    err = log.read_text()
    assert proc.returncode == 130, err
    check_stopped(err, "SIGINT", str(out))
    read_checkpoint(out)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(cli_straight, out)


def test_ctrl_c_twice_stops_at_once_and_keeps_the_last_checkpoint(big_data: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "twice", tmp_path / "twice.log"
    args = ["train", "--data-dir", str(big_data), *SLOW_RUN, "--checkpoint-every", "1", "--out", str(out)]
    with eqprop(args, cwd=tmp_path, log=log) as proc:
        # A signal that comes while a checkpoint is written stops the run right after it, and a second one would
        # then find the process leaving: send the first a quarter of a step after a checkpoint, into the step.
        wait_for_step_checkpoint(out, proc, log)
        before = (out / "checkpoint.pt").stat().st_mtime
        wait_until(
            lambda: (out / "checkpoint.pt").stat().st_mtime != before, proc, "a second checkpoint", log
        )
        step = (out / "checkpoint.pt").stat().st_mtime - before
        time.sleep(step / 4)
        proc.send_signal(signal.SIGINT)
        wait_until(lambda: "SIGINT received" in log.read_text(), proc, "the notice of the first SIGINT", log)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=WAIT_S)
    err = log.read_text()
    assert proc.returncode == 130, err
    assert "stopped at once" in err and "Traceback" not in err, err
    assert "stopped by SIGINT" not in err
    config, ckpt = read_checkpoint(out)  # the step checkpoint before the signals, whole
    assert ckpt["position"]["batch"] == 2 and config.train.batch_size == 512  # steps 1 and 2 were saved
    assert [p for p in _leftovers(out) if p.startswith(".checkpoint")] == []


def _importing_torch(pid: int) -> Callable[[], bool]:
    """Whether process ``pid`` has begun to map torch's libraries (no /proc: at once)."""
    maps = Path(f"/proc/{pid}/maps")

    def ready() -> bool:
        try:
            return "libtorch" in maps.read_text()
        except FileNotFoundError:
            return not Path("/proc/self/maps").exists()

    return ready


@pytest.mark.parametrize(
    ("sig", "when"),
    [
        pytest.param(signal.SIGTERM, "import", id="SIGTERM-import"),  # no handler yet: a quiet death
        pytest.param(signal.SIGINT, "lock", id="SIGINT-lock"),  # main catches it, or the handler stops
        pytest.param(signal.SIGINT, "import", id="SIGINT-import"),  # main catches it: 130, one line
    ],
)
def test_a_signal_before_the_first_checkpoint_leaves_no_traceback_and_no_half_checkpoint(
    sig: signal.Signals, when: str, big_data: Path, tmp_path: Path
) -> None:
    """A signal while Python imports torch, or once the run has taken its folder (before its first step ends)."""
    out, log = tmp_path / "early", tmp_path / "early.log"
    args = ["train", "--data-dir", str(big_data), *SLOW_RUN, "--checkpoint-every", "1", "--out", str(out)]
    with eqprop(args, cwd=tmp_path, log=log) as proc:
        if when == "import":
            wait_until(_importing_torch(proc.pid), proc, "the import of torch", log)
        else:
            wait_until((out / ".lock").exists, proc, "the run's lock", log)
        proc.send_signal(sig)
        proc.wait(timeout=WAIT_S)
    err = log.read_text()
    assert "Traceback" not in err, err
    if when == "import":
        assert proc.returncode in (-sig, 128 + sig), err
        assert not out.exists()
    else:
        assert proc.returncode == 130, err
        assert "stopped at once" in err or "stopped by SIGINT" in err, err
        assert [p for p in _leftovers(out) if p.startswith(".checkpoint")] == []
        if (out / "checkpoint.pt").exists():
            read_checkpoint(out)  # whole


# -- 4. two runs into one folder ------------------------------------------------------------------------------------
HOLDER = """
import sys, time
from eqprop.train.rundir import RunLock
with RunLock(sys.argv[1]), RunLock(sys.argv[2]):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_folder_in_use_is_refused_until_its_holder_dies(
    fake_data: Path,
    tiny_config: Callable[..., RunConfig],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tiny_config("system.sizes=[784,16,10]")
    fresh, done = tmp_path / "fresh", tmp_path / "done"
    fit(config, done, progress=False)
    before = (done / "checkpoint.pt").read_bytes()
    log = tmp_path / "holder.log"
    with log.open("wb") as err, log.with_suffix(".out").open("wb") as holder_out:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(fresh), str(done)], stdout=holder_out, stderr=err, env=ENV
        )
    try:
        wait_until(lambda: "holding" in log.with_suffix(".out").read_text(), holder, "the lock", log)
        in_use = rf"in use by another run \(pid {holder.pid} on "
        with pytest.raises(ConfigError, match=in_use):
            fit(config, fresh, progress=False)
        with pytest.raises(ConfigError, match=in_use):
            resume(done, epochs=2, progress=False)
        capsys.readouterr()
        cli = ["train", "--data-dir", str(fake_data), "--set", "system.sizes=[784,16,10]", "--no-progress"]
        assert main([*cli, "--out", str(fresh)]) == 2
        assert main(["train", "--resume", str(done), "--epochs", "2", "--no-progress"]) == 2
        err_text = capsys.readouterr().err
        assert err_text.count("in use by another run") == 2 and err_text.count(f"pid {holder.pid} ") == 2
        assert "Traceback" not in err_text
        assert (done / "checkpoint.pt").read_bytes() == before
        assert sorted(p.name for p in fresh.iterdir()) == [".lock"]  # nothing of the refused runs
    finally:
        holder.kill()
        holder.wait(timeout=WAIT_S)
    assert holder.returncode == -signal.SIGKILL
    assert (fresh / ".lock").exists() and (done / ".lock").exists()  # stale files; the kernel freed the locks
    assert fit(config, fresh, progress=False)["epochs"] == 1
    assert resume(done, epochs=2, progress=False)["epochs"] == 2
    assert not (fresh / ".lock").exists() and not (done / ".lock").exists()


def test_two_runs_started_together_into_one_folder_one_wins(
    big_data: Path, cli_straight: Path, tmp_path: Path
) -> None:
    out = tmp_path / "both"
    args = ["train", "--data-dir", str(big_data), *CLI_RUN, "--checkpoint-every", "1", "--out", str(out)]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    with eqprop(args, cwd=tmp_path, log=logs[0]) as first, eqprop(args, cwd=tmp_path, log=logs[1]) as second:
        first.wait(timeout=WAIT_S)
        second.wait(timeout=WAIT_S)
    codes = [first.returncode, second.returncode]
    errs = [log.read_text() for log in logs]
    assert sorted(codes) == [0, 2], errs
    loser = errs[codes.index(2)]
    assert "Traceback" not in loser
    refusals = ("in use by another run", "already holds a run", "but no checkpoint.pt")
    assert any(r in loser for r in refusals), loser  # usually the first: both start within a second
    if "in use by another run" in loser:
        winner = (first, second)[codes.index(0)]
        assert f"(pid {winner.pid} on " in loser, loser
    # one writer: each line a whole record, each epoch once, and the run is the uninterrupted one
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert_same_run(cli_straight, out)


# -- 5. --out -------------------------------------------------------------------------------------------------------
def test_out_must_be_a_folder_we_can_write_and_not_someone_elses(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = ["train", "--data-dir", str(fake_data), "--set", "system.sizes=[784,16,10]", "--no-progress"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert main([*cli, "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main([*cli, "--out", str(a_file / "run")]) == 2  # under a file: refused for root too
    err = capsys.readouterr().err
    assert f"cannot write into {a_file / 'run'}" in err and "Traceback" not in err
    assert a_file.read_text() == "mine"

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "config.json").write_text('{"my": "own settings"}')
    assert main([*cli, "--out", str(theirs)]) == 2
    err = capsys.readouterr().err
    assert "holds config.json" in err and "Traceback" not in err
    assert (theirs / "config.json").read_text() == '{"my": "own settings"}'
    assert sorted(p.name for p in theirs.iterdir()) == ["config.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder_is_refused(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        cli = ["train", "--data-dir", str(fake_data), "--set", "system.sizes=[784,16,10]", "--no-progress"]
        for out in (locked, locked / "run"):
            assert main([*cli, "--out", str(out)]) == 2
            assert f"cannot write into {out}" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


# -- 6. checksums ---------------------------------------------------------------------------------------------------
def _edit_checkpoint(run: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    edit(ckpt)
    save_checkpoint(run / "checkpoint.pt", ckpt)


def test_an_altered_checkpoint_is_refused_by_its_checksum(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    fit(tiny_config("system.sizes=[784,16,10]"), run, progress=False)
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    intact = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    def one_weight_changed(ckpt: dict[str, Any]) -> None:
        name = next(k for k, v in ckpt["system"].items() if v.is_floating_point())
        ckpt["system"][name].view(-1)[0] += 0.5  # the stored "checksum" stays the old one

    altered = tmp_path / "altered"
    shutil.copytree(run, altered)
    _edit_checkpoint(altered, one_weight_changed)
    before = (altered / "checkpoint.pt").read_bytes()
    for argv in (
        ["eval", str(altered)],
        ["train", "--resume", str(altered), "--epochs", "2", "--no-progress"],
    ):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and "checksum" in err and "Traceback" not in err, err
    assert (altered / "checkpoint.pt").read_bytes() == before

    older = tmp_path / "older"  # written before checksums: still read
    shutil.copytree(run, older)
    _edit_checkpoint(older, lambda ckpt: ckpt.pop("checksum"))
    assert "checksum" not in load_checkpoint(older / "checkpoint.pt")
    assert main(["eval", str(older)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_accuracy"] == intact["test_accuracy"] and result["test_loss"] == intact["test_loss"]


# -- 7. threads -----------------------------------------------------------------------------------------------------
def test_resuming_with_other_threads_says_it_will_not_be_bit_identical(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    fit(tiny_config("system.sizes=[784,16,10]"), run, progress=False)  # with 1 torch thread (quiet_torch)
    assert load_checkpoint(run / "checkpoint.pt")["threads"] == 1
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--threads", "1", "--no-progress"]) == 0
    assert "not be bit-identical" not in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "3", "--threads", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "not be bit-identical" in err
    assert re.search(r"used 1 torch thread\(s\) and resumes with 2\b.*--threads 1", err), err
    assert load_checkpoint(run / "checkpoint.pt")["threads"] == 2


# -- 8. the data's fingerprint --------------------------------------------------------------------------------------
def test_resume_refuses_other_data_and_accepts_a_copy_of_the_same(
    fake_data: Path, tiny_config: Callable[..., RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(fake_data, data)
    other = make_fake_fashion_mnist(tmp_path / "other", seed=1)  # the same shapes, other images
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    run = tmp_path / "run"
    fit(tiny_config("system.sizes=[784,16,10]", f'data.data_dir="{data}"'), run, progress=False)
    assert load_checkpoint(run / "checkpoint.pt")["data_fingerprint"]
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()

    resume_with = ["train", "--resume", str(run), "--epochs", "2", "--no-progress", "--data-dir"]
    assert main([*resume_with, str(other)]) == 2
    err = capsys.readouterr().err
    assert "is not the data the run" in err and "trained on" in err and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing touched
    assert main([*resume_with, str(copy)]) == 0
    assert len(_metrics(run)) == 2


# -- 9. a full disk for the small files -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "mode", "shown"),
    [
        ("metrics.jsonl", "a", "metrics.jsonl"),  # append_line, after every epoch
        (".summary.json.tmp", "w", "summary.json"),  # write_json, at the end
        (".metrics.jsonl.tmp", "w", "metrics.jsonl"),  # write_lines, rewriting it from the checkpoint
    ],
)
def test_a_full_disk_for_the_small_files_is_a_checkpoint_error(
    name: str,
    mode: str,
    shown: str,
    tiny_config: Callable[..., RunConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_open = Path.open

    def full_disk(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == name and kwargs.get("mode", args[0] if args else "r").startswith(mode):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_disk)
    out = tmp_path / "run"
    with pytest.raises(CheckpointError) as info:
        fit(tiny_config("system.sizes=[784,16,10]"), out, progress=False)
    assert type(info.value) is CheckpointError
    assert f"cannot write {out / shown}: No space left on device" in str(info.value)
    assert info.value.hint is not None and "disk is not full" in info.value.hint
    assert _leftovers(out) == []
