"""What a training run logs to TensorBoard (``OUT/tensorboard/``), without a host sync per step.

Every step: the training loss and accuracy, the sweeps of each relaxation, the rule's own metrics (e.g. each
phase's final residual) and the learning rates. Every ``diagnostics_every`` steps: each phase's energy, the
fraction of saturated units per layer, and per parameter tensor its norm, its gradient's norm and the norm of the
update the optimizer made, and the system's own diagnostics (e.g. the angle between forward and backward weights).
Every ``probe_every`` steps: the cosine between the rule's estimate and the implicit-differentiation gradient on a
fixed probe batch. A system without an energy (``has_energy`` False) logs neither energies nor probes. Values stay on the device until a flush (every
``train.log_every`` steps and at every checkpoint), which reads them in one transfer and writes one event per
step with tensorboard's own record format.

Tags: ``train/loss``, ``train/accuracy``, ``relaxation/<phase>/sweeps``, ``relaxation/<phase>/energy``,
``rule/<metric>[/<i>]``, ``lr/<parameter>``, ``saturation/<variable>``, ``norm/<parameter>``,
``grad_norm/<parameter>``, ``update_norm/<parameter>``, ``system/<diagnostic>``, ``probe/cosine_to_implicit``; ``<phase>`` is 0 for the
free phase, then 1, 2 for the nudged (or clamped) ones in the rule's order.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from eqprop.errors import ConfigError
from eqprop.rules.base import Estimate
from eqprop.rules.reference import reference_gradient
from eqprop.train.build import Run

__all__ = ["Monitor", "Monitoring"]

FOLDER = "tensorboard"
DIAGNOSTICS_EVERY = 250
"""Default steps between diagnostics (energies, saturation, norms): each costs a few passes over the weights."""


@dataclass(frozen=True)
class Monitoring:
    """How much a run logs (none of it changes what the run learns).

    Args:
        tensorboard: write the event files at all.
        diagnostics_every: steps between the costlier diagnostics (energies, saturation, norms); None:
            :data:`DIAGNOSTICS_EVERY`.
        probe_every: steps between gradient-agreement probes (0: never; each costs a few relaxations and an
            implicit differentiation of ``probe_batch`` examples).
        probe_batch: examples in the fixed probe batch (the first of the test split).
    """

    tensorboard: bool = True
    diagnostics_every: int | None = None
    probe_every: int = 1000
    probe_batch: int = 32

    def __post_init__(self) -> None:
        if self.diagnostics_every is not None and self.diagnostics_every < 1:
            raise ConfigError(f"diagnostics_every = {self.diagnostics_every}: must be >= 1")
        if self.probe_every < 0 or self.probe_batch < 1:
            raise ConfigError(
                f"probe_every = {self.probe_every}, probe_batch = {self.probe_batch}: need probe_every >= 0 "
                "(0: never) and probe_batch >= 1"
            )


def _masked_crc(data: bytes) -> bytes:
    """The masked CRC-32C of TFRecord files (google-crc32c's C code: tensorboard's own is pure Python, about
    60 µs per event, more than the rest of the logging together)."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


