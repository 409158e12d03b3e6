"""Tests of eqprop.train.config: the shipped presets, `--set` overrides, validation, round trips, build()."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqprop import (
    BlockCoordinate,
    ConvHopfield,
    CrossEntropyReadout,
    DeepHopfield,
    DeepResistive,
    DirectSolver,
    EqProp,
    FlowNetwork,
    GradientFlow,
    SquaredError,
    Synchronous,
)
from eqprop.data.elastic_tasks import ELASTIC_DATASETS
from eqprop.data.quantum_phases import PHASE_DATASETS
from eqprop.data.trajectories import TRAJECTORY_DATASETS
from eqprop.errors import ConfigError
from eqprop.rules import AgnosticEqProp, BackpropThroughSolver, ContrastiveLearning, ImplicitDiff
from eqprop.solvers import GibbsSampler, GroundState, Leapfrog, Newton
from eqprop.systems import (
    AnalogResistive,
    CentralForceNetwork,
    MechanicalSystem,
    PhaseNetwork,
    QuantumSystem,
    SmoothHopfield,
    SpringNetwork,
)
from eqprop.train import (
    RunConfig,
    apply_overrides,
    build,
    config_from_dict,
    config_to_dict,
    list_presets,
    load_preset,
)
from eqprop.train.optim import AdamConfig

SHIPPED = ["fmnist-dhn1h", "fmnist-dhn2h", "fmnist-dhn3h", "fmnist-quick", "mnist-dhn1h"]


def _dhn1h() -> RunConfig:
    return load_preset("fmnist-dhn1h")


# -- presets ----------------------------------------------------------------------------------------------------
def test_list_presets_is_sorted_and_holds_the_shipped_presets() -> None:
    names = list_presets()
    assert names == sorted(names)
    assert set(SHIPPED) <= set(names)


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads_and_validates(name: str) -> None:
    config = load_preset(name)
    assert config.name == name
    assert config.description
    # the system reads the dataset's images and predicts its classes
    # the model (its output layer, or a readout of it) predicts the dataset's classes
    d = config.data
    classes = config.cost.predicted_classes(config.system.output_width)
    if (
        d.dataset in TRAJECTORY_DATASETS
    ):  # a generated regression task: drives (points, features) in, trajectories out
        assert tuple(config.system.input_shape) == (41, 2)
    elif d.dataset in PHASE_DATASETS:  # generated: 3 probe features of a chain's ground state, 2 phases
        assert tuple(config.system.input_shape) == (3,) and classes == 2
    elif (
        d.dataset in ELASTIC_DATASETS
    ):  # generated: source strains in, as many target strains out as the task's
        features = 1 if d.dataset == "allostery" else 2
        assert tuple(config.system.input_shape) == (features,) and config.system.output_width == features
    else:
        assert classes == (len(d.classes) if d.classes else 100 if d.dataset == "cifar100" else 10)
        # the images as loaded: cropped, downsampled, then padded
        channels = 3 if d.dataset.startswith("cifar") else 1
        side = d.pad_to or ((32 if channels == 3 else 28) - 2 * d.crop) // d.downsample
        if len(config.system.input_shape) == 1:  # dense: flattened images (784 for 28x28)
            assert tuple(config.system.input_shape) == (channels * side * side,)
        else:  # convolutional, or read row by row: (channels, height, width) of the images
            assert tuple(config.system.input_shape) == (channels, side, side)
    lr = config.optimizer.lr
    assert not isinstance(lr, list) or len(lr) == config.system.layers
    assert config_from_dict(config_to_dict(config)) == config
    # the objects build (weights of up to 784-1024x3-10 or 128-256-512-512 convs are cheap to allocate)
    run = build(config)
    system, cost, solver, rule = run.system, run.cost, run.solver, run.rule
    assert isinstance(
        system,
        DeepHopfield
        | ConvHopfield
        | DeepResistive
        | SmoothHopfield
        | FlowNetwork
        | MechanicalSystem
        | PhaseNetwork
        | SpringNetwork
        | AnalogResistive
        | CentralForceNetwork
        | QuantumSystem,
    )
    assert isinstance(
        solver,
        BlockCoordinate
        | GradientFlow
        | Synchronous
        | DirectSolver
        | Newton
        | Leapfrog
        | GibbsSampler
        | GroundState,
    )
    if name in SHIPPED:  # the DHN recipes of the issue
        assert config.published, "every shipped preset says which published number it targets"
        assert isinstance(rule, EqProp) and rule.variant == "centered" and rule.beta == 0.2
        assert isinstance(cost, SquaredError) and isinstance(solver, BlockCoordinate)


def test_fmnist_dhn1h_has_the_issue_settings() -> None:
    c = _dhn1h()
    assert c.data.dataset == "fashion-mnist"
    assert c.system.kind == "deep_hopfield"
    assert c.system.sizes == [784, 1024, 10]
    assert c.system.bounds == [0.0, 1.0] and c.system.output_bounds is None
    assert c.cost.kind == "squared_error"
    assert c.train.batch_size == 16
    assert (c.solver.kind, c.solver.order, c.solver.iterations) == ("block_coordinate", "odd-even", 15)
    assert c.nudged_solver is None  # the nudged phases use the same 15 odd-even sweeps
    assert (c.rule.kind, c.rule.variant, c.rule.beta) == ("eqprop", "centered", 0.2)
    assert c.optimizer.kind == "sgd" and c.optimizer.lr == [0.05, 0.05]
    assert c.optimizer.momentum == 0.0 and c.optimizer.weight_decay == 0.0
    assert (c.schedule.kind, c.schedule.gamma) == ("exponential", 0.99)
    assert c.train.dtype == "float32" and c.train.device == "cpu"


def test_deeper_presets_use_their_own_nudged_solver_and_per_layer_rates() -> None:
    two, three = load_preset("fmnist-dhn2h"), load_preset("fmnist-dhn3h")
    assert two.system.sizes == [784, 1024, 1024, 10]
    assert (two.solver.iterations, two.nudged_solver) == (50, BlockCoordinate(iterations=20))
    assert two.optimizer.lr == [0.2, 0.05, 0.01]
    assert three.system.sizes == [784, 1024, 1024, 1024, 10]
    assert (three.solver.iterations, three.nudged_solver) == (100, BlockCoordinate(iterations=10))
    assert three.optimizer.lr == [0.2, 0.05, 0.01, 0.002]


def test_preset_inheritance_quick_is_dhn1h_for_one_epoch() -> None:
    quick, base = load_preset("fmnist-quick"), _dhn1h()
    assert quick.train.epochs == 1 and base.train.epochs == 100
    same = dataclasses.replace(
        quick,
        name=base.name,
        description=base.description,
        train=dataclasses.replace(quick.train, epochs=base.train.epochs),
        measured=base.measured,  # measurements belong to the preset that produced them
    )
    assert same == base
    mnist = load_preset("mnist-dhn1h")
    assert mnist.data.dataset == "mnist"
    assert mnist.measured == {}  # not inherited: no MNIST run was made
    kept = dataclasses.replace(mnist, name=base.name, description=base.description, data=base.data)
    assert dataclasses.replace(kept, measured=base.measured) == base


def test_unknown_preset_suggests_the_close_name() -> None:
    with pytest.raises(ConfigError, match="no preset named 'fmnist-dhn1'") as info:
        load_preset("fmnist-dhn1")
    assert info.value.hint is not None
    assert "did you mean 'fmnist-dhn1h'?" in info.value.hint
    assert "fmnist-quick" in info.value.hint  # and the list of available presets


# -- overrides ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "get", "expected"),
    [
        ("train.epochs=3", lambda c: c.train.epochs, 3),
        ("rule.beta=0.1", lambda c: c.rule.beta, 0.1),
        ("rule.beta=1e-2", lambda c: c.rule.beta, 0.01),
        ("optimizer.lr=1", lambda c: c.optimizer.lr, 1.0),  # an int widened to a float
        ("optimizer.lr=[0.1, 0.05]", lambda c: c.optimizer.lr, [0.1, 0.05]),
        ("optimizer.lr=0.3", lambda c: c.optimizer.lr, 0.3),  # one rate instead of a list
        ("system.gains=[0.5,0.6]", lambda c: c.system.gains, [0.5, 0.6]),
        ("data.validation=100", lambda c: c.data.validation, 100),
        ("data.validation=0.1", lambda c: c.data.validation, 0.1),
        ('data.data_dir="/data/with space"', lambda c: c.data.data_dir, "/data/with space"),
        ("data.data_dir=datasets/fmnist", lambda c: c.data.data_dir, "datasets/fmnist"),  # a bare word
        ("rule.variant=negative", lambda c: c.rule.variant, "negative"),  # a bare word
        ("rule.variant='positive'", lambda c: c.rule.variant, "positive"),  # a TOML literal string
        ("solver.tol=1e-4", lambda c: c.solver.tol, 1e-4),
        (["rule.kind=backprop", "rule.steps=5"], lambda c: c.rule.steps, 5),  # a setting of another kind
        ("train.dtype=float64", lambda c: c.train.dtype, "float64"),
        (" train.seed = 7 ", lambda c: c.train.seed, 7),  # whitespace around key and value
        ("name=mine", lambda c: c.name, "mine"),
        ('measured.note="hi"', lambda c: c.measured["note"], "hi"),  # free-form table
    ],
)
def test_apply_overrides_parses_toml_literals(item: str | list[str], get, expected) -> None:
    config = apply_overrides(_dhn1h(), item if isinstance(item, list) else [item])
    value = get(config)
    assert value == expected
    assert type(value) is type(expected)


def test_apply_overrides_leaves_the_original_untouched_and_applies_in_order() -> None:
    base = _dhn1h()
    changed = apply_overrides(base, ["train.epochs=3", "train.epochs=4", "rule.variant=positive"])
    assert (changed.train.epochs, changed.rule.variant) == (4, "positive")
    assert (base.train.epochs, base.rule.variant) == (100, "centered")
    assert apply_overrides(base, []) == base


@pytest.mark.parametrize(
    ("item", "message", "hint"),
    [
        ("rul.beta=0.1", "unknown section 'rul'", "did you mean 'rule'?"),
        ("rule.bta=0.1", "unknown setting 'bta' in 'rule'", "did you mean rule.beta?"),
        ("train.epoch=3", "unknown setting 'epoch' in 'train'", "did you mean train.epochs?"),
        ("optimizer.lr.x=1", "unknown section 'optimizer.lr'", "sections"),
        ("epochs=3", "unknown setting 'epochs'", "known"),
    ],
)
def test_unknown_keys_are_errors_with_a_hint(item: str, message: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        apply_overrides(_dhn1h(), [item])
    assert info.value.hint is not None and hint in info.value.hint


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ('train.epochs="x"', "train.epochs = 'x': expected an integer"),
        ("train.epochs=1.5", "expected an integer"),
        ("train.epochs=true", "expected an integer"),
        ("rule.beta=[1]", r"rule.beta = \[1\]: expected a number"),
        ("rule.beta=fast", "rule.beta = 'fast': expected a number"),
        ("system.sizes=5", "expected a list of int"),
        ("system.sizes=[784, 1.5, 10]", r"system.sizes\[1\] = 1.5: expected an integer"),
        ("data.data_dir=3", "data.data_dir = 3: expected"),
        ("train=5", "expected a table of TrainConfig fields"),
        ("train.epochs=-1", "train.epochs = -1: must be >= 0"),
        ("train.batch_size=0", "train.batch_size = 0: must be >= 1"),
        ("system.sizes=[784]", "need at least two positive widths"),
        ("system.sizes=[784,0,10]", "need at least two positive widths"),
        ("optimizer.lr=0", "must be > 0"),
        ("optimizer.lr=[0.1,-0.1]", "must be > 0"),
        ("rule.beta", "expected section.field=value"),
        ("=3", "expected section.field=value"),
    ],
)
def test_bad_values_are_config_errors(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(_dhn1h(), [item])


@pytest.mark.parametrize(
    ("item", "hint"),
    [
        ("rule.variant=centred", "did you mean 'centered'?"),
        ("solver.order=odd_even", "did you mean 'odd-even'?"),
        ("rule.kind=eqprob", "did you mean 'eqprop'?"),
        ("data.dataset=fashion_mnist", "did you mean 'fashion-mnist'?"),
    ],
)
def test_literal_choices_are_checked(item: str, hint: str) -> None:
    with pytest.raises(ConfigError, match="choose one of") as info:
        apply_overrides(_dhn1h(), [item])
    assert info.value.hint == hint


def test_nudged_solver_override_starts_from_the_free_solver() -> None:
    base = _dhn1h()
    config = apply_overrides(base, ["nudged_solver.iterations=7"])
    assert config.nudged_solver == dataclasses.replace(base.solver, iterations=7)
    assert config.solver == base.solver
    run = build(apply_overrides(config, ["system.sizes=[6,5,3]"]))
    assert (run.solver.iterations, run.nudged_solver.iterations) == (15, 7)
    # a preset with its own nudged solver keeps its other fields
    two = apply_overrides(load_preset("fmnist-dhn2h"), ["nudged_solver.order=forward"])
    assert two.nudged_solver == BlockCoordinate(iterations=20, order="forward")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("schedule.gamma=nan", "schedule.gamma = nan: expected a finite number"),
        ("schedule.gamma=inf", "schedule.gamma = inf: expected a finite number"),
        ("schedule.gamma=-1", r"schedule.gamma = -1.0: must be > 0"),
        ("schedule.gamma=0", r"schedule.gamma = 0.0: must be > 0"),
        ("optimizer.momentum=-1", r"optimizer.momentum = -1.0: must be >= 0"),
        ("optimizer.weight_decay=-1", r"optimizer.weight_decay = -1.0: must be >= 0"),
        ("solver.iterations=0", "solver.iterations = 0: a training run needs at least one sweep per phase"),
        (
            "nudged_solver.iterations=0",
            "nudged_solver.iterations = 0: a training run needs at least one sweep",
        ),
        ("rule.beta=nan", "rule.beta = nan: expected a finite number"),
        ("data.classes=[0]", "data.classes = \\[0\\]: give at least two class labels"),
        ("data.classes=[0, -1]", "give at least two class labels >= 0"),
        ("data.classes=[0, 1, 0]", "list each class once"),
        ("data.classes=[0, 1.5]", r"data.classes = \[0, 1.5\]: expected list\[int\]"),
        ("data.train_size=0", "data.train_size = 0: must be >= 1"),
        ("data.test_size=-5", "data.test_size = -5: must be >= 1"),
        (["data.train_size=10", "data.validation=10"], "leaves none of data.train_size = 10"),
        ("data.crop=-1", "data.crop = -1: must be >= 0"),
        ("data.downsample=0", "data.downsample = 0: must be >= 1"),
    ],
)
def test_values_no_run_can_use_are_one_config_error(item: str | list[str], message: str) -> None:
    """Each is refused when the config is read, as one ConfigError naming the setting and the value (not later, as
    a NaN learning rate or a run that never moves)."""
    with pytest.raises(ConfigError, match=message):
        apply_overrides(_dhn1h(), item if isinstance(item, list) else [item])


TEN_BY_TEN = [  # Stern et al.'s small-data "10x10 digits" task, on Fashion-MNIST
    "data.classes=[0, 1, 2]",
    "data.crop=4",
    "data.downsample=2",
    "data.train_size=40",
    "data.test_size=15",
    "system.sizes=[100, 16, 3]",
]


@pytest.mark.usefixtures("quiet_torch")
def test_crop_downsample_and_classes_set_the_input_and_output_the_system_must_have(fake_data) -> None:
    from eqprop.train import load_data
    from eqprop.train.config import data_options

    config = apply_overrides(_dhn1h(), [*TEN_BY_TEN, f'data.data_dir="{fake_data}"', "data.validation=4"])
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config
    options = data_options(config)
    assert (options["classes"], options["crop"], options["downsample"]) == ([0, 1, 2], 4, 2)
    assert (options["train_size"], options["test_size"]) == (40, 15)
    assert "crop" not in data_options(_dhn1h())  # at their defaults, the options are as before
    run = build(config)
    data = load_data(config, run.device, run.dtype)
    assert data.classes == 3 and data.image_shape == (1, 10, 10)
    assert data.train.x.shape == (36, 100) and data.validation is not None and len(data.validation) == 4
    assert data.test.x.shape == (15, 100) and set(data.train.y.tolist()) <= {0, 1, 2}
    # the input width and the output width follow the preprocessing
    for sets, message in [
        (["system.sizes=[784, 16, 3]"], r"sizes\[0\] expects inputs of shape \[784\].*\[100\]"),
        (["system.sizes=[100, 16, 10]"], "predicts 10 classes but fashion-mnist has 3"),
        (["data.pad_to=12", "system.sizes=[100, 16, 3]"], r"\[100\] but .*\[144\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_data(apply_overrides(config, sets), run.device, run.dtype)
    padded = apply_overrides(config, ["data.pad_to=12", "system.sizes=[144, 16, 3]"])
    assert load_data(padded, run.device, run.dtype).image_shape == (1, 12, 12)
    # data given from Python is selected and resampled the same way
    from eqprop.data import Dataset, Split, from_arrays

    rng = np.random.default_rng(0)
    labels = np.arange(150) % 10  # 45 training and 18 test examples of classes 0, 1, 2
    given = from_arrays(rng.random((150, 28, 28)), labels, rng.random((60, 28, 28)), labels[:60], classes=10)
    mine = load_data(config, run.device, run.dtype, given=given)
    assert mine.validation is not None and (mine.classes, mine.image_shape) == (3, (1, 10, 10))
    assert (len(mine.train), len(mine.validation), len(mine.test)) == (36, 4, 15)
    flat = Dataset(
        name="flat",
        train=Split(x=given.train.x.flatten(1), y=given.train.y),
        test=given.test,
        validation=None,
    )
    with pytest.raises(ConfigError, match=r"data.crop, data.downsample, .* need images \(n, C, H, W\)"):
        load_data(config, run.device, run.dtype, given=flat)
    plain = apply_overrides(config, ["data.crop=0", "data.downsample=1", "system.sizes=[784, 16, 3]"])
    assert load_data(plain, run.device, run.dtype, given=flat).train.x.shape == (36, 784)


def test_changing_a_sections_kind_keeps_only_the_shared_settings() -> None:
    quick = load_preset("fmnist-quick")
    assert quick.rule == EqProp(beta=0.2, variant="centered")
    # EqProp -> AEqprop: AEqprop's defaults, with the beta and variant both kinds have
    aeq = apply_overrides(quick, ["rule.kind=aeqprop"])
    assert aeq.rule == AgnosticEqProp(beta=0.2, variant="centered")
    assert aeq.rule.epsilon == AgnosticEqProp().epsilon and AgnosticEqProp().beta == 0.25
    # the order of the items does not matter: the kind is applied first
    assert apply_overrides(quick, ["rule.beta=0.1", "rule.kind=aeqprop"]).rule == AgnosticEqProp(beta=0.1)
    # EqProp -> contrastive learning, which has neither beta nor variant: both dropped
    cl = apply_overrides(quick, ["rule.kind=contrastive"])
    assert cl.rule == ContrastiveLearning()
    assert config_to_dict(cl)["rule"] == {"kind": "contrastive"}
    with pytest.raises(ConfigError, match="unknown setting 'beta' in 'rule'"):
        apply_overrides(cl, ["rule.beta=0.1"])
    # SGD -> Adam: the rates are kept, the momentum (SGD's own) is dropped
    adam = apply_overrides(quick, ["optimizer.kind=adam"])
    assert adam.optimizer == AdamConfig(lr=[0.05, 0.05])
    assert "momentum" not in config_to_dict(adam)["optimizer"] and not hasattr(adam.optimizer, "momentum")
    with pytest.raises(ConfigError, match="unknown setting 'momentum' in 'optimizer'"):
        apply_overrides(adam, ["optimizer.momentum=0.9"])
    # and back: SGD's defaults for what Adam lacks
    assert apply_overrides(adam, ["optimizer.kind=sgd"]).optimizer == quick.optimizer
    # Adam's fused kernel: off by default (torch's own default, bit-identical runs), on when asked
    assert build(adam).optimizer.defaults["fused"] is None
    fused = apply_overrides(adam, ["optimizer.fused=true"])
    assert build(fused).optimizer.defaults["fused"] is True
    with pytest.raises(ConfigError, match=r"optimizer\.fused"):
        apply_overrides(adam, ['optimizer.fused="yes"'])


@pytest.mark.parametrize(
    ("sets", "message", "hint"),
    [
        (
            ["rule.kind=contrastive", "cost.kind=cross_entropy_readout"],
            "ContrastiveLearning clamps the output layer at the target.*got CrossEntropyReadout",
            "cost.kind = squared_error",
        ),
        (
            ["rule.kind=coupled", "cost.kind=cross_entropy_readout"],
            "CoupledLearning clamps the output layer at the target.*got CrossEntropyReadout",
            "cost.kind = squared_error",
        ),
        (
            ["rule.kind=aeqprop", "cost.kind=cross_entropy_readout"],
            "AgnosticEqProp trains the system's own parameters; a cost with parameters",
            "squared_error",
        ),
        (
            ["rule.kind=aeqprop", "optimizer.momentum=0.9"],
            r"rule.kind = aeqprop .* must be plain SGD \(got SGD with momentum 0.9",
            "optimizer.momentum=0",
        ),
        (
            ["rule.kind=aeqprop", "optimizer.kind=adam"],
            r"rule.kind = aeqprop .* must be plain SGD \(got Adam",
            "optimizer.kind=sgd",
        ),
    ],
)
def test_pieces_that_do_not_fit_together_are_refused_by_build(
    sets: list[str], message: str, hint: str
) -> None:
    """The rule's and the system's checks need the built objects: the config reads, build() refuses it."""
    config = apply_overrides(_dhn1h(), ["system.sizes=[12,8,10]", *sets])
    with pytest.raises(ConfigError, match=message) as info:
        build(config)
    assert info.value.hint is not None and hint in info.value.hint


@pytest.mark.parametrize("lr", ["[0.1]", "[0.1, 0.2, 0.3]"])
def test_per_layer_rates_of_the_wrong_length_are_errors(lr: str) -> None:
    with pytest.raises(ConfigError, match="one per layer"):
        apply_overrides(_dhn1h(), [f"optimizer.lr={lr}"])


def test_changing_the_depth_needs_matching_per_layer_rates() -> None:
    with pytest.raises(
        ConfigError, match=r"optimizer\.lr = \[0\.05, 0\.05\]: .*one per layer \(3 for 784-64-32-10 "
    ):
        apply_overrides(_dhn1h(), ["system.sizes=[784,64,32,10]"])
    config = apply_overrides(_dhn1h(), ["system.sizes=[784,64,32,10]", "optimizer.lr=[0.1,0.05,0.01]"])
    assert config.optimizer.lr == [0.1, 0.05, 0.01]
    assert apply_overrides(_dhn1h(), ["system.sizes=[784,64,32,10]", "optimizer.lr=0.1"]).optimizer.lr == 0.1


# -- config_from_dict / config_to_dict ----------------------------------------------------------------------------
def test_config_from_dict_rejects_unknown_sections_with_a_hint() -> None:
    data = config_to_dict(_dhn1h())
    data["trian"] = data.pop("train")
    with pytest.raises(ConfigError, match="unknown setting 'trian'") as info:
        config_from_dict(data)
    assert info.value.hint is not None and "did you mean 'train'?" in info.value.hint


def test_config_from_dict_fills_defaults() -> None:
    assert config_from_dict({}) == RunConfig()
    assert config_from_dict({"train": {"epochs": 2}}).train.epochs == 2


@settings(max_examples=60, deadline=None, database=None)
@given(
    beta=st.floats(1e-4, 0.9),
    lr=st.one_of(
        st.floats(1e-6, 10.0),
        st.lists(st.floats(1e-6, 10.0), min_size=2, max_size=2),
    ),
    epochs=st.integers(0, 1000),
    batch_size=st.integers(1, 4096),
    iterations=st.integers(1, 500),
    gamma=st.floats(0.5, 1.0),
    validation=st.one_of(st.integers(0, 1000), st.floats(0.0, 0.99)),
    tol=st.one_of(st.none(), st.floats(1e-9, 1e-2)),
)
def test_config_round_trips_through_dict_and_json(
    beta: float,
    lr: float | list[float],
    epochs: int,
    batch_size: int,
    iterations: int,
    gamma: float,
    validation: int | float,
    tol: float | None,
) -> None:
    base = _dhn1h()
    config = dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, validation=validation),
        solver=dataclasses.replace(base.solver, iterations=iterations, tol=tol),
        rule=dataclasses.replace(base.rule, beta=beta),
        optimizer=dataclasses.replace(base.optimizer, lr=lr),
        schedule=dataclasses.replace(base.schedule, gamma=gamma),
        train=dataclasses.replace(base.train, epochs=epochs, batch_size=batch_size),
    )
    assert config_from_dict(config_to_dict(config)) == config
    # what `eqprop train` writes to config.json and the checkpoint reads back
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config


def test_overrides_round_trip_through_their_own_text() -> None:
    """Every field written back as `--set key=json(value)` reproduces the config (the CLI's flag path)."""
    config = apply_overrides(_dhn1h(), ["rule.beta=0.125", "optimizer.lr=[0.25, 0.5]", "solver.tol=1e-5"])
    items = [
        f"{section}.{key}={json.dumps(value)}"
        for section, table in config_to_dict(config).items()
        if isinstance(table, dict) and section not in ("measured", "published")
        for key, value in table.items()
        if value is not None
    ]
    rebuilt = apply_overrides(RunConfig(), items)
    assert rebuilt == dataclasses.replace(config, name="custom", description="", published={}, measured={})


# -- build --------------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("quiet_torch")
@pytest.mark.parametrize(
    ("sets", "rule_type", "cost_type", "solver_type"),
    [
        ([], EqProp, SquaredError, BlockCoordinate),
        (["rule.variant=positive", "solver.kind=gradient_flow"], EqProp, SquaredError, GradientFlow),
        (["rule.kind=implicit", "solver.iterations=60"], ImplicitDiff, SquaredError, BlockCoordinate),
        (["rule.kind=backprop", "rule.steps=3"], BackpropThroughSolver, SquaredError, BlockCoordinate),
        (["cost.kind=cross_entropy_readout", "cost.classes=3"], EqProp, CrossEntropyReadout, BlockCoordinate),
        (["system.sizes=[12,8,6,3]", "optimizer.lr=[0.1,0.1,0.1]"], EqProp, SquaredError, BlockCoordinate),
        (
            ['system.activation="sigmoid"', "system.output_bounds=[0,1]", 'solver.kind="synchronous"'],
            EqProp,
            SquaredError,
            Synchronous,
        ),
    ],
)
def test_build_returns_working_objects(sets: list[str], rule_type, cost_type, solver_type) -> None:
    config = apply_overrides(_dhn1h(), ["system.sizes=[12,8,3]", *sets])
    gen = torch.Generator().manual_seed(0)
    run = build(config)
    system, cost, solver, nudged, rule = run.system, run.cost, run.solver, run.nudged_solver, run.rule
    assert isinstance(rule, rule_type) and isinstance(cost, cost_type) and isinstance(solver, solver_type)
    assert nudged is None
    assert [w.shape[1] for w in system.weights] == config.system.sizes[:-1]
    # the same seed (train.seed) gives the same initial weights; another seed, others
    again = build(config).system
    assert all(torch.equal(a, b) for a, b in zip(system.parameters(), again.parameters(), strict=True))
    other = build(apply_overrides(config, ["train.seed=1"])).system
    assert any(not torch.equal(a, b) for a, b in zip(system.parameters(), other.parameters(), strict=True))

    optimizer = run.optimizer
    x = torch.rand(4, config.system.sizes[0], generator=gen)
    y = torch.randint(0, 3, (4,), generator=gen)
    before = [p.detach().clone() for p in system.parameters()]
    est = rule.gradients(system, cost, solver, x, y, out="grad")
    assert torch.isfinite(est.loss) and est.scores.shape == (4, 3)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in system.parameters())
    optimizer.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, system.parameters(), strict=True))


def test_threads_must_be_positive() -> None:
    assert apply_overrides(_dhn1h(), ["train.threads=1"]).train.threads == 1
    with pytest.raises(ConfigError, match=r"train\.threads"):
        apply_overrides(_dhn1h(), ["train.threads=0"])
