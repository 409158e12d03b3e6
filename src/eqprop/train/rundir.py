"""A run folder: what `eqprop train --out DIR` writes, and how a stored run is read back.

``DIR/config.json`` (the resolved settings), ``DIR/metrics.jsonl`` (one line per epoch), ``DIR/checkpoint.pt``
(written atomically after every epoch, and every ``--checkpoint-every`` steps or minutes) and
``DIR/summary.json``. While a run writes into its folder it holds ``DIR/.lock`` (:class:`RunLock`), so that a
second run into the same folder is refused. A stored run keeps its settings; only where it runs may change when
it is resumed or evaluated (:data:`WHERE_IT_RUNS`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from eqprop.errors import CheckpointError, ConfigError
from eqprop.train.build import CONFIG_VERSION, Run, build
from eqprop.train.checkpoint import load_checkpoint
from eqprop.train.config import RunConfig, config_from_dict
from eqprop.train.legacy import upgrade_config

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "METRICS",
    "SUMMARY",
    "WHERE_IT_RUNS",
    "RunLock",
    "append_line",
    "check_new_out",
    "load_run",
    "read_checkpoint",
    "relocate",
    "write_json",
    "write_lines",
]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.json"

WHERE_IT_RUNS = ("train.epochs", "train.device", "train.threads", "data.data_dir")
"""The settings of a stored run that may change when it is resumed or evaluated: the epoch budget (not below
the epochs done), the device and threads, and where the data files are. Everything else is the run's own."""


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[RunConfig, dict[str, Any]]:
    """``(config, checkpoint)`` from a run folder or a checkpoint file; a config stored by an older eqprop is
    read as today's (:mod:`eqprop.train.legacy`).

    Raises:
        CheckpointError: no readable checkpoint, or no valid run config in it.
    """
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    ckpt = load_checkpoint(p)
    try:
        version = int(ckpt.get("config_version", 1))
        config = config_from_dict(upgrade_config(ckpt["config"], version))
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise CheckpointError(
            f"{p}: the checkpoint holds no valid run config ({err})",
            hint="pass the checkpoint of an `eqprop train` run",
        ) from err
    if version > CONFIG_VERSION:
        raise CheckpointError(
            f"{p}: the checkpoint's config has version {version}; this eqprop reads up to {CONFIG_VERSION}",
            hint="use the eqprop version that wrote it",
        )
    return config, ckpt


def relocate(
    config: RunConfig,
    *,
    epochs: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    data_dir: str | None = None,
) -> RunConfig:
    """``config`` run elsewhere: the settings of :data:`WHERE_IT_RUNS` that are given replace the stored ones."""
    train = {k: v for k, v in (("epochs", epochs), ("device", device), ("threads", threads)) if v is not None}
    data = {"data_dir": data_dir} if data_dir is not None else {}
    return dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, **train),
        data=dataclasses.replace(config.data, **data),
    )


def load_run(
    path: str | os.PathLike[str],
    *,
    device: str | None = None,
    data_dir: str | None = None,
    dtype: Literal["float32", "float64"] | None = None,
) -> Run:
    """The run stored at ``path`` (a run folder or its checkpoint), rebuilt from its own config and restored,
    on ``device`` (default: the run's) with its data read from ``data_dir`` (default: the run's); ``dtype``
    (default: the run's) casts the restored weights, e.g. to float64 for a gradient check."""
    config, ckpt = read_checkpoint(path)
    config = relocate(config, device=device, data_dir=data_dir)
    if dtype is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, dtype=dtype))
    run = build(config)
    run.restore(ckpt)
    return run


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` and make it durable.

    Raises:
        CheckpointError: the file cannot be written (e.g. the disk is full).
    """
    try:
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise _unwritable(path, err) from err


def write_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` to ``path`` as JSON lines, replacing it atomically.

    Raises:
        CheckpointError: the file cannot be written (e.g. the disk is full); the previous one is unchanged.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _unwritable(path, err) from err


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it).

    Raises:
        CheckpointError: the file cannot be written (e.g. the disk is full); the previous one is unchanged.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _unwritable(path, err) from err


def _unwritable(path: Path, err: OSError) -> CheckpointError:
    return CheckpointError(
        f"cannot write {path}: {err.strerror or err}",
        hint="check that the folder is writable and the disk is not full",
    )


def check_new_out(out: Path) -> None:
    """Refuse ``out`` for a new run: a file, a folder holding a run, or a folder holding files a run would
    overwrite (someone's own ``config.json``, or a run that stopped before its first checkpoint).

    Raises:
        ConfigError: with what is there and what to do.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder", hint="choose a folder for the run")
    if (out / CHECKPOINT).exists():
        raise ConfigError(
            f"{out} already holds a run ({CHECKPOINT})",
            hint=f"continue it with --resume {out}, or choose another --out",
        )
    ours = [name for name in (CONFIG, METRICS, SUMMARY) if (out / name).exists()]
    if ours:
        raise ConfigError(
            f"{out} holds {', '.join(ours)} but no {CHECKPOINT}: a run that stopped before its first checkpoint, "
            "or files that are not eqprop's; a new run would overwrite them",
            hint="choose another --out, or delete those files",
        )


class RunLock:
    """Held while a run writes into ``out`` (``with RunLock(out): ...``): a second writer is refused.

    The lock is ``fcntl.flock`` on ``out/.lock``, which the kernel releases when the process ends, however it
    ends (``kill -9`` included): a crashed run never leaves the folder locked (its ``.lock`` file may stay
    behind, harmless: the next run takes it over). The file records the holder (pid, host, start time) for the
    refusal's message; a run that ends removes it. Locks are per machine: two hosts writing into one folder on a
    network file system are not stopped. On entry, temporary files a killed writer left behind
    (``.checkpoint.pt.*.tmp``, ``.config.json.tmp``) are removed: the lock holder is the only writer.

    Raises:
        ConfigError: ``out`` cannot be created or written, or another run holds it.
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        path = self.out / ".lock"
        while True:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise ConfigError(
                    f"cannot write into {self.out}: {err.strerror or err}",
                    hint="choose a folder you can write to (--out)",
                ) from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise ConfigError(
                    f"{self.out} is in use by another run ({holder})",
                    hint="wait for it to finish, or choose another --out",
                ) from None
            try:  # the holder before us removes the file as it leaves: lock the file that is there now
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode())
        self._fd = fd
        for pattern in (f".{CHECKPOINT}.*.tmp", f".{CONFIG}.tmp", f".{SUMMARY}.tmp", f".{METRICS}.tmp"):
            for stale in self.out.glob(pattern):  # left by a writer killed mid-write
                stale.unlink(missing_ok=True)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            (self.out / ".lock").unlink(missing_ok=True)  # still ours: removed before the lock is let go
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def read_history(out: Path) -> list[dict[str, Any]]:
    """The per-epoch records of the run in ``out`` (``metrics.jsonl``; empty if there is none)."""
    path = out / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
