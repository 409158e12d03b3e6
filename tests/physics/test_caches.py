"""The per-step caches (the resistive network's block scales 1/(a + shift) and input potentials, the solver's
concatenated residual) give exactly what recomputing gives, and are invalidated by whatever changes their
inputs: in-place parameter updates, ``.data`` replacement, dtype moves, ``load_state_dict``, a new or modified
input, a new input gain."""

from __future__ import annotations

import math

import pytest
import torch

from eqprop import BlockCoordinate, ConfigError, DeepHopfield, DeepResistive, SquaredError, solve
from eqprop.solvers import base as solver_base
from eqprop.solvers.base import _change


def make_drn(
    seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[DeepResistive, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    net = DeepResistive([6, 8, 6, 3], input_gain=2.0, generator=gen).to(dtype)
    with torch.no_grad():
        for b in net.biases:
            b.copy_(torch.randn(b.shape, generator=gen, dtype=b.dtype))
    x = torch.rand(5, 6, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (5,), generator=gen)
    return net, x, y


def fresh_scale(net: DeepResistive, k: int, shift: float | None = None) -> torch.Tensor:
    """``1/a_k`` or ``1/(a_k + shift)`` computed from the conductances now, as the uncached path does."""
    gs = [g.detach() for g in net.conductances]
    a = gs[k].sum(1)
    if k + 1 < len(gs):
        a = a + gs[k + 1].sum(0)
    a = a.clamp_min(torch.finfo(a.dtype).tiny)
    return 1.0 / a if shift is None else 1.0 / (a + shift)


def assert_scales_fresh(net: DeepResistive) -> None:
    with torch.no_grad():
        for k in range(len(net.conductances)):
            for shift in (None, 0.5, -0.25):
                got = net.block_scale(k, shift)
                assert got is net.block_scale(k, shift)  # cached: computed once per parameter update
                want = fresh_scale(net, k, shift)
                assert got.dtype == want.dtype and torch.equal(got, want)


def relax(net: DeepResistive, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    free = solve(net, x, BlockCoordinate(6), throw=False)
    nudged = solve(
        net, x, BlockCoordinate(6), cost=SquaredError(), y=y, beta=0.5, init=free.state, throw=False
    )
    return (*free.state, *nudged.state, free.stats.residual, nudged.stats.residual)


def test_block_scale_is_the_reciprocal_of_the_curvature_and_follows_in_place_updates():
    net, _, _ = make_drn()
    assert_scales_fresh(net)
    with torch.no_grad():
        before = net.block_scale(0).clone()
        before_nudged = net.block_scale(2, 0.5).clone()
        net.conductances[0].mul_(2.0)  # an optimizer step: in place, same storage
        net.conductances[2].add_(0.1)
    assert_scales_fresh(net)
    with torch.no_grad():
        assert not torch.equal(before, net.block_scale(0))
        assert not torch.equal(before_nudged, net.block_scale(2, 0.5))


def test_block_scale_follows_data_replacement_dtype_moves_and_load_state_dict():
    net, _, _ = make_drn()
    assert_scales_fresh(net)
    with torch.no_grad():
        net.conductances[1].data = net.conductances[1].data * 3.0  # new storage, no version bump
    assert_scales_fresh(net)
    net.float()
    assert_scales_fresh(net)
    with torch.no_grad():
        assert net.block_scale(1).dtype == torch.float32
    net.double()
    other, _, _ = make_drn(seed=1)
    net.load_state_dict(other.state_dict())
    assert_scales_fresh(net)
    with torch.no_grad():
        for k in range(3):
            assert torch.equal(net.block_scale(k), other.block_scale(k))
            assert torch.equal(net.block_scale(k, 0.5), other.block_scale(k, 0.5))


def test_block_scale_keeps_the_graph_when_backpropagating_through_the_relaxation():
    net, _, _ = make_drn()
    with torch.no_grad():
        cached = net.block_scale(0)
    scale = net.block_scale(0)  # autograd on and the conductances require grad: a fresh differentiable value
    assert scale is not cached and scale.grad_fn is not None
    assert torch.equal(scale.detach(), cached)
    (g0,) = torch.autograd.grad(scale.sum(), [net.conductances[0]])
    assert torch.isfinite(g0).all() and g0.abs().sum() > 0


def test_block_scale_with_a_tensor_shift_is_not_cached():
    net, _, _ = make_drn()
    shift = torch.full((6,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        a = net.block_scale(1, shift)
        b = net.block_scale(1, shift)
    assert a is not b and torch.equal(a, fresh_scale(net, 1, 0.5))


def test_relaxation_after_a_parameter_change_equals_a_fresh_network():
    net, x, y = make_drn()
    relax(net, x, y)  # fills the caches
    with torch.no_grad():
        for g in net.conductances:
            g.mul_(0.7).add_(0.01)
        net.biases[0].add_(0.3)
    other, _, _ = make_drn(seed=5)
    other.load_state_dict(net.state_dict())
    for a, b in zip(relax(net, x, y), relax(other, x, y), strict=True):
        assert torch.equal(a, b)
    net.load_state_dict(make_drn(seed=2)[0].state_dict())  # the caches must follow load_state_dict too
    other.load_state_dict(net.state_dict())
    for a, b in zip(relax(net, x, y), relax(other, x, y), strict=True):
        assert torch.equal(a, b)


def test_input_potentials_are_reused_only_for_the_same_unmodified_input():
    net, x, _ = make_drn()
    with torch.no_grad():
        first = net.prepare(x)[0]
        assert net._input_potentials(x) is net._input_potentials(x)
        x.mul_(0.5)  # modified in place: recomputed
        torch.testing.assert_close(
            net.prepare(x)[0],
            torch.addmm(net.biases[0], net.input_potentials(x), net.conductances[0].t()),
            rtol=0,
            atol=0,
        )
        assert not torch.equal(first, net.prepare(x)[0])
        other = x.clone()  # an equal but distinct tensor is recomputed (identity, not value)
        assert net._input_potentials(other) is not net._input_potentials(x)
        before = net._input_potentials(x)
        net.input_gain = 3.0  # a new gain: recomputed
        assert torch.equal(net._input_potentials(x), torch.cat((x, -x), 1) * 3.0)
        assert not torch.equal(before, net._input_potentials(x))


def test_input_potentials_keep_the_graph_of_an_input_that_requires_grad():
    net, x, _ = make_drn()
    x = x.clone().requires_grad_(True)
    drive = net.prepare(x)[0]
    assert drive.grad_fn is not None
    (gx,) = torch.autograd.grad(drive.sum(), [x])
    assert gx.abs().sum() > 0
    assert net._memo["potentials"] is None  # nothing with a graph is kept


def test_contrast_after_the_input_changes_in_place_uses_the_new_input():
    net, x, y = make_drn()
    free = solve(net, x, BlockCoordinate(6))
    nudged = solve(net, x, BlockCoordinate(6), cost=SquaredError(), y=y, beta=0.5, init=free.state)
    with torch.no_grad():
        x.add_(0.25)
        got = net.param_grad_difference(x, free.state, nudged.state)
    fresh, _, _ = make_drn()
    fresh.load_state_dict(net.state_dict())
    want = fresh.param_grad_difference(x.clone(), free.state, nudged.state)
    for name, g in want.items():
        assert torch.equal(got[name], g), name


@pytest.mark.parametrize(
    "shapes",
    [[(4, 6), (4, 3)], [(4, 8), (4, 6), (4, 3)], [(3, 5)], [(2, 3, 4), (2, 5)]],
    ids=["2-layers", "3-layers", "1-layer", "4-d"],
)
@pytest.mark.parametrize("limit", [0, 1 << 14], ids=["per-layer", "concatenated"])
def test_residual_on_concatenated_layers_equals_the_per_layer_maximum(shapes, limit, monkeypatch):
    monkeypatch.setattr(solver_base, "_CONCAT_LIMIT", limit)
    gen = torch.Generator().manual_seed(0)
    old = tuple(torch.randn(s, generator=gen) for s in shapes)
    new = tuple(torch.randn(s, generator=gen) for s in shapes)
    new[0].view(-1)[1] = math.nan
    new[-1].view(-1)[-1] = math.inf
    want = torch.stack([(b - a).abs().flatten(1).amax(1) for a, b in zip(old, new, strict=True)]).amax(0)
    residual, within = _change(old, new, "max", None)
    assert within is None
    assert torch.equal(residual.isnan(), want.isnan())
    assert torch.equal(residual.nan_to_num(-1.0), want.nan_to_num(-1.0))
    residual, within = _change(old, new, "max", 1.0)
    assert within is not None and torch.equal(within, want <= 1.0)


def test_residual_of_mixed_dtypes_is_taken_per_layer():
    old = (torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 2))
    new = (torch.full((2, 3), 0.1, dtype=torch.float64), torch.full((2, 2), 0.3))
    residual, _ = _change(old, new, "max", None)
    assert residual.dtype == torch.float64
    assert torch.equal(
        residual, torch.maximum(torch.full((2,), 0.1, dtype=torch.float64), torch.full((2,), 0.3))
    )


@pytest.mark.parametrize("system", ["drn", "dhn"])
def test_finite_flag_is_isfinite_of_the_residual(system):
    if system == "drn":
        net, x, _ = make_drn()
    else:
        net = DeepHopfield([6, 8, 3], generator=torch.Generator().manual_seed(0)).double()
        x = torch.rand(5, 6, dtype=torch.float64)
    x[1, 2] = math.nan
    x[3, 0] = math.inf
    eq = solve(net, x, BlockCoordinate(3), throw=False)
    assert torch.equal(eq.stats.finite, torch.isfinite(eq.stats.residual))
    finite_state = torch.stack([torch.isfinite(s).all(1) for s in eq.state]).all(0)
    assert torch.equal(eq.stats.finite, finite_state)
    assert not eq.stats.finite[1] and eq.stats.finite[[0, 2, 4]].all()  # NaN spreads; inf may be clipped


def test_zero_sweeps_still_check_the_solver_against_the_system():
    net = DeepHopfield([6, 5, 4, 3], generator=torch.Generator().manual_seed(0))
    net.blocks_coupled = lambda i, j: True  # type: ignore[method-assign]  # every pair interacts
    with pytest.raises(ConfigError, match="odd-even"):
        solve(net, torch.rand(2, 6), BlockCoordinate(0))
