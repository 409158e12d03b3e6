"""Data-parallel training: `torchrun --nproc-per-node 2 -m eqprop train` (gloo on the CPU) against one process.

Two processes with half a batch each end within float round-off of one process with the whole batch; a run
resumes under another number of processes; a killed process ends the job with a clear error and leaves the last
checkpoint whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from eqprop.errors import ConfigError
from eqprop.rules import AgnosticEqProp
from eqprop.train import RunConfig, fit, resume
from eqprop.train.checkpoint import load_checkpoint
from eqprop.train.distributed import World
from eqprop.train.monitor import Monitoring

pytestmark = pytest.mark.usefixtures("quiet_torch")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
TINY = ["system.sizes=[784,16,10]", "train.batch_size=16", "train.threads=1"]
RULES = {  # 20 steps: 320 fake examples in batches of 16
    "eqprop": [],
    "backprop": ["rule.kind=backprop", "rule.steps=15"],
    "aeqprop": ["rule.kind=aeqprop", "rule.beta=0.1", "rule.epsilon=0.5"],
}


def torchrun(args: list[str], *, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node 2 -m eqprop ARGS`` (free port chosen by torchrun)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "eqprop",
    ]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


def _cli_sets(config_sets: list[str]) -> list[str]:
    out: list[str] = []
    for item in config_sets:
        out += ["--set", item]
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["system"]


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Within float32 round-off of 20 steps (the sums over the batch are split differently)."""
    for name in a:
        scale = float(a[name].abs().max()) + 1e-12
        assert float((a[name] - b[name]).abs().max()) <= 2e-5 * scale, name


@pytest.fixture(scope="module")
def data_320(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers import make_fake_fashion_mnist

    return make_fake_fashion_mnist(tmp_path_factory.mktemp("dp-data"), n_train=320, n_test=40)


@pytest.mark.parametrize("rule", list(RULES))
def test_two_processes_with_half_batches_match_one_process(
    rule: str, data_320: Path, tmp_path: Path, tiny_config: Callable[..., RunConfig]
) -> None:
    sets = [*TINY, *RULES[rule], f'data.data_dir="{data_320}"']
    one = tmp_path / "one"
    fit(tiny_config(*sets), one, progress=False, monitoring=Monitoring(tensorboard=False))
    run = torchrun(
        [
            "train",
            "--preset",
            "fmnist-quick",
            *_cli_sets(sets),
            "--out",
            "two",
            "--no-progress",
            "--no-tensorboard",
        ],
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, run.stdout  # one summary: the main process's
    summary = json.loads(lines[0])
    assert summary["processes"] == 2 and summary["epochs"] == 1
    _close(_weights(one), _weights(tmp_path / "two"))
    # the epoch's figures are the whole batch's, not one share's
    a = json.loads((one / "metrics.jsonl").read_text())
    b = json.loads((tmp_path / "two" / "metrics.jsonl").read_text())
    assert b["train_accuracy"] == a["train_accuracy"] and b["test_accuracy"] == a["test_accuracy"]
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)


def test_a_run_resumes_under_another_number_of_processes(
    data_320: Path, tmp_path: Path, tiny_config: Callable[..., RunConfig]
) -> None:
    """1 process for epoch 1 then 2 for epoch 2, and 2 then 1: both end where 1 process for 2 epochs ends."""
    sets = [*TINY, f'data.data_dir="{data_320}"']
    quiet = Monitoring(tensorboard=False)
    straight = tmp_path / "straight"
    fit(tiny_config(*sets, "train.epochs=2"), straight, progress=False, monitoring=quiet)

    one_then_two = tmp_path / "one-then-two"
    fit(tiny_config(*sets, "train.epochs=1"), one_then_two, progress=False, monitoring=quiet)
    run = torchrun(["train", "--resume", one_then_two.name, "--epochs", "2", "--no-progress"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    cli = ["train", "--preset", "fmnist-quick", *_cli_sets(sets), "--epochs", "1", "--no-progress"]
    run = torchrun([*cli, "--out", "two-then-one", "--no-tensorboard"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    resume(tmp_path / "two-then-one", epochs=2, progress=False, monitoring=quiet)

    for other in (one_then_two, tmp_path / "two-then-one"):
        assert load_checkpoint(other / "checkpoint.pt")["epoch"] == 2
        _close(_weights(straight), _weights(other))


def _job_with_a_checkpoint(cli: list[str], cwd: Path) -> subprocess.Popen[str]:
    """``torchrun ... -m eqprop CLI`` in the background, once it has written ``cwd/run/checkpoint.pt``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.Popen(
        [*command, "-m", "eqprop", *cli],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (cwd / "run" / "checkpoint.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    return proc


def test_sigterm_stops_every_process_after_the_same_step(data_320: Path, tmp_path: Path) -> None:
    """torchrun forwards SIGTERM to its processes: they agree (in the step's all-reduce) on the step to stop
    after, the main one saves, and the printed command resumes the run."""
    sets = [*TINY, f'data.data_dir="{data_320}"', "train.epochs=50"]
    cli = ["train", "--preset", "fmnist-quick", *_cli_sets(sets), "--out", "run", "--no-progress"]
    cli += ["--no-tensorboard", "--checkpoint-every", "1"]
    proc = _job_with_a_checkpoint(cli, tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "stopped by SIGTERM" in err and "resume with: eqprop train --resume run" in err, err[-3000:]
    assert "Traceback" not in err.split("stopped by SIGTERM")[0], err[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["epoch"] < 50
    run = torchrun(
        ["train", "--resume", "run", "--epochs", str(ckpt["epoch"] + 1), "--no-progress"], cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-3000:]


def test_a_killed_process_ends_the_job_and_leaves_the_checkpoint_whole(
    data_320: Path, tmp_path: Path
) -> None:
    sets = [*TINY, f'data.data_dir="{data_320}"', "train.epochs=200"]
    cli = ["train", "--preset", "fmnist-quick", *_cli_sets(sets), "--out", "run", "--no-progress"]
    cli += ["--no-tensorboard", "--checkpoint-every", "1"]
    proc = _job_with_a_checkpoint(cli, tmp_path)
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGKILL)  # one process dies without a word
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err[-3000:]
    assert "SIGKILL" in err or "Signal 9" in err or "another process of the run stopped" in err, err[-3000:]
    # the checkpoint the main process last wrote is whole and resumes
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    resume(
        tmp_path / "run", epochs=ckpt["epoch"] + 1, progress=False, monitoring=Monitoring(tensorboard=False)
    )


def _children(pid: int) -> list[int]:
    """The eqprop processes torchrun started (its children running `-m eqprop`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"eqprop" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def test_a_rule_that_cannot_be_split_among_processes_says_so() -> None:
    AgnosticEqProp(parameter_iterations=1).check_data_parallel(2)
    AgnosticEqProp(parameter_iterations=3).check_data_parallel(1)
    with pytest.raises(ConfigError, match="parameter_iterations = 3: split among 2 processes"):
        AgnosticEqProp(parameter_iterations=3).check_data_parallel(2)


def test_the_world_of_one_process_and_its_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    assert World().main and World().size == 1
    w = World(rank=1, size=2, local_rank=1)
    assert not w.main and w.shard(5) == slice(1, 5, 2)
    assert w.device("cuda") == "cuda:1" and w.device("cpu") == "cpu"
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        World.from_env()
