"""Tests for eqprop.train.checkpoint: atomic saves, code-free loads, RNG state, compatibility."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from eqprop.errors import CheckpointError, ConfigError
from eqprop.train import checkpoint as ckpt
from eqprop.train.checkpoint import (
    FORMAT,
    check_compatible,
    generator_state,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_generator_state,
    set_rng_state,
)

# Side effects the malicious pickles below would cause if their code ever ran.
EXECUTED: list[str] = []


def _record_execution(tag: str) -> list[str]:
    EXECUTED.append(tag)
    return EXECUTED


class Malicious:
    """Unpickling this calls ``_record_execution`` — which load_checkpoint must never do."""

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (_record_execution, ("pwned",))


class FileCreator:
    """Unpickling this creates a file (the path is set by the test)."""

    target = ""

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str, str]]:
        return (open, (self.target, "w"))


def _trained_payload() -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    loss = model(torch.randn(5, 4)).pow(2).sum()
    loss.backward()
    opt.step()
    sched.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "config": {"system": {"sizes": [4, 3], "beta": 0.5, "name": "hopfield"}, "tags": ("a", "b")},
        "epoch": 3,
        "best": 0.125,
        "note": "resume me",
        "missing": None,
        "flag": True,
        "rng": rng_state(),
    }


def _assert_same(a: Any, b: Any, where: str = "payload") -> None:
    """Recursive equality with bit-identical tensors (NaN-safe, dtype and device included)."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype, where
        assert a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# ------------------------------------------------------------------------------------------------
# round trip
# ------------------------------------------------------------------------------------------------


def test_round_trip_is_bit_identical(tmp_path: Path) -> None:
    payload = _trained_payload()
    assert payload["optimizer"]["state"], "SGD with momentum should have buffers after a step"
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)
    assert loaded["format"] == FORMAT
    _assert_same({k: v for k, v in loaded.items() if k != "format"}, payload)


def test_round_trip_accepts_str_path_and_reloaded_state_dicts(tmp_path: Path) -> None:
    payload = _trained_payload()
    path = str(tmp_path / "checkpoint.pt")
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path, map_location=None)
    model = torch.nn.Linear(4, 3)
    model.load_state_dict(loaded["model"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict(loaded["optimizer"])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    sched.load_state_dict(loaded["scheduler"])
    assert sched.last_epoch == 1
    # Saving what was loaded (which carries "format") works too.
    save_checkpoint(path, loaded)
    _assert_same(load_checkpoint(path), loaded)


def test_overwrite_replaces_previous_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1})
    os.chmod(path, 0o640)
    save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]


# ------------------------------------------------------------------------------------------------
# RNG state
# ------------------------------------------------------------------------------------------------


def _draw() -> tuple[torch.Tensor, list[float], float, np.ndarray]:
    return (
        torch.rand(8),
        [random.random() for _ in range(4)],
        random.gauss(0.0, 1.0),  # leaves gauss_next set: a cached value must round-trip too
        np.random.standard_normal(5),
    )


def test_set_rng_state_reproduces_draws(tmp_path: Path) -> None:
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    _draw()  # advance all generators, including cached gaussians
    state = rng_state()
    assert state["torch"].dtype == torch.uint8
    save_checkpoint(tmp_path / "c.pt", {"rng": state})
    first = _draw()
    _draw()  # move further away
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    second = _draw()
    assert torch.equal(first[0], second[0])
    assert first[1] == second[1]
    assert first[2] == second[2]
    np.testing.assert_array_equal(first[3], second[3])


