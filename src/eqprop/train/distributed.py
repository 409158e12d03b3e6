"""Data-parallel training on torch.distributed: ``torchrun --nproc-per-node N -m eqprop train ...``.

Every process (rank) builds the same run from the same seed and draws the same order of examples; each global
batch of ``train.batch_size`` examples is split among the ranks the way ``DistributedSampler`` strides (rank ``r``
takes the batch's examples ``r, r + N, r + 2N, ...``), each rank relaxes its share, and one all-reduce per step
sums the ranks' gradients weighted by their example counts (with the step's loss, correct predictions, example
count and stop request), so that every rank takes the same optimizer step: the one a single process takes on
the whole batch, up to float round-off. Rank 0 alone writes the run folder, logs and checkpoints; the checkpoint
does not depend on the number of processes, so a run resumes under any number of them.

Gloo on the CPU, NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from eqprop.errors import ConfigError, EqpropError

__all__ = ["PeerError", "World"]


class PeerError(EqpropError):
    """Another process of a data-parallel run stopped (it crashed, was killed, or refused something)."""


@dataclass
class World:
    """The processes of a run: this one's ``rank`` among ``size`` (``World()`` is a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    started_here: bool = False
    _flat: Tensor | None = None

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder (rank 0)."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        """The world ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or a
        single process."""
        try:
            size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError as err:
            raise ConfigError(f"WORLD_SIZE, RANK or LOCAL_RANK is not an integer ({err})") from err
        return cls(rank=rank, size=size, local_rank=local)

    def device(self, name: str) -> str:
        """The device this rank uses for ``train.device = name``: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
        return f"cuda:{self.local_rank}" if self.size > 1 and name == "cuda" else name

    def start(self, device: torch.device) -> None:
        """Join the process group (gloo, or NCCL on CUDA) unless the caller already has."""
        import torch.distributed as dist

        if self.size == 1 or dist.is_initialized():
            return
        if not dist.is_available():
            raise ConfigError("this torch has no torch.distributed: run one process")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10))
        self.started_here = True

    def stop(self) -> None:
        """Leave the process group this world joined."""
        if self.started_here:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.started_here = False

    def shard(self, n: int) -> slice:
        """The positions of a global batch of ``n`` examples this rank takes: ``rank, rank + size, ...``."""
        return slice(self.rank, n, self.size)

    def bind(self, params: Sequence[Tensor]) -> None:
        """Make every parameter's ``.grad`` a view of one flat buffer (with four more values at its end for
        the step's tallies), so that the step's all-reduce needs no copy: the rules write ``.grad`` in place."""
        if self.size == 1:
            return
        total = sum(p.numel() for p in params)
        self._flat = torch.zeros(total + 4, dtype=params[0].dtype, device=params[0].device)
        offset = 0
        for p in params:
            p.grad = self._flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def reduce_step(self, share: int, batch: int, loss_sum: Tensor, hits: Tensor, stop: bool) -> Tensor:
        """The step's one all-reduce (after :meth:`bind`): every ``.grad`` (this process's mean over its ``share``
        of the ``batch`` examples) becomes the whole batch's mean, and ``(loss_sum, hits, stop)`` their sums over
        the processes, returned as one tensor.

        Raises:
            PeerError: another process stopped (its own error says why).
        """
        flat = self._flat
        grads, tally = flat[:-4], flat[-4:]
        if share != batch:  # the share's mean, weighted by its size: the sum over the processes is the mean
            grads.mul_(share / batch)
        tally[0], tally[1], tally[2], tally[3] = loss_sum, hits, float(share), float(stop)
        self._all_reduce(flat)
        return tally

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set in any process (one all-reduce; every process gets the same answer)."""
        if self.size == 1:
            return flag
        assert self._flat is not None  # bound: its device and dtype are the run's
        return bool(
            self.sum(torch.tensor([float(flag)], dtype=self._flat.dtype, device=self._flat.device)) > 0
        )

    def sum(self, values: Tensor) -> Tensor:
        """``values`` summed over the ranks (in place; one all-reduce)."""
        if self.size > 1:
            self._all_reduce(values)
        return values

    def _all_reduce(self, tensor: Tensor) -> None:
        import torch.distributed as dist

        try:
            dist.all_reduce(tensor)
        except (RuntimeError, dist.DistBackendError) as err:  # gloo: "Connection closed by peer", timeouts
            raise PeerError(
                f"rank {self.rank} of {self.size}: another process of the run stopped during an all-reduce "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                hint="its own error says why; the run folder keeps its last checkpoint, resume it with "
                "`eqprop train --resume OUT` under any number of processes",
            ) from err
