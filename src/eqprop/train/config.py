"""Run configuration: frozen dataclasses, presets (TOML files), overrides, and the one string→object table.

A preset is a commented TOML file in ``eqprop/presets/``. It is read with :mod:`tomllib`, checked field by
field against these dataclasses (unknown keys and wrong types are errors with suggestions), and turned into
objects only by :func:`build`. ``--set section.field=value`` overrides parse ``value`` as a TOML literal.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from eqprop.errors import ConfigError

__all__ = [
    "CostConfig",
    "DataConfig",
    "OptimizerConfig",
    "RuleConfig",
    "RunConfig",
    "ScheduleConfig",
    "SolverConfig",
    "SystemConfig",
    "TrainConfig",
    "apply_overrides",
    "apply_rule_name",
    "build_rule",
    "config_from_dict",
    "config_to_dict",
    "data_options",
    "list_presets",
    "load_preset",
]


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["fashion-mnist", "mnist", "kmnist", "cifar10", "cifar100", "svhn"] = "fashion-mnist"
    """Which dataset, read from local files (never downloaded; see ``eqprop.data.load_dataset``)."""
    data_dir: str | None = None
    """Folder holding the dataset's files (IDX files, cifar-10-batches-py/, cifar-100-python/ or the SVHN
    .mat files), or a parent with one subfolder per dataset; default: $EQPROP_DATA_DIR (then, for
    Fashion-MNIST, Debian's location)."""
    validation: int | float = 0
    """Training examples held out for validation (a count, or a fraction in (0, 1)); 0 = none."""
    coarse_labels: bool = False
    """cifar100 only: the 20 superclasses instead of the 100 classes."""
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


@dataclass(frozen=True)
class SystemConfig:
    kind: Literal["deep_hopfield", "conv_hopfield", "deep_resistive"] = "deep_hopfield"
    sizes: list[int] = field(default_factory=lambda: [784, 1024, 10])
    """deep_hopfield, deep_resistive: layer widths, input first (a resistive net's input features each drive
    two voltage sources, +gain·x and −gain·x)."""
    input_gain: float = 1.0
    """deep_resistive: amplification of the input voltage sources."""
    input_shape: list[int] = field(default_factory=lambda: [1, 28, 28])
    """conv_hopfield: (channels, height, width) of the input images."""
    channels: list[int] = field(default_factory=lambda: [32, 64])
    """conv_hopfield: output channels of each conv layer (each followed by 2x2 pooling)."""
    kernel_size: int | list[int] = 5
    padding: int | list[int] = 0
    pool: Literal["avg", "max"] = "avg"
    dense: list[int] = field(default_factory=lambda: [10])
    """conv_hopfield: widths of the dense layers after the conv stack, output last."""
    gains: float | list[float] = 0.7
    """Weight init U(±gain/√fan_in): one gain, or one per weight matrix (deep_resistive: then clipped at 0)."""
    bounds: list[float] = field(default_factory=lambda: [0.0, 1.0])
    """Box of the hidden units (the hard sigmoid)."""
    output_bounds: list[float] | None = None
    """Box of the output units; None = linear output (set automatically to `bounds` under a readout)."""
    energy_form: Literal["boxed", "rho"] = "boxed"


@dataclass(frozen=True)
class CostConfig:
    kind: Literal["squared_error", "cross_entropy_readout"] = "squared_error"
    classes: int = 10
    """Classes of the readout (cross_entropy_readout only)."""


@dataclass(frozen=True)
class SolverConfig:
    kind: Literal["block_coordinate", "gradient_flow"] = "block_coordinate"
    iterations: int = 15
    order: Literal["odd-even", "forward", "backward", "synchronous"] = "odd-even"
    """Block order (block_coordinate only)."""
    step_size: float = 0.2
    """Euler step (gradient_flow only)."""
    tol: float | None = None
    """Stop early when every example's largest change per sweep is below tol; None = fixed sweeps."""
    check_every: int = 5
    norm: Literal["max", "layer-l1"] = "max"
    """How tol is measured: largest change of a unit per example, or per layer summed over the batch
    (the AEqprop reference code's criterion)."""


@dataclass(frozen=True)
class RuleConfig:
    kind: Literal["eqprop", "aeqprop", "contrastive", "coupled", "implicit", "backprop"] = "eqprop"
    """The rule family; `eqprop train --rule NAME` sets kind and variant from a literature name (CEP, PCpL, …;
    see eqprop.rules.names)."""
    beta: float = 0.2
    """eqprop, aeqprop: the nudging strength; coupled: the fraction of the way the output is clamped towards
    (or away from) the target. Unused by contrastive."""
    variant: Literal["positive", "negative", "centered"] = "centered"
    """eqprop: phases (0, β), (−β, 0) or (−β, +β); coupled: the output clamped at o* + β_i(y − o*) for the
    same pairs β_i."""
    mode: Literal["optimistic", "pessimistic", "centered"] = "centered"
    """aeqprop: phases (0, β), (−β, 0) or (−β/2, +β/2)."""
    epsilon: float | list[float] = 0.05
    """aeqprop: spring compliance ε of the weights (one, or one per layer); the step is SGD at lr ε·β."""
    epsilon_biases: float | list[float] | None = None
    """aeqprop: ε of the biases (default: as the weights)."""
    parameter_iterations: int = 1
    """aeqprop: rounds of joint (states, parameters) relaxation in phase 2."""
    parameter_relaxation: Literal["exact", "flow"] = "exact"
    """aeqprop: closed-form parameter relaxation, or `flow_steps` Euler steps of its gradient flow."""
    flow_steps: int = 10
    flow_step_size: float = 0.5
    controller_iterations: int = 10
    """aeqprop: rounds the homeostatic controller may take to hold the parameters at rest."""
    controller_rtol: float = 1e-5
    """aeqprop: the controller's tolerance on the parameters' drift, relative to the first drift."""
    phase2_start: Literal["phase1", "free"] = "phase1"
    """aeqprop: where the states start phase 2: where phase 1 left them (the physical path), or back at
    the free equilibrium with the parameters held (the official code restores the saved free state)."""
    steps: int | None = None
    """backprop only: sweeps differentiated from the free equilibrium (None = the whole relaxation)."""
    cg_iterations: int = 500
    """implicit only: conjugate-gradient cap."""


@dataclass(frozen=True)
class OptimizerConfig:
    kind: Literal["sgd", "adam"] = "sgd"
    lr: float | list[float] = 0.05
    """One rate, or one per layer (weight k with the bias of the layer it feeds)."""
    lr_biases: float | list[float] | None = None
    """Rates of the biases, if they differ from `lr` (one, or one per layer)."""
    readout_lr: float | None = None
    """Rate of a readout cost's parameters; default: the last layer's rate."""
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class ScheduleConfig:
    kind: Literal["constant", "exponential", "cosine"] = "exponential"
    gamma: float = 0.99
    """exponential: lr multiplied by gamma after every epoch."""
    eta_min: float = 0.0
    """cosine: final rate."""


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


@dataclass(frozen=True)
class RunConfig:
    name: str = "custom"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    """The free phase (training and inference)."""
    nudged_solver: SolverConfig | None = None
    """The nudged phases; None = same as `solver`."""
    rule: RuleConfig = field(default_factory=RuleConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    measured: dict[str, Any] = field(default_factory=dict)
    """Numbers produced by real runs of this preset (command, machine, figures). Never typed in."""
    published: dict[str, Any] = field(default_factory=dict)
    """The published numbers this preset is meant to reproduce, with their source."""


_FREE_FORM = {"measured", "published"}


# -- checking values against the dataclasses -----------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widened to float where wanted)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, path)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{path} = {value!r}: expected {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path} = {value!r}: expected None")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        raise ConfigError(
            f"{path} = {value!r}: choose one of {', '.join(map(repr, choices))}",
            hint=f"did you mean {close[0]!r}?" if close else None,
        )
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path} = {value!r}: expected a list of {_type_name(item)}")
        return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} = {value!r}: expected a table")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path} = {value!r}: expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path} = {value!r}: expected an integer")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path} = {value!r}: expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path} = {value!r}: expected a string")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} = {value!r}: expected a table of {tp.__name__} fields")
        return _build_dataclass(tp, value, path)
    raise ConfigError(f"{path}: unsupported field type {tp!r}")  # a bug in the dataclasses, not user input


