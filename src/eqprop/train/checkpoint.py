"""Crash-safe training checkpoints that load without executing code.

A checkpoint is one ``torch.save`` file holding a nested dict of tensors and plain data (numbers,
strings, lists, tuples, dicts, ``None``) under the key ``"format"`` = :data:`FORMAT`. Two promises:

* **Never corrupt.** :func:`save_checkpoint` writes to a temporary file in the target directory,
  fsyncs it and renames it over the target with :func:`os.replace`, so a run killed at any moment
  (even ``kill -9`` or a power cut) leaves either the previous checkpoint or the new one, complete.
* **Never execute.** :func:`load_checkpoint` reads with ``torch.load(weights_only=True)``, which
  refuses any pickled Python object other than tensors and plain data instead of running its code.
  :func:`save_checkpoint` checks the payload up front, so what it writes always loads back.

:func:`rng_state` / :func:`set_rng_state` capture and restore every global random number generator
(torch CPU and CUDA, Python's :mod:`random`, NumPy's legacy global state) in that safe form, so a
resumed run draws the same numbers as an uninterrupted one. :func:`check_compatible` explains in one
message why a saved ``state_dict`` does not fit a model.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import random
import re
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

_MISSING_HINT = "pass the run directory's checkpoint.pt, written by `eqprop train --out DIR`"
_CORRUPT_HINT = (
    "the file is truncated, corrupted or not an eqprop checkpoint; resume from an earlier "
    "checkpoint or train again"
)
_UNSAFE_HINT = (
    "eqprop never runs code stored in a checkpoint; re-create the file with "
    "eqprop.train.checkpoint.save_checkpoint, which stores tensors and plain data only"
)
_ARCH_HINT = (
    "this checkpoint belongs to another architecture; build the model from the checkpoint's own "
    "config (eqprop eval uses it automatically)"
)
_MAX_LISTED = 5

# Exact types (not subclasses: ``np.float64`` is a ``float`` subclass that weights_only refuses) that
# ``torch.load(weights_only=True)`` reads back on every supported torch version.
_SCALAR_TYPES: tuple[type, ...] = (type(None), bool, int, float, str)
_LEAF_TYPES: tuple[type, ...] = (
    *_SCALAR_TYPES,
    torch.Tensor,
    torch.nn.Parameter,
    torch.Size,
    torch.dtype,
    torch.device,
)
_SEQUENCE_TYPES: tuple[type, ...] = (list, tuple)
_MAPPING_TYPES: tuple[type, ...] = (dict, collections.OrderedDict)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WEIGHTS_ONLY_BOILERPLATE = (
    "Weights only load failed",
    "(1)",
    "(2)",
    "In PyTorch",
    "Please file an issue",
    "Check the documentation",
)


# --------------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically, adding ``"format": FORMAT``.

    The data goes to a temporary file next to ``path`` (same directory, so the rename stays on one
    file system), is flushed and fsynced, then renamed over ``path`` with :func:`os.replace`; the
    directory is fsynced afterwards (best effort) so the rename itself survives a power cut. If
    anything fails the temporary file is removed and any previous file at ``path`` is untouched.
    A new file gets the usual permissions (``0o666`` minus the umask); an overwritten one keeps its
    mode.

    Args:
        path: the checkpoint file to write, e.g. ``run/checkpoint.pt``. Its directory must exist.
        payload: a mapping with string keys whose values are, recursively, tensors, ``None``,
            ``bool``, ``int``, ``float``, ``str``, ``torch.Size``, ``torch.dtype``,
            ``torch.device``, lists, tuples and dicts — what ``torch.load(weights_only=True)``
            reads back. A ``state_dict()`` of a module, optimizer or LR scheduler qualifies, and
            so does :func:`rng_state`. The key ``"format"`` is reserved.

    Raises:
        CheckpointError: the payload holds something else (a NumPy array or scalar, an arbitrary
            object, a set, ...) — the message names its key path — or the file cannot be written
            (missing directory, permission denied, disk full).
    """
    if not isinstance(payload, Mapping):
        raise CheckpointError(
            f"checkpoint payload must be a mapping with string keys, got {type(payload).__name__}",
            hint="pass a dict such as {'model': model.state_dict(), 'epoch': 3}",
        )
    for key in payload:
        if type(key) is not str:
            raise CheckpointError(
                f"checkpoint payload keys must be strings, got key {key!r} ({type(key).__name__})",
                hint="use string keys at the top level of the payload",
            )
    if "format" in payload and payload["format"] != FORMAT:
        raise CheckpointError(
            f"checkpoint payload key 'format' is reserved, got {payload['format']!r}",
            hint=f"drop the 'format' key; save_checkpoint sets it to {FORMAT!r} itself",
        )
    _validate(payload, "payload", set())
    document: dict[str, Any] = {"format": FORMAT}
    document.update((key, value) for key, value in payload.items() if key != "format")

    target = Path(os.fspath(path))
    directory = target.parent
    if not directory.is_dir():
        raise CheckpointError(
            f"cannot write checkpoint {str(target)!r}: directory {str(directory)!r} does not exist",
            hint="create the output directory first (eqprop train --out DIR creates it)",
        )
    existing_mode: int | None = None
    with contextlib.suppress(OSError):
        existing_mode = target.stat().st_mode & 0o7777
    try:
        fd, tmp = _create_temp(directory, target.name)
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoint {str(target)!r}: {_one_line(err)}",
            hint="check that the directory is writable and the disk is not full",
        ) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if existing_mode is not None:  # keep an overwritten file's mode; a new one has 0o666 & ~umask
            with contextlib.suppress(OSError):
                os.chmod(tmp, existing_mode)
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, CheckpointError):
            raise CheckpointError(
                f"cannot write checkpoint {str(target)!r}: {_one_line(err)}",
                hint="check that the directory is writable and the disk is not full; "
                "the previous checkpoint, if any, is unchanged",
            ) from err
        raise
    _fsync_directory(directory)


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, without executing any code.

    Args:
        path: the checkpoint file.
        map_location: where to put the tensors (``"cpu"`` by default, ``"cuda:0"``, a
            ``torch.device``), or ``None`` to keep the devices they were saved from.

    Returns:
        The saved payload, a new dict that still holds ``"format": FORMAT``.

    Raises:
        CheckpointError: the file is missing, is a directory, cannot be read, is truncated or
            corrupt, is not a checkpoint, holds pickled Python objects other than tensors and plain
            data (refused without running them), or has no or another ``"format"``.
        ConfigError: ``map_location`` is not a device.
    """
    target = Path(os.fspath(path))
    location = _parse_location(map_location)
    if target.is_dir():
        candidate = target / "checkpoint.pt"
        hint = f"pass {str(candidate)!r}" if candidate.is_file() else _MISSING_HINT
        raise CheckpointError(f"checkpoint path {str(target)!r} is a directory, not a file", hint=hint)
    if not target.exists():
        raise CheckpointError(f"checkpoint file {str(target)!r} does not exist", hint=_MISSING_HINT)
    try:
        data = torch.load(target, map_location=location, weights_only=True)
    except FileNotFoundError as err:  # removed between the check and the read
        raise CheckpointError(f"checkpoint file {str(target)!r} does not exist", hint=_MISSING_HINT) from err
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise _corrupt(target, err) from err
        detail = _weights_only_detail(err)
        if "global" in detail.lower():  # a class or function reference: an object we refuse to build
            raise CheckpointError(
                f"refusing to load checkpoint {str(target)!r}: it holds pickled Python objects "
                f"other than tensors and plain data ({detail})",
                hint=_UNSAFE_HINT,
            ) from err
        raise _corrupt(target, err, detail) from err
    except PermissionError as err:
        raise CheckpointError(
            f"cannot read checkpoint {str(target)!r}: {_one_line(err)}",
            hint="check the file's permissions",
        ) from err
    except Exception as err:  # RuntimeError, EOFError, KeyError, zipfile errors, ...: not a checkpoint
        raise _corrupt(target, err) from err

    if not isinstance(data, dict):
        raise CheckpointError(
            f"file {str(target)!r} is not an eqprop checkpoint: it holds a {type(data).__name__}, not a dict",
            hint=_MISSING_HINT,
        )
    if "format" not in data:
        raise CheckpointError(
            f"file {str(target)!r} is not an eqprop checkpoint: it has no 'format' key "
            f"(keys: {_preview_keys(data)})",
            hint=_MISSING_HINT,
        )
    if data["format"] != FORMAT:
        raise CheckpointError(
            f"checkpoint {str(target)!r} has format {data['format']!r}; this eqprop reads {FORMAT!r}",
            hint="load it with the eqprop version that wrote it, or train again with this one",
        )
    return data


# --------------------------------------------------------------------------------------------------
# random number generators
# --------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Capture every global random number generator in a form :func:`save_checkpoint` accepts.

    Returns:
        A dict with ``"torch"`` (``torch.get_rng_state()``, a uint8 tensor), ``"cuda"`` (one uint8
        tensor per device when CUDA is available, else ``None``), ``"python"`` (``version``,
        ``state`` as an int64 tensor, ``gauss_next``) and ``"numpy"`` (``bit_generator``, ``key``
        as an int64 tensor, ``pos``, ``has_gauss``, ``cached_gaussian``) for NumPy's legacy global
        ``np.random`` state. Pass it to :func:`set_rng_state` to resume the exact same draws.
    """
    version, internal, gauss_next = random.getstate()
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else None,
        "python": {
            "version": int(version),
            "state": torch.tensor([int(v) for v in internal], dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next),
        },
        "numpy": {
            "bit_generator": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators captured by :func:`rng_state`.

    Tensors may live on any device (e.g. after ``load_checkpoint(map_location="cuda")``). The CUDA
    states are skipped when CUDA is unavailable; with fewer devices than were saved, the first ones
    are restored.

    Args:
        state: a dict returned by :func:`rng_state`, possibly after a save/load round trip.

    Raises:
        CheckpointError: ``state`` is not such a dict (a key is missing or a value malformed).
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"RNG state must be the dict returned by rng_state(), got {type(state).__name__}",
            hint="save rng_state() in the checkpoint and pass that entry back",
        )
    missing = [key for key in ("torch", "python", "numpy") if key not in state]
    if missing:
        raise CheckpointError(
            f"RNG state lacks key(s) {missing}; keys seen: {_preview_keys(state)}",
            hint="save rng_state() in the checkpoint and pass that entry back",
        )
    try:
        py = state["python"]
        py_state = (
            int(py["version"]),
            tuple(int(v) for v in _as_int_list(py["state"])),
            None if py["gauss_next"] is None else float(py["gauss_next"]),
        )
        nps = state["numpy"]
        np_state = (
            str(nps["bit_generator"]),
            np.asarray(_as_int_list(nps["key"]), dtype=np.uint32),
            int(nps["pos"]),
            int(nps["has_gauss"]),
            float(nps["cached_gaussian"]),
        )
        torch_state = _as_byte_tensor(state["torch"], "torch")
        cuda_states = state.get("cuda")
        cuda_list = (
            [_as_byte_tensor(s, f"cuda[{i}]") for i, s in enumerate(cuda_states)]
            if cuda_states is not None
            else []
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise CheckpointError(
            f"RNG state is malformed: {_one_line(err)}",
            hint="pass the entry saved from rng_state(), unmodified",
        ) from err
    previous = (torch.get_rng_state(), random.getstate(), np.random.get_state(legacy=True))
    try:
        torch.set_rng_state(torch_state)
        random.setstate(py_state)
        np.random.set_state(np_state)
    except (TypeError, ValueError, RuntimeError) as err:
        # A state that parsed but does not fit: put everything back so nothing changed half-way.
        torch.set_rng_state(previous[0])
        random.setstate(previous[1])
        np.random.set_state(previous[2])
        raise CheckpointError(
            f"RNG state is malformed: {_one_line(err)}",
            hint="pass the entry saved from rng_state(), unmodified",
        ) from err
    if cuda_list and torch.cuda.is_available():
        for index, cuda_state in enumerate(cuda_list[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def generator_state(gen: torch.Generator) -> torch.Tensor:
    """Return the state of a ``torch.Generator`` (a CPU uint8 tensor, safe to checkpoint).

    Args:
        gen: the generator, e.g. the one a ``DataLoader`` shuffles with.

    Returns:
        ``gen.get_state()``.
    """
    return gen.get_state()


def set_generator_state(gen: torch.Generator, state: torch.Tensor) -> None:
    """Restore a state captured by :func:`generator_state`.

    Args:
        gen: the generator to restore (same device type as the one captured).
        state: the uint8 tensor from :func:`generator_state`; any device.

    Raises:
        CheckpointError: ``state`` is not a uint8 tensor or does not fit this generator.
    """
    tensor = _as_byte_tensor(state, "generator")
    try:
        gen.set_state(tensor)
    except RuntimeError as err:
        raise CheckpointError(
            f"generator state does not fit generator on {gen.device}: {_one_line(err)}",
            hint="restore it into a generator of the same device type it was saved from",
        ) from err


# --------------------------------------------------------------------------------------------------
# compatibility
# --------------------------------------------------------------------------------------------------


def check_compatible(
    saved: Mapping[str, torch.Tensor], model: torch.nn.Module, *, what: str = "model"
) -> None:
    """Check that a saved ``state_dict`` fits ``model`` before loading it.

    Missing keys, unexpected keys and shape mismatches are reported together (up to five, then a
    count); dtype differences are allowed, since ``load_state_dict`` casts.

    Args:
        saved: the ``state_dict`` read from a checkpoint.
        model: the module it should be loaded into.
        what: a name for the module in messages, e.g. ``"s1"`` or ``"model"``.

    Raises:
        CheckpointError: ``saved`` is not a mapping, or does not match ``model.state_dict()``; the
            message lists entries such as ``s1 weight 'weights.0': checkpoint has (1024, 784),
            model has (512, 784)``.
    """
    if not isinstance(saved, Mapping):
        raise CheckpointError(
            f"{what} state in the checkpoint is a {type(saved).__name__}, not a state_dict mapping",
            hint=_ARCH_HINT,
        )
    expected = model.state_dict()
    problems: list[str] = []
    for key, value in expected.items():
        if key not in saved:
            problems.append(
                f"{what} weight {key!r} is missing from the checkpoint (model has {_describe(value)})"
            )
    for key, value in saved.items():
        if key not in expected:
            problems.append(
                f"{what} weight {key!r} is in the checkpoint ({_describe(value)}) but not in the model"
            )
    for key, value in expected.items():
        if key not in saved:
            continue
        old = saved[key]
        if isinstance(value, torch.Tensor) and isinstance(old, torch.Tensor):
            old_shape, new_shape = tuple(old.shape), tuple(value.shape)
            if old_shape != new_shape:
                problems.append(f"{what} weight {key!r}: checkpoint has {old_shape}, model has {new_shape}")
        elif isinstance(value, torch.Tensor) != isinstance(old, torch.Tensor):
            problems.append(
                f"{what} weight {key!r}: checkpoint has {_describe(old)}, model has {_describe(value)}"
            )
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED])
        more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        count = f"{len(problems)} difference" + ("s" if len(problems) != 1 else "")
        raise CheckpointError(
            f"checkpoint state does not fit the {what} ({count}): {shown}{more}", hint=_ARCH_HINT
        )


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _validate(value: Any, where: str, active: set[int]) -> None:
    """Raise CheckpointError if ``value`` holds anything weights_only loading would refuse."""
    kind = type(value)
    if kind in _LEAF_TYPES:
        return
    if kind in _SEQUENCE_TYPES or kind in _MAPPING_TYPES:
        if id(value) in active:
            raise CheckpointError(
                f"checkpoint payload contains itself at {where} (a reference cycle)",
                hint="store a copy instead of a reference to an enclosing container",
            )
        active.add(id(value))
        if kind in _MAPPING_TYPES:
            for key, item in value.items():
                if type(key) not in _SCALAR_TYPES:
                    raise CheckpointError(
                        f"checkpoint payload has a {_type_name(key)} key {key!r} in {where}; "
                        "only str, int, float, bool or None keys can be saved",
                        hint="use string or integer keys",
                    )
                _validate(item, f"{where}[{key!r}]", active)
        else:
            for index, item in enumerate(value):
                _validate(item, f"{where}[{index}]", active)
        active.discard(id(value))
        return
    raise CheckpointError(
        f"checkpoint payload holds a {_type_name(value)} at {where}; only tensors, None, bool, int, "
        "float, str, torch.Size/dtype/device, lists, tuples and dicts can be saved",
        hint="convert it first: torch.from_numpy(a) for a NumPy array, .item() for a NumPy scalar, "
        "a dict of plain fields for any other object",
    )


def _create_temp(directory: Path, name: str) -> tuple[int, str]:
    """Create a new, exclusively opened temporary file in ``directory``; return (fd, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(directory / f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name for {name!r} in {str(directory)!r}")


def _fsync_directory(directory: Path) -> None:
    """Fsync a directory so a rename in it is durable; silently skipped where unsupported."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _parse_location(map_location: str | torch.device | None) -> torch.device | None:
    """Turn ``map_location`` into a ``torch.device`` (or None), raising ConfigError if it is none."""
    if map_location is None or isinstance(map_location, torch.device):
        return map_location
    if isinstance(map_location, str):
        try:
            return torch.device(map_location)
        except RuntimeError as err:
            raise ConfigError(
                f"map_location {map_location!r} is not a device: {_one_line(err)}",
                hint="use 'cpu', 'cuda', 'cuda:0', 'mps' or None",
            ) from err
    raise ConfigError(
        f"map_location must be a device string, a torch.device or None, got {type(map_location).__name__}",
        hint="use 'cpu', 'cuda', 'cuda:0', 'mps' or None",
    )


def _corrupt(target: Path, err: BaseException, detail: str | None = None) -> CheckpointError:
    """The error for a file torch.load could not parse; ``detail`` replaces ``err``'s first line."""
    try:
        with open(target, "rb") as handle:
            head = handle.read(4)
    except OSError:
        head = b"?"
    underlying = f"{type(err).__name__}: {detail}" if detail is not None else _one_line(err)
    if not head:
        reason = "the file is empty (0 bytes)"
    elif head != b"PK\x03\x04":  # torch.save has written zip archives since torch 1.6
        reason = f"not a PyTorch checkpoint, no zip header ({underlying})"
    else:
        reason = underlying
    return CheckpointError(f"cannot read checkpoint {str(target)!r}: {reason}", hint=_CORRUPT_HINT)


def _one_line(err: BaseException) -> str:
    """``Type: first line of the message``, without terminal colour codes."""
    text = _ANSI.sub("", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    first = lines[0]
    if len(first) > 160 and ". " in first:  # torch appends paragraphs of advice; keep the first sentence
        first = first.split(". ", 1)[0]
    return f"{type(err).__name__}: {first}"


def _weights_only_detail(err: BaseException) -> str:
    """The line of torch's weights_only error that says what was refused, without the boilerplate."""
    text = _ANSI.sub("", str(err))
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(_WEIGHTS_ONLY_BOILERPLATE):
            continue
        return stripped.split(". Please use")[0].rstrip(".")
    return "rejected by torch.load(weights_only=True)"


def _as_byte_tensor(value: Any, name: str) -> torch.Tensor:
    """A CPU uint8 tensor from a saved generator state, or CheckpointError."""
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8:
        raise CheckpointError(
            f"{name} RNG state must be a uint8 tensor, got {_describe(value)}",
            hint="pass the state captured by rng_state() / generator_state(), unmodified",
        )
    return value.detach().to("cpu").contiguous()


def _as_int_list(value: Any) -> list[int]:
    """A list of ints from a saved tensor or sequence."""
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.detach().to("cpu").reshape(-1).tolist()]
    if isinstance(value, list | tuple):
        return [int(v) for v in value]
    raise TypeError(f"expected a tensor or list of ints, got {type(value).__name__}")


def _describe(value: Any) -> str:
    """``shape (3, 4)`` for a tensor, ``a str`` otherwise."""
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    return f"a {type(value).__name__}"


def _type_name(value: Any) -> str:
    """Qualified type name, e.g. ``numpy.ndarray``."""
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _preview_keys(data: Mapping[Any, Any]) -> str:
    """The first few keys of a mapping, for messages."""
    keys = [repr(k) for k in list(data)[:8]]
    suffix = ", ..." if len(data) > 8 else ""
    return "[" + ", ".join(keys) + suffix + "]" if keys else "none"
