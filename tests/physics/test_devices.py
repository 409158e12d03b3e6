"""Device non-idealities: each pulsed response against its defining curve, rounding, variation, bias, read noise."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from eqprop import BlockCoordinate, DeepHopfield, solve
from eqprop.cli import main
from eqprop.devices import HardwareConfig, NoisyReadout
from eqprop.errors import ConfigError
from eqprop.train import apply_overrides, build, load_preset
from eqprop.train.checkpoint import load_checkpoint


def _devices(**settings: object) -> tuple[torch.nn.Parameter, object]:
    """One parameter of 5 devices at -0.5 … 0.5 and its device array in [-1, 1]."""
    holder = torch.nn.Module()
    holder.w = torch.nn.Parameter(torch.linspace(-0.5, 0.5, 5, dtype=torch.float64))
    config = HardwareConfig(update="pulsed", range=[-1.0, 1.0], rounding="deterministic", **settings)
    return holder.w, config.build(holder, torch.Generator().manual_seed(0)).arrays["w"]


def _curve(array, w0: torch.Tensor, pulses: int, sign: float) -> list[torch.Tensor]:
    """The device values after each of ``pulses`` updates of one nominal step each (one pulse per update)."""
    out, w = [], w0.clone()
    for _ in range(pulses):
        w = array.apply(w, w + sign * 0.5 * (array.dw_up + array.dw_down))
        out.append(w)
    return out


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_constant_linear_and_soft_bounds_follow_their_formulas(sign: float) -> None:
    dw = 0.01
    # constant, with an up/down asymmetry: n steps of dw(1 ± a), clipped to the range
    w, array = _devices(dw_min=dw, response="constant", up_down=0.2)
    step = dw * (1.2 if sign > 0 else 0.8)
    for n, got in enumerate(_curve(array, w.detach(), 80, sign), start=1):
        expect = (w.detach() + sign * step * n).clamp(-1, 1)
        assert torch.allclose(got, expect, atol=1e-12), n
    # soft bounds: the distance to the bound shrinks by (1 - dw/(bound - centre)) per pulse (centre 0 here)
    w, array = _devices(dw_min=dw, response="soft_bounds")
    bound = 1.0 if sign > 0 else -1.0
    for n, got in enumerate(_curve(array, w.detach(), 200, sign), start=1):
        expect = bound - (bound - w.detach()) * (1 - dw) ** n
        assert torch.allclose(got, expect, atol=1e-12), n
    # linear step with gamma 0.5: w' = w ± dw(1 ∓ 0.5 w): the same affine recurrence, in closed form
    w, array = _devices(dw_min=dw, response="linear", gamma_up=0.5, gamma_down=0.5)
    fixed = sign / 0.5  # where the step would vanish
    for n, got in enumerate(_curve(array, w.detach(), 100, sign), start=1):
        expect = (fixed - (fixed - w.detach()) * (1 - 0.5 * dw) ** n).clamp(-1, 1)  # hard bounds kept
        assert torch.allclose(got, expect, atol=1e-12), n


def test_exponential_step_follows_aihwkit_formula() -> None:
    """``Δw·max(1 − A^d e^(dγ^d z), 0)`` with ``z = 2a·w/(w_max − w_min) + b``, iterated in plain floats."""
    dw = 0.02
    w, array = _devices(dw_min=dw, response="exponential")
    a_up, a_down, g_up, g_down, a, b = (0.00081, 0.36833, 12.44625, 12.78785, 0.244, 0.2425)
    for sign in (1.0, -1.0):
        values = [float(v) for v in w.detach()]
        for got in _curve(array, w.detach(), 60, sign):
            for i, v in enumerate(values):
                z = 2 * a * v / 2.0 + b
                y = 1 - a_up * math.exp(g_up * z) if sign > 0 else 1 - a_down * math.exp(-g_down * z)
                values[i] = min(1.0, max(-1.0, v + sign * dw * max(y, 0.0)))
            assert max(abs(float(g) - v) for g, v in zip(got, values, strict=True)) < 1e-12


def test_stochastic_rounding_is_unbiased_and_bits_set_the_step() -> None:
    holder = torch.nn.Module()
    holder.w = torch.nn.Parameter(torch.zeros(200_000, dtype=torch.float64))
    config = HardwareConfig(update="pulsed", range=[-1.0, 1.0], bits=6)
    array = config.build(holder, torch.Generator().manual_seed(0)).arrays["w"]
    assert config.step == 2.0 / 64 and torch.allclose(array.dw_up, torch.full_like(array.dw_up, 2.0 / 64))
    torch.manual_seed(1)
    wanted = 0.3 * config.step
    n = array.pulses(torch.full_like(holder.w, wanted))
    assert set(n.unique().tolist()) == {0.0, 1.0}
    # E[n] = 0.3; the standard error of the mean of 200k Bernoulli(0.3) is 0.001
    assert abs(float(n.mean()) - 0.3) < 0.005
    moved = array.apply(holder.w.detach(), holder.w.detach() + wanted)
    assert abs(float(moved.mean()) - wanted) < 0.005 * config.step


def test_variation_bias_and_the_range() -> None:
    holder = torch.nn.Module()
    holder.w = torch.nn.Parameter(torch.zeros(50_000, dtype=torch.float64))
    config = HardwareConfig(
        update="pulsed", range=[-1.0, 1.0], dw_min=0.01, dw_min_dtod=0.3, bias=2.0, rounding="deterministic"
    )
    array = config.build(holder, torch.Generator().manual_seed(0)).arrays["w"]
    spread = array.dw_up / 0.01 - 1
    assert abs(float(spread.std()) - 0.3) < 0.01 and abs(float(spread.mean())) < 0.01
    assert abs(float(array.bias.std()) - 2.0) < 0.05
    # with no update asked, a biased device still moves by its rounded bias (Dillavou et al.'s drift), in its own
    # step sizes
    still = array.apply(holder.w.detach(), holder.w.detach())
    n = torch.round(array.bias)
    expect = torch.where(n > 0, array.dw_up, -array.dw_down) * n.abs()
    assert torch.allclose(still, expect, atol=1e-15) and float((still != 0).double().mean()) > 0.5
    with pytest.raises(ConfigError, match="excludes the initial values"):
        HardwareConfig(update="pulsed", range=[0.5, 1.0], bits=4).build(holder, torch.Generator())
    with pytest.raises(ConfigError, match="read_noise"):
        HardwareConfig(read_noise=-0.1)
    with pytest.raises(ConfigError, match="bits or dw_min"):
        HardwareConfig(update="pulsed", range=[0.0, 1.0])


def test_read_noise_is_on_the_measurement(f64: torch.dtype, gen: torch.Generator) -> None:
    net = DeepHopfield([6, 8, 4], gains=1.0, generator=gen)
    x, y = torch.rand(500, 6, generator=gen), torch.rand(500, 4, generator=gen)
    solver = BlockCoordinate(iterations=40)
    exact = solve(net, x, solver).state
    torch.manual_seed(0)
    read = solve(net, x, NoisyReadout(inner=solver, noise=0.05)).state
    noise = torch.cat([(r - e).flatten() for r, e in zip(read, exact, strict=True)])
    assert abs(float(noise.std()) - 0.05) < 0.002 and abs(float(noise.mean())) < 0.002
    held = solve(net, x, NoisyReadout(inner=solver, noise=0.05), clamp={1: y}).state
    assert torch.equal(held[1], y)  # clamped values are set, not measured


def test_ideal_hardware_changes_nothing(tmp_path: Path) -> None:
    config = load_preset("fmnist-quick")
    run = build(config)
    assert run.solver is config.solver and not run.hardware.pulsed


def test_a_run_on_noisy_pulsed_hardware_trains_and_resumes_bit_exactly(
    fake_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = [
        "--set", "system.sizes=[784,32,10]", "--set", "optimizer.lr=0.05", "--batch-size", "16",
        "--set", 'hardware.update="pulsed"', "--set", 'hardware.response="soft_bounds"',
        "--set", "hardware.range=[-1.5,1.5]", "--set", "hardware.bits=8", "--set", "hardware.read_noise=0.01",
        "--set", "hardware.dw_min_dtod=0.1", "--set", "hardware.c2c=0.05",
    ]  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["train", "--data-dir", str(fake_data), *sets, "--no-progress", "--no-tensorboard"]
    assert main([*common, "--epochs", "2", "--out", str(a)]) == 0
    assert main([*common, "--epochs", "1", "--out", str(b)]) == 0
    assert main(["train", "--resume", str(b), "--epochs", "2", "--no-progress"]) == 0
    capsys.readouterr()
    wa, wb = load_checkpoint(a / "checkpoint.pt")["system"], load_checkpoint(b / "checkpoint.pt")["system"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the weights sit on the devices' grid where no variation moved them: every one inside the range
    config = apply_overrides(load_preset("fmnist-quick"), ["system.sizes=[784,32,10]"])
    assert all(float(v.abs().max()) <= 1.5 for v in wa.values()) and config.hardware.update == "ideal"


def test_non_ideal_hardware_runs_in_one_process() -> None:
    holder = torch.nn.Module()
    holder.w = torch.nn.Parameter(torch.zeros(3))
    HardwareConfig().build(holder, torch.Generator()).check_data_parallel(4)  # ideal: any number of processes
    noisy = HardwareConfig(read_noise=0.01).build(holder, torch.Generator())
    noisy.check_data_parallel(1)
    with pytest.raises(ConfigError, match="one process"):
        noisy.check_data_parallel(2)