def _build_dataclass(cls: type, data: dict[str, Any], path: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            raise ConfigError(
                f"unknown setting {where!r}",
                hint=(f"did you mean {(path + '.' if path else '') + close[0]!r}? " if close else "")
                + f"known {('fields of ' + path) if path else 'sections'}: {', '.join(names)}",
            )
        kwargs[key] = _coerce(value, hints[key], where)
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a nested dict (a parsed preset, or a saved ``config.json``) into a :class:`RunConfig`."""
    config = _build_dataclass(RunConfig, data, "")
    validate(config)
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The inverse of :func:`config_from_dict` (JSON- and TOML-friendly)."""
    return dataclasses.asdict(config)


def validate(config: RunConfig) -> None:
    """Cross-field checks that the types alone cannot express."""
    t = config.train
    if t.threads is not None and t.threads < 1:
        raise ConfigError(f"train.threads = {t.threads}: must be >= 1 (or unset for torch's default)")
    for name in ("epochs", "batch_size", "eval_batch_size", "log_every"):
        if getattr(t, name) < (0 if name == "epochs" else 1):
            raise ConfigError(
                f"train.{name} = {getattr(t, name)}: must be {'>= 0' if name == 'epochs' else '>= 1'}"
            )
    _validate_data(config.data)
    s = config.system
    if s.kind in ("deep_hopfield", "deep_resistive") and (len(s.sizes) < 2 or min(s.sizes) < 1):
        raise ConfigError(
            f"system.sizes = {s.sizes}: need at least two positive widths, e.g. [784, 1024, 10]"
        )
    if s.kind == "deep_resistive":
        if not s.input_gain > 0:
            raise ConfigError(f"system.input_gain = {s.input_gain}: must be > 0")
        if config.cost.kind != "squared_error":
            raise ConfigError(
                "system.kind = deep_resistive needs cost.kind = squared_error (the cost reads the output "
                "potentials; nudging is a current injected into the output nodes)"
            )
    n_layers = layer_count(config)
    lr = config.optimizer.lr
    if isinstance(lr, list) and len(lr) != n_layers:
        raise ConfigError(f"optimizer.lr = {lr}: give one rate, or one per layer ({_layers_text(config)})")
    for key, value in (
        ("optimizer.lr", lr),
        ("optimizer.lr_biases", config.optimizer.lr_biases),
        ("rule.epsilon", config.rule.epsilon),
        ("rule.epsilon_biases", config.rule.epsilon_biases),
    ):
        if value is None:
            continue
        if isinstance(value, list) and len(value) != n_layers:
            raise ConfigError(f"{key} = {value}: give one value, or one per layer ({_layers_text(config)})")
        if any(not v > 0 for v in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"{key} = {value}: values must be > 0")
    if config.rule.kind in ("contrastive", "coupled") and config.cost.kind != "squared_error":
        raise ConfigError(
            f"rule.kind = {config.rule.kind} clamps the output layer at the target: it needs "
            f"cost.kind = squared_error (got {config.cost.kind})",
            hint="set cost.kind=squared_error, or use rule.kind=eqprop, which nudges through any cost",
        )
    if config.rule.kind == "aeqprop":
        o = config.optimizer
        if o.kind != "sgd" or o.momentum != 0 or o.weight_decay != 0:
            raise ConfigError(
                "rule.kind = aeqprop moves the parameters physically: the optimizer must be plain SGD "
                f"(got {o.kind}, momentum {o.momentum}, weight_decay {o.weight_decay})",
                hint="set optimizer.kind=sgd, optimizer.momentum=0, optimizer.weight_decay=0",
            )
        if config.cost.kind != "squared_error":
            raise ConfigError(
                "rule.kind = aeqprop needs cost.kind = squared_error (a readout is not physical)"
            )


def _validate_data(d: DataConfig) -> None:
    if d.crop_padding < 0:
        raise ConfigError(f"data.crop_padding = {d.crop_padding}: must be >= 0 (0 = no random crop)")
    if d.pad_to is not None and d.pad_to < 1:
        raise ConfigError(
            f"data.pad_to = {d.pad_to}: give an image size in pixels, e.g. 32 (or leave it unset)"
        )
    if (d.mean is None) != (d.std is None):
        raise ConfigError(
            f"data.mean = {d.mean} and data.std = {d.std}: normalisation needs both",
            hint="set both (one value, or one per channel), or neither",
        )
    if d.mean is not None and d.std is not None:
        if not d.mean or not d.std:
            raise ConfigError(f"data.mean = {d.mean}, data.std = {d.std}: give one value, or one per channel")
        if any(not v > 0 for v in d.std):
            raise ConfigError(f"data.std = {d.std}: every value must be > 0")
    if d.coarse_labels and d.dataset != "cifar100":
        raise ConfigError(f"data.coarse_labels = true applies to cifar100 only, not {d.dataset}")


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
        "flatten": flat_input(config),
        "pad_to": d.pad_to,
        "mean": d.mean,
        "std": d.std,
        "coarse_labels": d.coarse_labels,
    }


