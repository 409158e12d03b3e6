"""The run configuration: one frozen dataclass tree, read from presets (TOML) and written to ``config.json``.

The sections with kinds hold the objects' own settings: ``rule`` *is* the rule (``EqProp(beta=0.2, ...)``, a
frozen dataclass), ``solver`` the solver; ``system``, ``cost``, ``optimizer`` and ``schedule`` are config
dataclasses that build theirs. Each kind's class comes from the table its own package keeps (``RULES``,
``SOLVERS``, ``SYSTEMS``, ``COSTS`` with the systems' own ``SYSTEM_COSTS``, ``OPTIMIZERS``, ``SCHEDULES``): nothing
here names a kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from eqprop.costs import COSTS, CostConfig, SquaredErrorConfig
from eqprop.devices.config import HardwareConfig
from eqprop.errors import ConfigError
from eqprop.rules import RULES, EqProp, Rule
from eqprop.solvers import SOLVERS, BlockCoordinate, Solver
from eqprop.systems.configs import SYSTEM_COSTS, SYSTEMS, DeepHopfieldConfig, SystemConfig
from eqprop.train.optim import (
    OPTIMIZERS,
    SCHEDULES,
    ExponentialScheduleConfig,
    OptimizerConfig,
    ScheduleConfig,
    SGDConfig,
)
from eqprop.train.schema import from_table, is_per_layer, kinds, settings, to_table

__all__ = ["DataConfig", "RunConfig", "TrainConfig", "config_from_dict", "config_to_dict", "data_options"]


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal[
        "fashion-mnist",
        "mnist",
        "kmnist",
        "cifar10",
        "cifar100",
        "svhn",
        "npz",
        "driven-chain",
        "driven-chain-fixed",
        "tfim-phases",
        "allostery",
        "strain-regression",
    ] = "fashion-mnist"
    """Which dataset, read from local files (never downloaded; see ``eqprop.data.load_dataset``); ``npz``: your
    own arrays in one ``.npz`` file (``data_dir`` is the file, or a folder holding ``data.npz``; the format is in
    ``eqprop.data.arrays``). Generated, nothing read: ``driven-chain``, ``driven-chain-fixed`` (trajectories) and
    ``tfim-phases`` (quantum phase recognition: 3 probe features, 2 classes)."""
    data_dir: str | None = None
    """Folder holding the dataset's files (IDX files, cifar-10-batches-py/, cifar-100-python/ or the SVHN
    .mat files), or a parent with one subfolder per dataset; default: $EQPROP_DATA_DIR (then, for
    Fashion-MNIST, Debian's location)."""
    validation: int | float = 0
    """Training examples held out for validation (a count, or a fraction in (0, 1)); 0 = none."""
    coarse_labels: bool = False
    """cifar100 only: the 20 superclasses instead of the 100 classes."""
    classes: list[int] | None = None
    """Keep only the examples of these classes (train and test), relabelled 0 … k−1 in the order given: [0, 1, 2]
    keeps Fashion-MNIST's first three as a 3-class task (the output layer must then be k wide). None = all."""
    train_size: int | None = None
    """Keep only the first train_size training examples (after the class filter; the validation examples are
    then held out of them). None = all."""
    test_size: int | None = None
    """Keep only the first test_size test examples (after the class filter). None = all."""
    crop: int = 0
    """Remove this many pixels from every border of every image (train and test) when loaded, before downsample
    and pad_to: 4 turns 28×28 into 20×20. (Not augmentation's random crop, crop_padding.) 0 = none."""
    downsample: int = 1
    """Average-pool every image (train and test) by this factor when loaded: each pixel becomes the mean of a
    downsample×downsample block (2 turns 20×20 into 10×10); after crop, before pad_to and normalisation. The
    (cropped) size must be divisible by it. 1 = none."""
    pad_to: int | None = None
    """Zero-pad every image (train and test) to pad_to×pad_to, centred, when loaded; 32 turns 28×28
    MNIST-family images into the 32×32 inputs of the comparative study's DCHN. None = as stored."""
    mean: list[float] | None = None
    """Per-channel normalisation (x − mean) / std after scaling to [0, 1] and padding (one value, or one per
    channel; set std too). None = no normalisation."""
    std: list[float] | None = None
    """See `mean`. The comparative study divides CIFAR-10 by three times its per-channel std."""
    crop_padding: int = 0
    """Training batches only: pad each image by this many pixels and crop back to its size at a random
    offset per example (a shift of up to crop_padding pixels). 0 = off."""
    crop_fill: Literal["zeros", "edge"] = "zeros"
    """What the crop's padding holds: 0 (after normalisation: the mean) or the repeated border pixels
    (torchvision's padding_mode="edge", as the comparative study)."""
    flip: bool = False
    """Training batches only: mirror each image left-right with probability 0.5."""

    def __post_init__(self) -> None:
        if self.classes is not None:
            if len(self.classes) < 2 or min(self.classes) < 0:
                raise ConfigError(
                    f"data.classes = {self.classes}: give at least two class labels >= 0, e.g. [0, 1, 2]"
                )
            if len(set(self.classes)) != len(self.classes):
                raise ConfigError(f"data.classes = {self.classes}: list each class once")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"data.{name} = {getattr(self, name)}: must be >= 1 (or unset for all)")
        if (
            isinstance(self.validation, int)
            and self.train_size is not None
            and self.validation >= self.train_size
        ):
            raise ConfigError(
                f"data.validation = {self.validation} leaves none of data.train_size = {self.train_size} examples",
                hint=f"hold out fewer than {self.train_size}, or a fraction",
            )
        if self.crop < 0:
            raise ConfigError(f"data.crop = {self.crop}: must be >= 0 (0 = no crop)")
        if self.downsample < 1:
            raise ConfigError(f"data.downsample = {self.downsample}: must be >= 1 (1 = no downsampling)")
        if self.crop_padding < 0:
            raise ConfigError(f"data.crop_padding = {self.crop_padding}: must be >= 0 (0 = no random crop)")
        if self.pad_to is not None and self.pad_to < 1:
            raise ConfigError(
                f"data.pad_to = {self.pad_to}: give an image size in pixels, e.g. 32 (or leave it unset)"
            )
        if (self.mean is None) != (self.std is None):
            raise ConfigError(
                f"data.mean = {self.mean} and data.std = {self.std}: normalisation needs both",
                hint="set both (one value, or one per channel), or neither",
            )
        if self.mean is not None and self.std is not None:
            if not self.mean or not self.std:
                raise ConfigError(
                    f"data.mean = {self.mean}, data.std = {self.std}: give one value, or one per channel"
                )
            if any(not v > 0 for v in self.std):
                raise ConfigError(f"data.std = {self.std}: every value must be > 0")
        if self.coarse_labels and self.dataset != "cifar100":
            raise ConfigError(f"data.coarse_labels = true applies to cifar100 only, not {self.dataset}")
        if isinstance(self.validation, float) and not 0 <= self.validation < 1:
            raise ConfigError(f"data.validation = {self.validation}: give a count, or a fraction in [0, 1)")
        if isinstance(self.validation, int) and self.validation < 0:
            raise ConfigError(f"data.validation = {self.validation}: must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 16
    eval_batch_size: int = 1000
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    log_every: int = 100
    """Batches between progress-bar updates (each is one host sync)."""
    threads: int | None = None
    """CPU threads for torch (None: torch's default, one per core). On a machine shared with other jobs,
    1 avoids the spin-waiting of oversubscribed threads, which can cost far more than it gains."""
    warm_start: bool = False
    """Start each training batch's free phase from the state the previous batch left the system in
    (``Estimate.last_state``; the official AEqprop code does this) instead of from zero. Every epoch's first
    batch, a batch of another size, and evaluation start from zero."""

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"train.threads = {self.threads}: must be >= 1 (or unset for torch's default)")
        if self.epochs < 0:
            raise ConfigError(f"train.epochs = {self.epochs}: must be >= 0")
        for name in ("batch_size", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} = {getattr(self, name)}: must be >= 1")


