"""The data settings in configs and in fit(): new datasets, preprocessing, augmentation, the DCHN presets."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import eqprop.train.loop as loop
from eqprop import BlockCoordinate, ConvHopfield, EqProp, SquaredError, solve
from eqprop.data import Augment
from eqprop.errors import ConfigError
from eqprop.train import (
    RunConfig,
    apply_overrides,
    build,
    config_from_dict,
    config_to_dict,
    fit,
    load_data,
    load_preset,
    resume,
)
from eqprop.train.checkpoint import load_checkpoint
from eqprop.train.config import data_options
from helpers import make_fake_cifar, write_idx

pytestmark = pytest.mark.usefixtures("quiet_torch")

AUGMENT = ["data.flip=true", "data.crop_padding=2"]


# -- config -------------------------------------------------------------------------------------------------------
def test_new_data_fields_round_trip_through_dict_json_and_overrides() -> None:
    config = apply_overrides(
        load_preset("fmnist-quick"),
        [
            "data.dataset=cifar100",
            "data.coarse_labels=true",
            "data.pad_to=36",
            "data.mean=[0.5, 0.4, 0.3]",
            "data.std=[0.2, 0.2, 0.25]",
            "data.crop_padding=4",
            "data.crop_fill=edge",
            "data.flip=true",
        ],
    )
    d = config.data
    assert (d.dataset, d.coarse_labels, d.pad_to, d.crop_padding, d.crop_fill, d.flip) == (
        "cifar100",
        True,
        36,
        4,
        "edge",
        True,
    )
    assert d.mean == [0.5, 0.4, 0.3] and d.std == [0.2, 0.2, 0.25]
    assert config_from_dict(config_to_dict(config)) == config
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config
    assert data_options(config) == {
        "name": "cifar100",
        "data_dir": None,
        "validation": 0,
        "seed": 0,
        "flatten": True,
        "pad_to": 36,
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.2, 0.25],
        "coarse_labels": True,
    }
    defaults = load_preset("fmnist-quick").data
    assert (defaults.crop_padding, defaults.flip, defaults.pad_to, defaults.mean) == (0, False, None, None)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["data.crop_padding=-1"], "must be >= 0"),
        (["data.pad_to=0"], "image size in pixels"),
        (["data.mean=[0.5]"], "normalisation needs both"),
        (["data.mean=[0.5]", "data.std=[0.0]"], "must be > 0"),
        (["data.coarse_labels=true"], "cifar100 only"),
        (["data.crop_fill=reflect"], "choose one of 'zeros', 'edge'"),
        (["data.dataset=cifar"], "choose one of"),
    ],
)
def test_bad_data_settings_are_config_errors(sets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(load_preset("fmnist-quick"), sets)


# -- the DCHN presets ----------------------------------------------------------------------------------------------
# The reference values, from rain-neuromorphics/energy-based-learning papers/ebl-algorithms/{sota-dchn,
# comparative-study}.py and datasets.py: (dataset, classes, gains, beta, nudged sweeps, lrs, weight decay, epochs,
# crop padding, normalisation std).
REFERENCE = {
    "cifar10-dchn": (
        "cifar10",
        10,
        [0.4, 0.7, 0.6, 0.3, 0.4],
        0.1,
        20,
        [0.03] * 5,
        2.5e-4,
        300,
        4,
        [0.6069, 0.5982, 0.6030],
    ),
    "cifar100-dchn": (
        "cifar100",
        100,
        [0.5, 0.4, 0.5, 0.8, 0.5],
        0.25,
        15,
        [0.03, 0.04, 0.04, 0.04, 0.025],
        3.5e-4,
        100,
        4,
        [0.2675, 0.2565, 0.2761],
    ),
    "fmnist-dchn": (
        "fashion-mnist",
        10,
        0.5,
        0.25,
        15,
        [0.0625, 0.0375, 0.025, 0.02, 0.0125],
        3e-4,
        100,
        2,
        [0.3530],
    ),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_dchn_preset_has_the_reference_settings(name: str) -> None:
    dataset, classes, gains, beta, nudged, lr, wd, epochs, crop, std = REFERENCE[name]
    c = load_preset(name)
    s = c.system
    assert (c.data.dataset, c.data.crop_padding, c.data.crop_fill, c.data.flip, c.data.std) == (
        dataset,
        crop,
        "edge",
        True,
        std,
    )
    assert (s.kind, s.channels, s.kernel_size, s.padding, s.pool, s.dense, s.gains) == (
        "conv_hopfield",
        [128, 256, 512, 512],
        3,
        1,
        "max",
        [classes],
        gains,
    )
    assert s.input_shape == [1 if dataset == "fashion-mnist" else 3, 32, 32]
    assert (c.data.pad_to == 32) == (dataset == "fashion-mnist")
    assert (c.solver.iterations, c.solver.order) == (60, "odd-even")
    assert c.nudged_solver is not None and (c.nudged_solver.iterations, c.nudged_solver.order) == (
        nudged,
        "odd-even",
    )
    assert (c.rule.kind, c.rule.variant, c.rule.beta) == ("eqprop", "centered", beta)
    o = c.optimizer
    assert (o.kind, o.lr, o.lr_biases, o.momentum, o.weight_decay) == ("sgd", lr, None, 0.9, wd)
    assert (c.schedule.kind, c.schedule.eta_min) == ("cosine", 2e-6)
    assert (c.train.batch_size, c.train.epochs) == (128, epochs)
    assert c.cost.kind == "squared_error" and s.output_bounds is None
    assert c.published and not c.measured  # measured numbers come only from real runs


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_dchn_preset_builds_and_relaxes(name: str) -> None:
    config = load_preset(name)
    run = build(config)
    system, cost, solver, nudged, rule = run.system, run.cost, run.solver, run.nudged_solver, run.rule
    assert isinstance(system, ConvHopfield) and isinstance(cost, SquaredError) and isinstance(rule, EqProp)
    assert len(list(system.weights)) == config.system.layers == 5
    assert solver.iterations == 60 and nudged.iterations == REFERENCE[name][4]
    x = torch.rand(2, *config.system.input_shape, generator=torch.Generator().manual_seed(1))
    eq = solve(system, x, BlockCoordinate(iterations=2))  # a tiny relaxation of the full-size network
    classes = REFERENCE[name][1]
    assert [tuple(s.shape) for s in eq.state] == [
        (2, 128, 16, 16),
        (2, 256, 8, 8),
        (2, 512, 4, 4),
        (2, 512, 2, 2),
        (2, classes),
    ]
    assert bool(eq.stats.finite.all())
    assert all(float(s.min()) >= 0 and float(s.max()) <= 1 for s in eq.state[:-1])


# -- fit -----------------------------------------------------------------------------------------------------------
def _same_checkpoints(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    for key in ("order_generator", "augment_generator"):
        assert torch.equal(ca[key], cb[key]), key
    for name, tensor in ca["system"].items():
        assert torch.equal(tensor, cb["system"][name]), name


def test_resume_with_augmentation_is_bit_exact(tiny_config: Callable[..., RunConfig], tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fit(tiny_config(*AUGMENT, "train.epochs=2"), straight, progress=False)
    fit(tiny_config(*AUGMENT, "train.epochs=1"), resumed, progress=False)
    resume(resumed, epochs=2, progress=False)
    _same_checkpoints(straight, resumed)


def test_augmentation_changes_training_and_touches_only_training_batches(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    class Recording(Augment):
        def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            seen.append(x.shape[0])
            return super().__call__(x, generator)

    monkeypatch.setattr(loop, "Augment", Recording)
    augmented = fit(tiny_config(*AUGMENT, "data.validation=32"), tmp_path / "aug", progress=False)
    assert sum(seen) == 256 - 32  # every training example once per epoch; never validation or test data
    monkeypatch.undo()
    plain = fit(tiny_config("data.validation=32"), tmp_path / "plain", progress=False)
    a = load_checkpoint(tmp_path / "aug" / "checkpoint.pt")["system"]["weights.0"]
    b = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")["system"]["weights.0"]
    assert not torch.equal(a, b)
    assert augmented["test_accuracy"] is not None and plain["test_accuracy"] is not None


def test_an_empty_test_split_is_a_config_error_naming_it(
    tiny_config: Callable[..., RunConfig], fake_data: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(fake_data, data)
    write_idx(data / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28), dtype=np.uint8))
    write_idx(data / "t10k-labels-idx1-ubyte", np.zeros((0,), dtype=np.uint8))
    config = tiny_config(f"data.data_dir={json.dumps(str(data))}")
    with pytest.raises(ConfigError, match="the test split of fashion-mnist holds no examples") as info:
        load_data(config, torch.device("cpu"), torch.float32)
    assert info.value.hint is not None and "dataset files" in info.value.hint
    with pytest.raises(ConfigError, match="the test split of fashion-mnist holds no examples"):
        fit(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_fit_trains_a_conv_net_on_cifar10_files(tmp_path: Path) -> None:
    make_fake_cifar(tmp_path / "data", "cifar10", n=8, n_test=6)
    config = apply_overrides(
        load_preset("cifar10-dchn"),
        [
            f'data.data_dir="{tmp_path / "data"}"',
            "system.channels=[4]",
            "system.kernel_size=5",
            "system.padding=0",
            "system.gains=0.5",
            "optimizer.lr=0.01",
            "solver.iterations=3",
            "nudged_solver.iterations=2",
            "train.epochs=1",
            "train.batch_size=16",
        ],
    )
    summary: dict[str, Any] = fit(config, tmp_path / "run", progress=False)
    assert summary["epochs"] == 1 and 0.0 <= summary["test_accuracy"] <= 1.0
    with pytest.raises(ConfigError, match="input_shape"):
        fit(apply_overrides(config, ["system.input_shape=[3, 28, 28]"]), tmp_path / "bad", progress=False)