def layer_count(config: RunConfig) -> int:
    """Weight matrices (or kernels) of the configured system: the length of per-layer settings."""
    s = config.system
    if s.kind == "conv_hopfield":
        return len(s.channels) + len(s.dense)
    return len(s.sizes) - 1


def _layers_text(config: RunConfig) -> str:
    s = config.system
    n = layer_count(config)
    if s.kind == "conv_hopfield":
        return f"{n} for channels {s.channels} and dense {s.dense}"
    return f"{n} for sizes {s.sizes}"


def output_width(config: RunConfig) -> int:
    """Units of the system's last layer."""
    s = config.system
    return s.dense[-1] if s.kind == "conv_hopfield" else s.sizes[-1]


def flat_input(config: RunConfig) -> bool:
    """Whether the system reads images flattened to vectors (dense) or as (channels, height, width)."""
    return config.system.kind in ("deep_hopfield", "deep_resistive")


# -- presets ----------------------------------------------------------------------------------------------------
def _preset_files() -> dict[str, Any]:
    folder = resources.files("eqprop.presets")
    return {p.name[: -len(".toml")]: p for p in folder.iterdir() if p.name.endswith(".toml")}


def list_presets() -> list[str]:
    """The names of the shipped presets, sorted."""
    return sorted(_preset_files())