@dataclass(frozen=True)
class RunConfig:
    name: str = "custom"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    system: SystemConfig = field(default_factory=DeepHopfieldConfig, metadata=kinds(SYSTEMS))
    cost: CostConfig = field(default_factory=SquaredErrorConfig, metadata=kinds({**COSTS, **SYSTEM_COSTS}))
    solver: Solver = field(default_factory=BlockCoordinate, metadata=kinds(SOLVERS))
    """The free phase (training and inference)."""
    nudged_solver: Solver | None = field(default=None, metadata=kinds(SOLVERS))
    """The nudged phases; None = same as `solver`."""
    rule: Rule = field(default_factory=EqProp, metadata=kinds(RULES))
    optimizer: OptimizerConfig = field(default_factory=SGDConfig, metadata=kinds(OPTIMIZERS))
    schedule: ScheduleConfig = field(default_factory=ExponentialScheduleConfig, metadata=kinds(SCHEDULES))
    train: TrainConfig = field(default_factory=TrainConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    """The devices' non-idealities (read noise, pulsed updates); the default is the ideal machine."""
    measured: dict[str, Any] = field(default_factory=dict)
    """Numbers produced by real runs of this preset (command, machine, figures). Never typed in."""
    published: dict[str, Any] = field(default_factory=dict)
    """The published numbers this preset is meant to reproduce, with their source."""

    def __post_init__(self) -> None:
        validate(self)


FREE_FORM = ("measured", "published")
"""Sections whose keys are free (records of numbers, not settings)."""


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a nested dict (a parsed preset, or a saved ``config.json``) into a :class:`RunConfig`."""
    config: RunConfig = from_table(RunConfig, data)
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The inverse of :func:`config_from_dict` (JSON- and TOML-friendly)."""
    table: dict[str, Any] = to_table(config)
    return table


def validate(config: RunConfig) -> None:
    """Cross-section checks that the sections cannot make alone: every per-layer list has one value per layer
    of the system, and the run's solvers relax at least once."""
    layers = config.system.layers
    for section in ("optimizer", "rule"):
        obj = getattr(config, section)
        for f in settings(type(obj)):
            value = getattr(obj, f.name)
            if is_per_layer(f) and isinstance(value, list) and len(value) != layers:
                raise ConfigError(
                    f"{section}.{f.name} = {value}: give one value, or one per layer ({layers} for "
                    f"{config.system.describe()})"
                )
    for name in ("solver", "nudged_solver"):
        solver = getattr(config, name)
        if solver is not None and solver.iterations < 1:
            raise ConfigError(
                f"{name}.iterations = {solver.iterations}: a training run needs at least one sweep per phase "
                "(with none, the state stays where it starts and nothing is learned)"
            )


def data_options(config: RunConfig) -> dict[str, Any]:
    """Keyword arguments of ``eqprop.data.load_dataset`` for this run: training, evaluation and gradient
    checks read the same, identically preprocessed data. (Augmentation is not here: it is the training
    loop's, on training batches only.)"""
    d = config.data
    return {
        "name": d.dataset,
        "data_dir": d.data_dir,
        "validation": d.validation,
        "seed": config.train.seed,
        "flatten": len(config.system.input_shape) == 1,
        "pad_to": d.pad_to,
        "mean": d.mean,
        "std": d.std,
        "coarse_labels": d.coarse_labels,
    } | {  # the selection and resampling options only when set: the options of other runs stay as they were
        name: getattr(d, name)
        for name, default in (
            ("classes", None),
            ("train_size", None),
            ("test_size", None),
            ("crop", 0),
            ("downsample", 1),
        )
        if getattr(d, name) != default
    }
