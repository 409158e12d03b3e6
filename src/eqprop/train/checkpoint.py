"""Crash-safe training checkpoints that load without executing code.

A checkpoint is one ``torch.save`` zip archive holding a dict of tensors and plain data with
``"format": FORMAT``. :func:`save_checkpoint` writes a temporary file and renames it over the target,
so a run killed at any moment leaves the previous checkpoint or the new one, complete;
:func:`load_checkpoint` reads with ``torch.load(weights_only=True)``, which refuses pickled Python
objects instead of running their code. :func:`rng_state` / :func:`set_rng_state` capture and restore
every global random number generator, so a resumed run draws the same numbers.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import random
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eqprop.errors import CheckpointError, ConfigError

__all__ = [
    "FORMAT",
    "check_compatible",
    "generator_state",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_generator_state",
    "set_rng_state",
]

FORMAT = "eqprop-checkpoint/1"
"""The value of the ``"format"`` key in every checkpoint this version writes and reads."""

_ZIP_HEADER = b"PK\x03\x04"  # torch.save has written zip archives since torch 1.6
_MISSING_HINT = "pass the run directory's checkpoint.pt, written by `eqprop train --out DIR`"
_CORRUPT_HINT = (
    "the file is truncated, corrupted or not an eqprop checkpoint; resume from an earlier "
    "checkpoint or train again"
)
_RNG_HINT = "pass the state saved from rng_state() / generator_state(), unmodified"
_ARCH_HINT = (
    "this checkpoint belongs to another architecture; build the model from the checkpoint's own "
    "config (eqprop eval uses it automatically)"
)
_MAX_LISTED = 5
# Exact types (np.float64 subclasses float, yet weights_only refuses it) that weights_only reads back.
_KEY_TYPES: tuple[type, ...] = (type(None), bool, int, float, str)
_LEAF_TYPES = (*_KEY_TYPES, torch.Tensor, torch.nn.Parameter, torch.Size, torch.dtype, torch.device)
_CONTAINER_TYPES: tuple[type, ...] = (list, tuple, dict, collections.OrderedDict)


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Write ``payload`` plus ``"format": FORMAT`` to ``path`` atomically.

    The data goes to a temporary file beside ``path``, is fsynced and renamed over ``path`` with
    :func:`os.replace`, then the directory is fsynced (best effort). On any failure the temporary
    file is removed and a previous checkpoint is untouched; an overwritten file keeps its mode.

    Args:
        path: the file to write, e.g. ``run/checkpoint.pt``; its directory must exist.
        payload: string keys to tensors, ``None``, ``bool``, ``int``, ``float``, ``str``,
            ``torch.Size``/``dtype``/``device``, and lists, tuples and dicts of these (so any
            ``state_dict()`` and :func:`rng_state`). The key ``"format"`` is reserved.

    Raises:
        CheckpointError: the payload holds anything else (the message names its key path), or the
            file cannot be written (missing directory, permission denied, disk full).
    """
    if not isinstance(payload, Mapping) or any(type(key) is not str for key in payload):
        got = f"keys {list(payload)[:8]}" if isinstance(payload, Mapping) else f"a {type(payload).__name__}"
        raise CheckpointError(
            f"checkpoint payload must be a mapping and its keys must be strings, got {got}",
            hint="pass a dict such as {'model': model.state_dict(), 'epoch': 3}",
        )
    if payload.get("format", FORMAT) != FORMAT:
        raise CheckpointError(
            f"checkpoint payload key 'format' is reserved, got {payload['format']!r}",
            hint=f"drop the 'format' key; save_checkpoint sets it to {FORMAT!r} itself",
        )
    _validate(payload, "payload", set())
    target = Path(os.fspath(path))
    if not target.parent.is_dir():
        raise CheckpointError(
            f"cannot write checkpoint {str(target)!r}: directory {str(target.parent)!r} does not exist",
            hint="create the output directory first (eqprop train --out DIR creates it)",
        )
    old_mode: int | None = None
    with contextlib.suppress(OSError):
        old_mode = target.stat().st_mode & 0o7777
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd: int | None = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if old_mode is not None:
            with contextlib.suppress(OSError):
                os.chmod(tmp, old_mode)
        os.replace(tmp, target)
    except BaseException as err:
        if fd is not None:  # the temporary file exists: ours to remove
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        # The payload was checked above: a RuntimeError is torch.save's report of a failed write (a full disk)
        if isinstance(err, OSError | RuntimeError):
            raise CheckpointError(
                f"cannot write checkpoint {str(target)!r}: {_first_line(err)}",
                hint="check that the directory is writable and the disk is not full; "
                "the previous checkpoint, if any, is unchanged",
            ) from err
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, without executing any code.

    Args:
        path: the checkpoint file.
        map_location: where to put the tensors (``"cpu"``, ``"cuda:0"``, a ``torch.device``), or
            ``None`` to keep the devices they were saved from.

    Returns:
        The saved payload, a new dict that still holds ``"format": FORMAT``.

    Raises:
        CheckpointError: the file is missing, a directory, unreadable, empty, truncated or corrupt,
            holds pickled objects other than tensors and plain data (refused, never run), or is not
            a checkpoint of this format.
        ConfigError: ``map_location`` is not a device.
    """
    target = Path(os.fspath(path))
    name = repr(str(target))
    if isinstance(map_location, str):
        with contextlib.suppress(RuntimeError):
            map_location = torch.device(map_location)
    if not (map_location is None or isinstance(map_location, torch.device)):
        raise ConfigError(
            f"map_location {map_location!r} is not a device string, a torch.device or None",
            hint="use 'cpu', 'cuda', 'cuda:0', 'mps' or None",
        )
    if target.is_dir():
        inside = target / "checkpoint.pt"
        hint = f"pass {str(inside)!r}" if inside.is_file() else _MISSING_HINT
        raise CheckpointError(f"checkpoint path {name} is a directory, not a file", hint=hint)
    try:
        with open(target, "rb") as handle:
            head = handle.read(len(_ZIP_HEADER))
    except OSError as err:
        raise _unreadable(name, err) from err
    if head != _ZIP_HEADER:
        reason = "the file is empty (0 bytes)" if not head else "not a PyTorch checkpoint (no zip header)"
        raise CheckpointError(f"cannot read checkpoint {name}: {reason}", hint=_CORRUPT_HINT)
    try:
        data = torch.load(target, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError) as err:  # changed since the probe above
        raise _unreadable(name, err) from err
    except pickle.UnpicklingError as err:  # an intact zip whose pickle weights_only refused to build
        raise CheckpointError(
            f"refusing to load checkpoint {name}: it holds pickled Python objects other than "
            "tensors and plain data",
            hint="eqprop never runs code stored in a checkpoint; re-create the file with "
            "eqprop.train.checkpoint.save_checkpoint, which stores tensors and plain data only",
        ) from err
    except Exception as err:  # OSError, RuntimeError, EOFError, ...: a truncated or damaged archive
        raise CheckpointError(
            f"cannot read checkpoint {name}: the zip archive is truncated or damaged ({type(err).__name__})",
            hint=_CORRUPT_HINT,
        ) from err
    if not isinstance(data, dict) or "format" not in data:
        problem = (
            f"it has no 'format' key (keys: {list(data)[:8]})"
            if isinstance(data, dict)
            else f"it holds a {type(data).__name__}, not a dict"
        )
        raise CheckpointError(f"file {name} is not an eqprop checkpoint: {problem}", hint=_MISSING_HINT)
    if data["format"] != FORMAT:
        raise CheckpointError(
            f"checkpoint {name} has format {data['format']!r}; this eqprop reads {FORMAT!r}",
            hint="load it with the eqprop version that wrote it, or train again with this one",
        )
    return data


def rng_state() -> dict[str, Any]:
    """Capture every global random number generator in a form :func:`save_checkpoint` accepts.

    Returns:
        ``{"torch": uint8 tensor, "cuda": [uint8 tensor per device] or None, "python": {...},
        "numpy": {...}}`` — Python's :mod:`random` and NumPy's legacy global state with their
        integer arrays as int64 tensors. :func:`set_rng_state` restores it.
    """
    version, internal, gauss_next = random.getstate()
    bit_generator, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else None,
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next),
        },
        "numpy": {
            "bit_generator": str(bit_generator),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators captured by :func:`rng_state`.

    Tensors may be on any device. CUDA states are skipped without CUDA; with fewer devices than
    were saved, the first ones are restored.

    Raises:
        CheckpointError: ``state`` is not such a dict (a key missing, a value malformed); the
            generators are then left as they were.
    """
    keys = list(state) if isinstance(state, Mapping) else []
    missing = [key for key in ("torch", "python", "numpy") if key not in keys]
    if missing:
        got = keys[:8] if isinstance(state, Mapping) else f"a {type(state).__name__}"
        raise CheckpointError(
            f"RNG state must be the dict from rng_state(); it lacks key(s) {missing} (got {got})",
            hint=_RNG_HINT,
        )
    previous = (torch.get_rng_state(), random.getstate(), np.random.get_state(legacy=True))
    try:
        py, nps = state["python"], state["numpy"]
        cuda_states = [_as_byte_tensor(s, f"cuda[{i}]") for i, s in enumerate(state.get("cuda") or [])]
        torch.set_rng_state(_as_byte_tensor(state["torch"], "torch"))
        gauss_next = None if py["gauss_next"] is None else float(py["gauss_next"])
        random.setstate((int(py["version"]), tuple(_ints(py["state"])), gauss_next))
        rest = (int(nps["pos"]), int(nps["has_gauss"]), float(nps["cached_gaussian"]))
        np.random.set_state((str(nps["bit_generator"]), np.asarray(_ints(nps["key"]), np.uint32), *rest))
    except (CheckpointError, KeyError, TypeError, ValueError, OverflowError, RuntimeError) as err:
        torch.set_rng_state(previous[0])  # undo whatever was applied before the bad value
        random.setstate(previous[1])
        np.random.set_state(previous[2])
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"RNG state is malformed: {_first_line(err)}", hint=_RNG_HINT) from err
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def generator_state(gen: torch.Generator) -> torch.Tensor:
    """``gen.get_state()``: a CPU uint8 tensor, safe to checkpoint (e.g. the data order's generator)."""
    return gen.get_state()


