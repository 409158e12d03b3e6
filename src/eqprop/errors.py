"""The exceptions eqprop raises for problems a user can fix.

Every message says what is wrong and the value seen; ``hint`` says what to do. The CLI prints
``eqprop: error: <message>`` and ``hint: <hint>`` and exits 2 instead of showing a traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvergenceError",
    "DataError",
    "DivergenceError",
    "EqpropError",
    "Interrupted",
]


class EqpropError(Exception):
    """Base class of every error eqprop raises on purpose.

    Args:
        message: what is wrong, with the offending value.
        hint: what to do about it (optional).
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(EqpropError, ValueError):
    """A bad argument, preset, override or shape."""


class DataError(EqpropError, OSError):
    """A dataset file that is missing, truncated or corrupt."""


class CheckpointError(EqpropError, OSError):
    """A checkpoint that cannot be read, or belongs to another architecture."""


class ConvergenceError(EqpropError, RuntimeError):
    """A relaxation that did not reach its tolerance."""


class DivergenceError(ConvergenceError):
    """A relaxation whose state or energy became non-finite."""


class Interrupted(EqpropError):  # noqa: N818  (a stop on request, not a failure)
    """A run stopped on request (SIGTERM or Ctrl-C) after finishing its current step and saving a checkpoint.

    Attributes:
        status: the conventional exit status, 128 + the signal's number (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, message: str, hint: str | None = None, *, status: int) -> None:
        super().__init__(message, hint)
        self.status = status