class _EventFile:
    """One TensorBoard event file: TFRecord framing (length, its CRC, the serialised ``Event``, its CRC),
    written synchronously, no writer thread."""

    def __init__(self, folder: Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.eqprop"
        self._file = (folder / name).open("wb")
        self._event = Event
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + _masked_crc(header) + data + _masked_crc(data))

    def restart(self, step: int) -> None:
        """A run resumed at ``step``: TensorBoard drops what an earlier process logged from ``step`` on."""
        from tensorboard.compat.proto.event_pb2 import SessionLog

        self._write(
            self._event(step=step, wall_time=time.time(), session_log=SessionLog(status=SessionLog.START))
        )

    def scalars(self, step: int, values: dict[str, float], wall_time: float) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
        self._write(self._event(step=step, wall_time=wall_time, summary=summary))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Monitor:
    """Collects a run's per-step values on the device and writes them to TensorBoard at each flush.

    The training loop calls :meth:`before_update` before the optimizer's step, :meth:`step` after it, and
    :meth:`flush` at its log interval and checkpoints; :meth:`close` at the end.
    """

    def __init__(
        self, run: Run, out: Path, monitoring: Monitoring, probe: tuple[Tensor, Tensor], step: int
    ) -> None:
        self.run = run
        self.monitoring = monitoring
        self.every = monitoring.diagnostics_every or DIAGNOSTICS_EVERY
        self._file = _EventFile(out / FOLDER)
        if step > 0:
            self._file.restart(step + 1)
        self._probe = probe
        self._lr_tags = [f"lr/{g.get('name', i)}" for i, g in enumerate(run.optimizer.param_groups)]
        self._tags: dict[tuple[int, tuple[str, ...]], list[str]] = {}
        # per step: (step, wall time, the tensors, the tags of the tensors' values, the plain values and tags)
        self._pending: list[tuple[int, float, list[Tensor], list[str], list[float], list[str]]] = []
        self._before: dict[str, Tensor] | None = None

    def before_update(self, step: int) -> None:
        """Keep the parameters when ``step`` is a diagnostic step (for the norm of the optimizer's update)."""
        if step % self.every == 0:
            self._before = {n: p.detach().clone() for n, p in self.run.system.named_parameters()}

    def _step_tags(self, phases: int, metrics: dict[str, Tensor]) -> list[str]:
        """The tags of a step's tensors (loss, hits, the rule's metrics value by value), cached per shape."""
        key = (phases, tuple(f"{k}:{v.numel()}" for k, v in metrics.items()))
        tags = self._tags.get(key)
        if tags is None:
            tags = ["train/loss", "train/hits"]
            for k, v in metrics.items():
                n = v.numel()
                tags += [f"rule/{k}"] if n == 1 else [f"rule/{k}/{i}" for i in range(n)]
            tags += [f"relaxation/{i}/sweeps" for i in range(phases)]
            self._tags[key] = tags
        return tags

    @torch.no_grad()
    def step(self, step: int, est: Estimate, loss: Tensor, hits: Tensor, batch: int) -> None:
        """Record step ``step``: ``est`` the rule's estimate, ``loss`` the batch's mean cost and ``hits`` its
        correct predictions (in a data-parallel run, the whole batch's; ``est`` is this process's share)."""
        run = self.run
        tensors = [loss, hits, *est.metrics.values()]
        step_tags = self._step_tags(len(est.phases), est.metrics)
        plain = [float(eq.stats.iterations) for eq in est.phases]
        plain += [float(g["lr"]) for g in run.optimizer.param_groups]
        plain.append(float(batch))
        plain_tags = [*step_tags[len(step_tags) - len(est.phases) :], *self._lr_tags, "train/batch"]
        tags = step_tags[: len(step_tags) - len(est.phases)]
        if step % self.every == 0:
            tags = list(tags)
            if run.system.has_energy:
                for i, eq in enumerate(est.phases):
                    tensors.append(eq.energy.mean())
                    tags.append(f"relaxation/{i}/energy")
            for key, value in run.system.diagnostics().items():
                tensors.append(value)
                tags.append(f"system/{key}")
            if est.phases:
                masks = run.system.active_mask(est.phases[0].state)
                for v, m in zip(run.system.variables, masks, strict=True):
                    if v.bounded:
                        tensors.append(1.0 - m.float().mean())
                        tags.append(f"saturation/{v.name}")
            for n, p in run.system.named_parameters():
                tensors.append(torch.linalg.vector_norm(p))
                tags.append(f"norm/{n}")
                if p.grad is not None:
                    tensors.append(torch.linalg.vector_norm(p.grad))
                    tags.append(f"grad_norm/{n}")
                if self._before is not None:
                    tensors.append(torch.linalg.vector_norm(p - self._before[n]))
                    tags.append(f"update_norm/{n}")
            self._before = None
        m = self.monitoring
        if (
            m.probe_every and step % m.probe_every == 0 and run.system.has_energy
        ):  # needs the energy's Hessian
            tags = [*tags, "probe/cosine_to_implicit"]
            tensors.append(self._agreement())
        self._pending.append((step, time.time(), tensors, tags, plain, plain_tags))

    def _agreement(self) -> Tensor:
        """Cosine between the rule's estimate and the exact gradient on the probe batch: implicit differentiation,
        or BPTT for a trajectory integrated from initial conditions (the tag keeps its name); pure calls: nothing
        the run learns changes."""
        run = self.run
        x, y = self._probe
        est = run.rule.gradients(run.system, run.cost, run.solver, x, y, nudged_solver=run.nudged_solver)
        exact = run.config.solver  # the reference reads the true equilibrium (no hardware read noise)
        solver = dataclasses.replace(exact, iterations=max(exact.iterations, 200), tol=None)
        with torch.enable_grad():
            ref, _ = reference_gradient(run.system, run.cost, solver, x, y)
        names = sorted(ref.grads)
        a = torch.cat([est.grads[n].reshape(-1) for n in names])
        b = torch.cat([ref.grads[n].reshape(-1) for n in names])
        return torch.nn.functional.cosine_similarity(a, b, dim=0)

    def flush(self) -> None:
        """Write the pending steps: one transfer to the host for all their values (a host sync)."""
        if not self._pending:
            return
        flat = [t.detach().reshape(-1).float() for pending in self._pending for t in pending[2]]
        values = torch.cat(flat).tolist()  # host sync, once per flush
        k = 0
        for step, wall, _, tags, plain, plain_tags in self._pending:
            n = len(tags)
            row = dict(zip(tags, values[k : k + n], strict=True))
            k += n
            row.update(zip(plain_tags, plain, strict=True))
            row["train/accuracy"] = row.pop("train/hits") / row.pop("train/batch")
            self._file.scalars(step, row, wall)
        self._file.flush()
        self._pending = []

    def close(self) -> None:
        self.flush()
        self._file.close()