def set_generator_state(gen: torch.Generator, state: torch.Tensor) -> None:
    """Restore into ``gen`` (of the device type it was captured from) a :func:`generator_state` tensor.

    Raises:
        CheckpointError: ``state`` is not a uint8 tensor or does not fit this generator.
    """
    tensor = _as_byte_tensor(state, "generator")
    try:
        gen.set_state(tensor)
    except RuntimeError as err:
        raise CheckpointError(
            f"generator state does not fit generator on {gen.device}: {_first_line(err)}",
            hint="restore it into a generator of the same device type it was saved from",
        ) from err


def check_compatible(
    saved: Mapping[str, torch.Tensor], model: torch.nn.Module, *, what: str = "model"
) -> None:
    """Check that a saved ``state_dict`` fits ``model`` before loading it.

    Missing keys, unexpected keys and shape mismatches are reported together (five, then a count);
    dtypes may differ, since ``load_state_dict`` casts.

    Raises:
        CheckpointError: ``saved`` is not a mapping or does not match ``model.state_dict()``, with
            entries such as ``system weight 'weights.0': checkpoint has (1024, 784), model has (512, 784)``
            (``what`` names the module).
    """
    if not isinstance(saved, Mapping):
        raise CheckpointError(
            f"{what} state in the checkpoint is a {type(saved).__name__}, not a state_dict mapping",
            hint=_ARCH_HINT,
        )
    expected = model.state_dict()
    problems = [
        f"{what} weight {key!r} is missing from the checkpoint (model has {_describe(new)})"
        for key, new in expected.items()
        if key not in saved
    ]
    problems += [
        f"{what} weight {key!r} is in the checkpoint ({_describe(old)}) but not in the model"
        for key, old in saved.items()
        if key not in expected
    ]
    for key, new in expected.items():
        old, label = saved.get(key), f"{what} weight {key!r}"
        if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
            if old.shape != new.shape:
                problems.append(f"{label}: checkpoint has {tuple(old.shape)}, model has {tuple(new.shape)}")
        elif key in saved and isinstance(old, torch.Tensor) != isinstance(new, torch.Tensor):
            problems.append(f"{label}: checkpoint has {_describe(old)}, model has {_describe(new)}")
    if problems:
        count = f"{len(problems)} difference" + ("s" if len(problems) != 1 else "")
        more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        shown = "; ".join(problems[:_MAX_LISTED])
        raise CheckpointError(
            f"checkpoint state does not fit the {what} ({count}): {shown}{more}", hint=_ARCH_HINT
        )


