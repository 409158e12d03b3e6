"""A run folder: what `eqprop train --out DIR` writes, and how a stored run is read back.

``DIR/config.json`` (the resolved settings), ``DIR/metrics.jsonl`` (one line per epoch), ``DIR/checkpoint.pt``
(written atomically after every epoch) and ``DIR/summary.json``. A stored run keeps its settings; only where it
runs may change when it is resumed or evaluated (:data:`WHERE_IT_RUNS`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
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
    "append_line",
    "load_run",
    "read_checkpoint",
    "relocate",
    "write_json",
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
    """Append one JSON line to ``path`` and make it durable."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_history(out: Path) -> list[dict[str, Any]]:
    """The per-epoch records of the run in ``out`` (``metrics.jsonl``; empty if there is none)."""
    path = out / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