def test_set_rng_state_rejects_malformed_state_without_changing_anything() -> None:
    state = rng_state()
    expected = torch.rand(3)
    torch.set_rng_state(state["torch"])
    broken = dict(state)
    broken["python"] = {"version": 3, "state": torch.zeros(7, dtype=torch.int64), "gauss_next": None}
    random.seed(5)
    np.random.seed(5)
    python_before, numpy_before = random.getstate(), np.random.get_state(legacy=True)
    with pytest.raises(CheckpointError, match="RNG state is malformed"):
        set_rng_state(broken)
    assert torch.equal(torch.rand(3), expected)
    assert random.getstate() == python_before
    np.testing.assert_array_equal(np.random.get_state(legacy=True)[1], numpy_before[1])
    with pytest.raises(CheckpointError, match="RNG state is malformed"):
        set_rng_state({**state, "numpy": {**state["numpy"], "key": "not ints"}})
    assert random.getstate() == python_before
    with pytest.raises(CheckpointError, match="lacks key"):
        set_rng_state({"torch": state["torch"]})
    with pytest.raises(CheckpointError, match="lacks key"):
        set_rng_state([state])  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="uint8"):
        set_rng_state({**state, "torch": torch.zeros(3)})


def test_generator_state_round_trip(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(7)
    torch.randperm(10, generator=gen)
    save_checkpoint(tmp_path / "c.pt", {"gen": generator_state(gen)})
    first = torch.randperm(10, generator=gen)
    other = torch.Generator()
    set_generator_state(other, load_checkpoint(tmp_path / "c.pt")["gen"])
    assert torch.equal(torch.randperm(10, generator=other), first)
    with pytest.raises(CheckpointError, match="uint8"):
        set_generator_state(other, torch.zeros(4))
    with pytest.raises(CheckpointError, match="does not fit"):
        set_generator_state(other, torch.zeros(4, dtype=torch.uint8))


# ------------------------------------------------------------------------------------------------
# atomicity
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError("simulated crash"), OSError(28, "No space left on device")])
def test_failed_save_leaves_previous_checkpoint_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.arange(1000.0)})
    before = path.read_bytes()
    real_save = torch.save

    def half_then_raise(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        import io

        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        raise error

    monkeypatch.setattr(ckpt.torch, "save", half_then_raise)
    # torch.save reports a failed write as a RuntimeError (the payload is checked before): a CheckpointError too
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(path, {"epoch": 2, "w": torch.arange(1000.0) * 2})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1


def test_a_full_disk_is_a_checkpoint_error_and_leaves_the_last_checkpoint(tmp_path: Path) -> None:
    """A real failed write, not a simulated one: in a child process whose files may not exceed 64 kB
    (RLIMIT_FSIZE, the kernel's EFBIG as a full disk's ENOSPC), torch.save's RuntimeError is reported as a
    CheckpointError, the previous checkpoint is intact and no temporary file is left."""
    script = textwrap.dedent(
        f"""
        import resource, signal, torch
        from eqprop.errors import CheckpointError
        from eqprop.train.checkpoint import load_checkpoint, save_checkpoint
        path = {str(tmp_path / "checkpoint.pt")!r}
        save_checkpoint(path, {{"epoch": 1, "w": torch.zeros(10)}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            save_checkpoint(path, {{"epoch": 2, "w": torch.zeros(100000)}})
        except CheckpointError as err:
            print("CheckpointError:", err, "| hint:", err.hint)
        assert load_checkpoint(path)["epoch"] == 1
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "CheckpointError: cannot write checkpoint" in run.stdout and "disk is not full" in run.stdout
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]


def test_failed_first_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})
    assert os.listdir(tmp_path) == []


def test_save_into_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(tmp_path / "nope" / "checkpoint.pt", {"epoch": 1})


# ------------------------------------------------------------------------------------------------
# unreadable files
# ------------------------------------------------------------------------------------------------


def test_truncated_checkpoint_raises(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _trained_payload())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, Exception)
    assert info.value.hint


@pytest.mark.parametrize("content", [b"this is not a checkpoint\n" * 20, b"", b"\x80\x02garbage"])
def test_garbage_file_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"\x80\x02garbage", "no zip header"),
        (b"PK\x03\x04broken", "truncated or damaged"),
    ],
)
def test_unreadable_file_says_why(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "refusing" not in str(info.value)


def test_unreadable_permissions_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1})

    def denied(file: Any, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(ckpt, "open", denied, raising=False)  # works even as root, unlike chmod 0
    with pytest.raises(
        CheckpointError, match=r"cannot read checkpoint .*: PermissionError: Permission denied$"
    ):
        load_checkpoint(path)


def test_missing_file_mentions_path(tmp_path: Path) -> None:
    path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert info.value.hint is not None
    assert "eqprop train --out DIR" in info.value.hint


def test_directory_instead_of_file_points_at_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})
    with pytest.raises(CheckpointError, match="is a directory") as info:
        load_checkpoint(tmp_path)
    assert info.value.hint is not None
    assert "checkpoint.pt" in info.value.hint


def test_wrong_or_missing_format_raises(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointError, match="no 'format' key"):
        load_checkpoint(path)
    torch.save({"format": "eqprop-checkpoint/999"}, path)
    with pytest.raises(CheckpointError, match="eqprop-checkpoint/999"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(path)


def test_bad_map_location_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 1})
    with pytest.raises(ConfigError, match="not a device"):
        load_checkpoint(path, map_location="gpu-please")
    with pytest.raises(ConfigError, match="not a device"):
        load_checkpoint(path, map_location=3)  # type: ignore[arg-type]
    assert load_checkpoint(path, map_location=torch.device("cpu"))["epoch"] == 1


# ------------------------------------------------------------------------------------------------
# no code execution
# ------------------------------------------------------------------------------------------------


def test_pickled_object_is_refused_without_running_it(tmp_path: Path) -> None:
    EXECUTED.clear()
    # Sanity check: a plain unpickle really would run the payload's code.
    pickle.loads(pickle.dumps(Malicious()))
    assert EXECUTED == ["pwned"]
    EXECUTED.clear()

    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "x": Malicious()}, path)
    with pytest.raises(CheckpointError, match="refusing to load") as info:
        load_checkpoint(path)
    assert EXECUTED == []
    assert "\n" not in str(info.value)
    assert info.value.hint is not None
    assert "weights_only=False" not in str(info.value) + info.value.hint


@pytest.mark.parametrize(
    "value", [Malicious, _record_execution, np.zeros(2)], ids=["class", "function", "ndarray"]
)
def test_pickled_globals_are_refused(tmp_path: Path, value: object) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "x": value}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"refusing to load checkpoint {str(path)!r}: it holds pickled Python objects other than "
        "tensors and plain data"
    )
    assert info.value.hint is not None
    assert "never runs code" in info.value.hint


def test_pickled_file_creator_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "created-by-unpickling"
    monkeypatch.setattr(FileCreator, "target", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "x": FileCreator()}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------
# payload validation
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "where", "kind"),
    [
        ({"extra": {"arr": np.zeros(3)}}, "payload['extra']['arr']", "numpy.ndarray"),
        ({"metrics": [1.0, np.float64(2.0)]}, "payload['metrics'][1]", "numpy.float64"),
        ({"cfg": {"obj": Malicious()}}, "payload['cfg']['obj']", "Malicious"),
        ({"tags": {"a", "b"}}, "payload['tags']", "set"),
    ],
)
def test_save_refuses_unsafe_values(tmp_path: Path, payload: dict[str, Any], where: str, kind: str) -> None:
    EXECUTED.clear()
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, payload)
    assert where in str(info.value)
    assert kind in str(info.value)
    assert not path.exists()
    assert os.listdir(tmp_path) == []
    assert EXECUTED == []


def test_save_refuses_bad_top_level(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(path, {"format": "something-else"})
    with pytest.raises(CheckpointError, match="keys must be strings"):
        save_checkpoint(path, {1: "x"})  # type: ignore[dict-item]
    with pytest.raises(CheckpointError, match="mapping"):
        save_checkpoint(path, [("a", 1)])  # type: ignore[arg-type]
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(CheckpointError, match="cycle"):
        save_checkpoint(path, {"c": cyclic})
    assert os.listdir(tmp_path) == []


def test_save_accepts_torch_metadata_types(tmp_path: Path) -> None:
    payload = {
        "shape": torch.Size([2, 3]),
        "dtype": torch.float64,
        "device": torch.device("cpu"),
        "param": torch.nn.Parameter(torch.ones(2)),
        "int_keys": {0: "a", 1: "b"},
    }
    save_checkpoint(tmp_path / "c.pt", payload)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["shape"] == torch.Size([2, 3])
    assert loaded["dtype"] == torch.float64
    assert loaded["device"] == torch.device("cpu")
    assert torch.equal(loaded["param"], torch.ones(2))
    assert loaded["int_keys"] == {0: "a", 1: "b"}


# ------------------------------------------------------------------------------------------------
# check_compatible
# ------------------------------------------------------------------------------------------------


class TwoLayer(torch.nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros(hidden, 784)), torch.nn.Parameter(torch.zeros(10, hidden))]
        )
        self.bias = torch.nn.Parameter(torch.zeros(10))


def test_check_compatible_same_architecture_passes() -> None:
    saved = {k: v.double() for k, v in TwoLayer(64).state_dict().items()}  # dtype differences are fine
    check_compatible(saved, TwoLayer(64))


def test_check_compatible_width_mismatch_lists_both_shapes() -> None:
    saved = TwoLayer(1024).state_dict()
    with pytest.raises(CheckpointError) as info:
        check_compatible(saved, TwoLayer(512), what="s1")
    message = str(info.value)
    assert "s1 weight 'weights.0': checkpoint has (1024, 784), model has (512, 784)" in message
    assert "s1 weight 'weights.1': checkpoint has (10, 1024), model has (10, 512)" in message
    assert "bias" not in message
    assert info.value.hint is not None
    assert "another architecture" in info.value.hint


def test_check_compatible_missing_and_unexpected_keys() -> None:
    saved = dict(TwoLayer(8).state_dict())
    del saved["bias"]
    saved["extra"] = torch.zeros(2)
    with pytest.raises(CheckpointError) as info:
        check_compatible(saved, TwoLayer(8))
    message = str(info.value)
    assert "'bias' is missing from the checkpoint" in message
    assert "'extra' is in the checkpoint" in message
    assert "2 differences" in message


def test_check_compatible_lists_at_most_five() -> None:
    model = torch.nn.Sequential(*[torch.nn.Linear(3, 3) for _ in range(4)])  # 8 tensors
    saved = {k: torch.zeros(1) for k in model.state_dict()}
    with pytest.raises(CheckpointError) as info:
        check_compatible(saved, model)
    message = str(info.value)
    assert message.count("checkpoint has (1,)") == 5
    assert "and 3 more" in message
    assert "8 differences" in message


def test_check_compatible_refuses_non_mapping() -> None:
    with pytest.raises(CheckpointError, match="not a state_dict"):
        check_compatible([torch.zeros(1)], torch.nn.Linear(1, 1))  # type: ignore[arg-type]


_WRITER = """
import sys, torch
from eqprop.train.checkpoint import save_checkpoint
path = sys.argv[1]
weights = torch.randn(512, 512)
epoch = 0
while True:
    epoch += 1
    save_checkpoint(path, {"epoch": epoch, "w": weights * epoch, "tail": list(range(epoch % 100))})
    print(f"saved {epoch}", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX kill -9")
@pytest.mark.parametrize("delay", [0.0, 0.003, 0.011])
def test_kill_9_mid_save_never_corrupts(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "checkpoint.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == "saved 3":
                break
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    loaded = load_checkpoint(path)
    epoch = loaded["epoch"]
    assert epoch >= 3
    assert loaded["tail"] == list(range(epoch % 100))
    assert loaded["w"].shape == (512, 512)
