"""When a run saves itself and stops: the cadence of step-level checkpoints, and clean stops on SIGTERM or
Ctrl-C (the loop finishes its step, saves a checkpoint and says how to resume; a second Ctrl-C stops at once,
and the last checkpoint, written atomically, stays intact)."""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType, TracebackType

from eqprop.errors import ConfigError

__all__ = ["Cadence", "StopRequests"]


@dataclass(frozen=True)
class Cadence:
    """How often a run saves a checkpoint within an epoch: every ``steps`` steps or ``seconds`` seconds."""

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, every: int | str | None) -> Cadence:
        """``None`` (epochs only), an int or digits (steps), or a time: ``"90s"``, ``"10m"``, ``"1h"``."""
        if every is None:
            return cls()
        text = str(every).strip()
        units = {"s": 1.0, "m": 60.0, "h": 3600.0}
        try:
            if isinstance(every, int) or text.isdigit():
                steps = int(text)
                if steps >= 1:
                    return cls(steps=steps)
            elif text[-1:] in units and float(text[:-1]) > 0:
                return cls(seconds=float(text[:-1]) * units[text[-1]])
        except ValueError:
            pass
        raise ConfigError(
            f"--checkpoint-every {every!r}: give a number of steps (e.g. 500) or a time (90s, 10m, 1h)"
        )

    def due(self, step: int, since: float) -> bool:
        """Whether a checkpoint is due after global ``step``, ``since`` seconds after the last one."""
        if self.steps is not None:
            return step % self.steps == 0
        return self.seconds is not None and since >= self.seconds


class StopRequests:
    """While active (``with StopRequests() as stops: ...``), SIGTERM and SIGINT do not stop the process: they
    set :attr:`signal`, which the training loop reads after every step. A second SIGINT (or SIGTERM) restores the
    usual behaviour at once: Ctrl-C then raises ``KeyboardInterrupt`` where the process is. Outside the main
    thread (where Python cannot install handlers) nothing changes."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._request)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

    def _request(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # asked twice: stop now
            self._restore()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.signal = signum
        name = signal.Signals(signum).name
        print(
            f"eqprop: {name} received: finishing the current step, then saving a checkpoint "
            "(Ctrl-C again stops at once)",
            file=sys.stderr,
            flush=True,
        )

    @property
    def status(self) -> int:
        """The conventional exit status for the signal received (128 + its number)."""
        return 128 + int(self.signal or signal.SIGTERM)  # a process told by another (data parallel): SIGTERM
