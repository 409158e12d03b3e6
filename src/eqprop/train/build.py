"""The one place where a configuration becomes objects, and a checkpoint becomes a model.

``build(config)`` gives a :class:`Run`: the system, cost, solvers, rule, optimizer and schedule of the config,
on its device and dtype, with the random generators of the data order and of augmentation. ``Run.state()`` is
everything a checkpoint holds; ``Run.restore(checkpoint)`` puts it back (bit for bit). Training, evaluation,
gradient checks, comparisons and the SPICE check all start here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from eqprop.costs import Cost
from eqprop.data import Dataset, Split, hold_out, load_dataset, prepare_dataset, select_examples
from eqprop.devices.config import Devices
from eqprop.errors import CheckpointError, ConfigError
from eqprop.rules.base import Rule
from eqprop.solvers.base import Solver
from eqprop.systems.base import EnergySystem
from eqprop.train.checkpoint import (
    check_compatible,
    generator_state,
    rng_state,
    set_generator_state,
    set_rng_state,
)
from eqprop.train.config import RunConfig, config_to_dict, data_options
from eqprop.train.optim import make_optimizer

__all__ = [
    "CONFIG_VERSION",
    "DTYPES",
    "Run",
    "build",
    "data_fingerprint",
    "device_of",
    "load_data",
    "weights_checksum",
]

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
"""``train.dtype`` → torch dtype."""

CONFIG_VERSION = 2
"""The schema of the config a checkpoint holds (``"config_version"``; absent = 1, before rules and solvers were
their own config sections: see :mod:`eqprop.train.legacy`)."""

_STATE_KEYS = (
    "config",
    "epoch",
    "system",
    "cost",
    "optimizer",
    "scheduler",
    "order_generator",
    "rng",
    "history",
)


def device_of(name: str) -> torch.device:
    """The device ``name`` (``cpu``, ``cuda``, ``cuda:1``), checked to exist on this machine."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"--device {name!r} is not a device name", hint="use cpu or cuda (cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine", hint="use --device cpu")
    return device


@dataclass(eq=False)
class Run:
    """Everything a training run is made of. Built by :func:`build`; its parameters live on ``device`` in
    ``dtype``.

    Attributes:
        order: the generator of the training examples' order (one permutation per epoch).
        augment: the generator of random crops and flips of training batches.
        epoch: epochs completed; history: one record per completed epoch (``metrics.jsonl``).
    """

    config: RunConfig
    system: EnergySystem
    cost: Cost
    solver: Solver
    nudged_solver: Solver | None
    rule: Rule
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    dtype: torch.dtype
    order: torch.Generator
    augment: torch.Generator
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    position: dict[str, Any] | None = None
    """Where the epoch in progress stands (the training loop's own record: the next batch, the order
    generator's state at the epoch's start, the running tallies), or None between epochs."""
    data_fingerprint: str | None = None
    """The fingerprint of the data the run trains on (:func:`data_fingerprint`), once the loop has read it."""
    hardware: Devices | None = None
    """The devices' non-idealities (``config.hardware``); None = ideal."""

    def update(self) -> None:
        """One parameter update from the ``.grad`` just written: the optimizer's step, what the devices make of it
        (pulsed hardware), then the physics' constraints (e.g. conductances back to >= 0)."""
        pulsed = self.hardware is not None and self.hardware.pulsed
        devices = self.hardware.arrays if self.hardware is not None else {}
        before = {n: p.detach().clone() for n, p in self.system.named_parameters() if n in devices}
        self.optimizer.step()
        if pulsed:
            assert self.hardware is not None
            self.hardware.apply(self.system, before)
        self.system.constrain_parameters()

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds: the config, the weights (and their checksum), the optimizer and schedule,
        every generator, the history, the position within an epoch in progress, the data's fingerprint and the
        number of torch threads (plain data and tensors only, for
        :func:`~eqprop.train.checkpoint.save_checkpoint`)."""
        system, cost = self.system.state_dict(), self.cost.state_dict()
        state = {
            "config": config_to_dict(self.config),
            "config_version": CONFIG_VERSION,
            "epoch": self.epoch,
            "system": system,
            "cost": cost,
            "checksum": weights_checksum(system, cost),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "order_generator": generator_state(self.order),
            "augment_generator": generator_state(self.augment),
            "rng": rng_state(),
            "history": list(self.history),
            "threads": torch.get_num_threads(),
        }
        if self.position is not None:
            state["position"] = self.position
        if self.data_fingerprint is not None:
            state["data_fingerprint"] = self.data_fingerprint
        return state

    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Put back what :meth:`state` saved: the run then continues exactly as it would have.

        Raises:
            CheckpointError: a key is missing, or the saved weights or optimizer do not fit this run's.
        """
        missing = [k for k in _STATE_KEYS if k not in checkpoint]
        if missing:
            raise CheckpointError(
                f"the checkpoint lacks {', '.join(map(repr, missing))}",
                hint="it was not written by `eqprop train` or was edited; resume from an intact checkpoint",
            )
        if "checksum" in checkpoint:  # absent from checkpoints written before checksums
            found = weights_checksum(checkpoint["system"], checkpoint["cost"])
            if found != checkpoint["checksum"]:
                raise CheckpointError(
                    "the weights in the checkpoint are not the ones that were saved (their checksum differs): "
                    "the file was altered or damaged after it was written",
                    hint="use an intact copy of the run, or train again",
                )
        check_compatible(checkpoint["system"], self.system, what="system")
        check_compatible(checkpoint["cost"], self.cost, what="cost")
        self.system.load_state_dict(checkpoint["system"])
        self.cost.load_state_dict(checkpoint["cost"])
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise CheckpointError(
                f"the checkpoint's optimizer or schedule state does not fit this run's ({type(err).__name__}: "
                f"{err})",
                hint="resume with the settings the run was started with",
            ) from err
        self.config.schedule.retarget(self.scheduler, self.config.train.epochs)
        set_generator_state(self.order, checkpoint["order_generator"])
        if "augment_generator" in checkpoint:  # absent from checkpoints written before augmentation existed
            set_generator_state(self.augment, checkpoint["augment_generator"])
        set_rng_state(checkpoint["rng"])
        self.history = list(checkpoint["history"])
        self.epoch = int(checkpoint["epoch"])
        self.position = checkpoint.get("position")
        self.data_fingerprint = checkpoint.get("data_fingerprint")


def weights_checksum(*state_dicts: Mapping[str, Any]) -> str:
    """SHA-256 of the names, dtypes, shapes and bytes of the tensors of ``state_dicts``, in order."""
    h = hashlib.sha256()
    for state in state_dicts:
        for name, value in state.items():
            h.update(name.encode())
            if isinstance(value, torch.Tensor):
                h.update(f"{value.dtype}{tuple(value.shape)}".encode())
                h.update(_bytes(value))
            else:
                h.update(repr(value).encode())
    return h.hexdigest()


def data_fingerprint(data: Dataset) -> str:
    """A fingerprint of the training, validation and test examples (BLAKE2b of their bytes): a resumed run
    checks that it reads the data it was trained on."""
    h = hashlib.blake2b(digest_size=16)
    for split in (data.train, data.validation, data.test):
        if split is None:
            h.update(b"none")
            continue
        for t in (split.x, split.y):
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(_bytes(t))
    return h.hexdigest()


def _bytes(t: torch.Tensor) -> memoryview | bytes:
    """The raw bytes of ``t`` (on the CPU, contiguous), without a copy where none is needed."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data if flat.numel() else b""


def build(config: RunConfig) -> Run:
    """The objects of ``config``: initial weights from ``train.seed``, on ``train.device`` in ``train.dtype``.

    Also seeds torch's global generator from ``train.seed`` (``seed + 3``): the random draws of a rule (EqProp's
    random sign) come from it, so that a run is reproducible; checkpoints save and restore its state.

    Raises:
        ConfigError: no such device, or pieces that do not fit together (the rule refuses the system, the
            cost or the optimizer; the system refuses the cost).
    """
    t = config.train
    device = device_of(t.device)
    dtype = DTYPES[t.dtype]
    init = torch.Generator().manual_seed(t.seed)  # the initial weights: the system's, then the readout's
    torch.manual_seed(t.seed + 3)  # the rules' draws (seeds + 1, + 2: the data order and the augmentation)
    system = config.system.build(boxed_output=config.cost.boxed_output, generator=init)
    cost = config.cost.build(in_features=config.system.output_width, generator=init)
    system.check_cost(cost)
    system.to(device=device, dtype=dtype)
    cost.to(device=device, dtype=dtype)
    optimizer = make_optimizer(config.optimizer, system, cost, config.rule)
    config.rule.check_physics(system)
    config.rule.check(system, cost, optimizer)
    hardware = config.hardware.build(
        system, torch.Generator().manual_seed(t.seed + 5)
    )  # device-to-device draws
    return Run(
        config=config,
        system=system,
        cost=cost,
        solver=hardware.wrap(config.solver),  # type: ignore[arg-type]
        nudged_solver=hardware.wrap(config.nudged_solver),
        hardware=hardware,
        rule=config.rule,
        optimizer=optimizer,
        scheduler=config.schedule.build(optimizer, t.epochs),
        device=device,
        dtype=dtype,
        order=torch.Generator().manual_seed(t.seed + 1),
        augment=torch.Generator().manual_seed(t.seed + 2),
    )


def load_data(
    config: RunConfig,
    device: torch.device,
    dtype: torch.dtype,
    *,
    validation: bool = True,
    given: Dataset | None = None,
) -> Dataset:
    """The run's dataset, preprocessed as in training, on ``device`` in ``dtype``, checked against the system.

    Args:
        validation: hold out the validation split (evaluation of a finished run reads the test split only).
        given: data passed in from Python (e.g. :func:`eqprop.data.from_arrays`) instead of the files of
            ``config.data``; the config's class and size selection, validation hold-out, crop, downsampling,
            padding, normalisation and augmentation apply.

    Raises:
        ConfigError: the images do not fit the system's input, the classes its output, or a split is empty.
        DataError: missing or corrupt files.
    """
    options = data_options(config)
    if not validation:
        options["validation"] = 0
    if given is None:
        data = load_dataset(**options)
    else:
        select = {k: options[k] for k in ("classes", "train_size", "test_size") if k in options}
        data = hold_out(select_examples(given, **select), options["validation"], options["seed"])
        images = {k: options[k] for k in ("crop", "downsample", "pad_to", "mean", "std") if k in options}
        if data.train.x.dim() == 4:
            data = prepare_dataset(data, **images, flatten=options["flatten"])
        elif any(images.get(k) is not None for k in ("crop", "downsample", "pad_to", "mean")):
            raise ConfigError(
                "data.crop, data.downsample, data.pad_to and data.mean/std need images (n, C, H, W); the data "
                f"given holds {tuple(data.train.x.shape)}"
            )
    _check_fit(config, data)

    def move(split: Split | None) -> Split | None:
        if split is None:
            return None
        return Split(x=split.x.to(device=device, dtype=dtype), y=split.y.to(device))

    train, test = move(data.train), move(data.test)
    assert train is not None and test is not None
    return Dataset(
        name=data.name,
        train=train,
        test=test,
        validation=move(data.validation),
        classes=data.classes,
        image_shape=data.image_shape,
    )


def _check_fit(config: RunConfig, data: Dataset) -> None:
    got = tuple(data.train.x.shape[1:])
    want = tuple(config.system.input_shape)
    if got != want:
        field_name = "sizes[0]" if len(want) == 1 else "input_shape"
        fix = f"[{got[0]}, ...]" if len(want) == 1 else str(list(got))
        raise ConfigError(
            f"system.{field_name} expects inputs of shape {list(want)} but {data.name} images have shape "
            f"{list(got)}",
            hint=f"use --set system.{field_name.partition('[')[0]}={fix}",
        )
    classes = config.cost.predicted_classes(config.system.output_width)
    if data.classes == 0:  # a regression task: the cost checks the targets' shape against the output's
        pass
    elif classes != data.classes:
        raise ConfigError(
            f"the model predicts {classes} classes but {data.name} has {data.classes}",
            hint=f"make the output layer {data.classes} wide",
        )
    for name, split in (("training", data.train), ("test", data.test)):
        if len(split) == 0:
            raise ConfigError(
                f"the {name} split of {data.name} holds no examples",
                hint="check the dataset files (and data.validation, which takes examples from training)",
            )