def _validate(value: Any, where: str, active: set[int]) -> None:
    """Raise CheckpointError naming the key path if ``value`` holds what weights_only refuses."""
    if type(value) in _LEAF_TYPES:
        return
    if type(value) not in _CONTAINER_TYPES:
        raise CheckpointError(
            f"checkpoint payload holds a {_type_name(value)} at {where}; only tensors, None, bool, int, "
            "float, str, torch.Size/dtype/device, lists, tuples and dicts can be saved",
            hint="convert it first: torch.from_numpy(a) for a NumPy array, .item() for a NumPy scalar, "
            "a dict of plain fields for any other object",
        )
    if id(value) in active:
        raise CheckpointError(
            f"checkpoint payload contains itself at {where} (a reference cycle)",
            hint="store a copy instead of a reference to an enclosing container",
        )
    active.add(id(value))
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        if type(key) not in _KEY_TYPES:
            raise CheckpointError(
                f"checkpoint payload has a {_type_name(key)} key {key!r} in {where}; "
                "only str, int, float, bool or None keys can be saved",
                hint="use string or integer keys",
            )
        _validate(item, f"{where}[{key!r}]", active)
    active.discard(id(value))


def _unreadable(name: str, err: OSError) -> CheckpointError:
    """The error for a checkpoint file that cannot be opened."""
    if isinstance(err, FileNotFoundError | NotADirectoryError):
        return CheckpointError(f"checkpoint file {name} does not exist", hint=_MISSING_HINT)
    hint = "check that the path is right and the file is readable (its permissions)"
    return CheckpointError(f"cannot read checkpoint {name}: {_first_line(err)}", hint=hint)


def _first_line(err: BaseException) -> str:
    """``Type: reason`` — an OSError's ``strerror``, else the first line of the message."""
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    lines = text.strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _as_byte_tensor(value: Any, name: str) -> torch.Tensor:
    """A CPU uint8 tensor from a saved generator state, or CheckpointError."""
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8:
        raise CheckpointError(
            f"{name} RNG state must be a uint8 tensor, got {_describe(value)}", hint=_RNG_HINT
        )
    return value.detach().to("cpu").contiguous()


def _ints(value: Any) -> list[int]:
    """A list of ints from a saved tensor or sequence (TypeError or ValueError otherwise)."""
    return [int(v) for v in (value.tolist() if isinstance(value, torch.Tensor) else value)]


def _describe(value: Any) -> str:
    """``shape (3, 4) float32`` for a tensor, ``a str`` otherwise."""
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}"
    return f"shape {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"


def _type_name(value: Any) -> str:  # e.g. numpy.ndarray, or set for a builtin
    return f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