def load_preset(name: str) -> RunConfig:
    """Read and validate the preset ``name`` (see ``eqprop presets``)."""
    files = _preset_files()
    if name not in files:
        close = difflib.get_close_matches(name, list(files), n=1)
        raise ConfigError(
            f"no preset named {name!r}",
            hint=(f"did you mean {close[0]!r}? " if close else "") + f"available: {', '.join(sorted(files))}",
        )
    data = _preset_dict(name, files, ())
    data["name"] = name
    return config_from_dict(data)


def _preset_dict(name: str, files: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    """A preset's table, with ``base = "other-preset"`` resolved (the base's tables, then this file's)."""
    if name in seen:
        raise ConfigError(f"preset {name!r} inherits from itself through {' -> '.join((*seen, name))}")
    if name not in files:
        raise ConfigError(f"preset {seen[-1]!r} names base {name!r}, which does not exist")
    try:
        data = tomllib.loads(files[name].read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"preset {name!r} is not valid TOML: {err}") from err
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _preset_dict(str(base), files, (*seen, name))
    merged.pop("measured", None)  # measurements belong to the preset that produced them
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: take it as a string (e.g. --set rule.variant=centered)


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` overrides (value parsed as a TOML literal), re-validating everything."""
    data = config_to_dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. rule.beta=0.1")
        parts = key.split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            if part == "nudged_solver" and node.get(part) is None:
                node[part] = config_to_dict(config)["solver"]  # start from the free-phase solver
            child = node.get(part)
            if not isinstance(child, dict):
                names = [k for k, v in node.items() if isinstance(v, dict) or k == "nudged_solver"]
                close = difflib.get_close_matches(part, names, n=1)
                raise ConfigError(
                    f"--set {key}: unknown section {'.'.join(parts[: i + 1])!r}",
                    hint=(f"did you mean {close[0]!r}? " if close else "") + f"sections: {', '.join(names)}",
                )
            node = child
        leaf = parts[-1]
        in_free_form = parts[0] in _FREE_FORM
        if leaf not in node and not in_free_form:
            close = difflib.get_close_matches(leaf, list(node), n=1)
            prefix = ".".join(parts[:-1])
            raise ConfigError(
                f"--set {key}: unknown setting {leaf!r}" + (f" in {prefix!r}" if prefix else ""),
                hint=(f"did you mean {prefix + '.' if prefix else ''}{close[0]}? " if close else "")
                + f"known: {', '.join(sorted(node))}",
            )
        node[leaf] = _parse_value(text.strip())
    return config_from_dict(data)


# -- the one place where strings become objects ---------------------------------------------------------------
def build(config: RunConfig, *, generator: Any = None) -> tuple[Any, Any, Any, Any, Any]:
    """``(system, cost, solver, nudged_solver, rule)`` from a config (on the CPU, float32)."""
    from eqprop.costs import CrossEntropyReadout, SquaredError
    from eqprop.rules import AgnosticEqProp
    from eqprop.systems import ConvHopfield, DeepHopfield, DeepResistive

    s = config.system
    readout = config.cost.kind == "cross_entropy_readout"
    output_bounds = s.output_bounds if s.output_bounds is not None else (s.bounds if readout else None)
    out_bounds = None if output_bounds is None else tuple(output_bounds)
    system: Any
    if s.kind == "deep_resistive":
        system = DeepResistive(s.sizes, input_gain=s.input_gain, gains=s.gains, generator=generator)
    elif s.kind == "conv_hopfield":
        system = ConvHopfield(
            s.input_shape,
            s.channels,
            s.dense,
            kernel_size=s.kernel_size,
            padding=s.padding,
            pool=s.pool,
            bounds=tuple(s.bounds),
            output_bounds=out_bounds,
            gains=s.gains,
            generator=generator,
        )
    else:
        system = DeepHopfield(
            s.sizes,
            bounds=tuple(s.bounds),
            output_bounds=out_bounds,
            gains=s.gains,
            energy_form=s.energy_form,
            generator=generator,
        )
    if readout:
        cost = CrossEntropyReadout(output_width(config), config.cost.classes, generator=generator)
    else:
        cost = SquaredError()
    solver = build_solver(config.solver)
    nudged = None if config.nudged_solver is None else build_solver(config.nudged_solver)
    r = config.rule
    if r.kind == "aeqprop":
        rule = AgnosticEqProp(
            beta=r.beta,
            mode=r.mode,
            epsilon={
                n: per_tensor(config, n, r.epsilon, r.epsilon_biases) for n, _ in system.named_parameters()
            },
            parameter_iterations=r.parameter_iterations,
            parameter_relaxation=r.parameter_relaxation,
            flow_steps=r.flow_steps,
            flow_step_size=r.flow_step_size,
            controller_iterations=r.controller_iterations,
            controller_rtol=r.controller_rtol,
            phase2_start=r.phase2_start,
        )
    else:
        rule = build_rule(r)
    return system, cost, solver, nudged, rule


def build_rule(r: RuleConfig) -> Any:
    """The rule of every ``rule.kind`` but ``aeqprop`` (whose per-tensor ε needs the system: see :func:`build`)."""
    from eqprop.rules import (
        BackpropThroughSolver,
        ContrastiveLearning,
        CoupledLearning,
        EqProp,
        ImplicitDiff,
    )

    if r.kind == "eqprop":
        return EqProp(beta=r.beta, variant=r.variant)
    if r.kind == "contrastive":
        return ContrastiveLearning()
    if r.kind == "coupled":
        return CoupledLearning(beta=r.beta, variant=r.variant)
    if r.kind == "implicit":
        return ImplicitDiff(cg_iterations=r.cg_iterations)
    if r.kind == "backprop":
        return BackpropThroughSolver(steps=r.steps)
    raise ConfigError(f"rule.kind = {r.kind!r}: build_rule cannot build it alone", hint="use build(config)")


def apply_rule_name(config: RunConfig, name: str) -> RunConfig:
    """``config`` with the rule the literature calls ``name`` (CL, PEP, NEP, CEP, PCpL, NCpL, CCpL, TBP, RBP):
    ``rule.kind`` and ``rule.variant`` from :data:`eqprop.rules.names.RULE_NAMES`; β and the other rule
    settings are kept. TBP without ``rule.steps`` differentiates as many sweeps as the nudged phase has.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    from eqprop.rules.names import lookup

    row = lookup(name)
    sets = [f"rule.kind={row.kind}"]
    if row.variant is not None:
        sets.append(f"rule.variant={row.variant}")
    if row.kind == "backprop" and config.rule.steps is None:
        sets.append(f"rule.steps={(config.nudged_solver or config.solver).iterations}")
    return apply_overrides(config, sets)


def per_tensor(
    config: RunConfig, name: str, weights: float | list[float], biases: float | list[float] | None
) -> float:
    """The value of a per-layer setting for the parameter ``name`` (``weights.k`` or ``biases.k``)."""
    kind, _, index = name.partition(".")
    value = biases if kind == "biases" and biases is not None else weights
    if not isinstance(value, list):
        return float(value)
    if kind not in ("weights", "conductances", "biases") or not index.isdigit():
        raise ConfigError(
            f"per-layer values need parameters named weights.k (or conductances.k) / biases.k, got {name!r}"
        )
    return float(value[int(index)])


def build_solver(c: SolverConfig) -> Any:
    from eqprop.solvers import BlockCoordinate, GradientFlow

    if c.kind == "block_coordinate":
        return BlockCoordinate(
            iterations=c.iterations, order=c.order, tol=c.tol, check_every=c.check_every, norm=c.norm
        )
    return GradientFlow(
        iterations=c.iterations, step_size=c.step_size, tol=c.tol, check_every=c.check_every, norm=c.norm
    )
