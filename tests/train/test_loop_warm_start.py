"""``train.warm_start``: the training loop starts each batch's free phase where the previous batch left the
system (as the official AEqprop trainer does), for every rule; every epoch's first batch, a batch of another
size, and evaluation start from zero."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eqprop.rules import AgnosticEqProp, EqProp
from eqprop.train import RunConfig, fit

pytestmark = pytest.mark.usefixtures("quiet_torch")


def record_inits(monkeypatch: pytest.MonkeyPatch, rule_class: type) -> list[tuple[object, object]]:
    """(init passed, last_state returned) of every ``gradients`` call of ``rule_class`` (the loop's one entry
    point into the rule)."""
    seen: list[tuple[object, object]] = []
    original = rule_class.gradients

    def spied(self, *args, init=None, **kwargs):
        est = original(self, *args, init=init, **kwargs)
        seen.append((init, est.last_state))
        return est

    monkeypatch.setattr(rule_class, "gradients", spied)
    return seen


@pytest.mark.parametrize("warm", [True, False])
def test_each_batch_starts_where_the_previous_one_left_the_state(
    tiny_config: Callable[..., RunConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warm: bool
) -> None:
    seen = record_inits(monkeypatch, EqProp)
    # 256 fake training images in batches of 24: 10 full batches and a last one of 16, for 2 epochs
    fit(
        tiny_config("train.epochs=2", "train.batch_size=24", f"train.warm_start={str(warm).lower()}"),
        tmp_path / "run",
        progress=False,
    )
    assert len(seen) == 2 * 11
    for epoch in (seen[:11], seen[11:]):
        inits = [init for init, _ in epoch]
        assert inits[0] is None  # every epoch starts from zero
        if warm:
            assert all(init is last for init, (_, last) in zip(inits[1:10], epoch[:9], strict=True))
            assert inits[10] is None  # 16 examples: the previous state has 24
        else:
            assert all(init is None for init in inits)


def test_aeqprop_preset_warm_starts_from_the_phase_2_state(
    fake_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AEqprop preset keeps the official trainer's warm start: the state after phase 2."""
    from eqprop.train import apply_overrides, load_preset

    seen = record_inits(monkeypatch, AgnosticEqProp)
    sets = [
        "system.sizes=[784,32,10]",
        "train.batch_size=64",
        "train.epochs=1",
        f'data.data_dir="{fake_data}"',
    ]
    summary = fit(apply_overrides(load_preset("fmnist-aeqprop-1h"), sets), tmp_path / "run", progress=False)
    assert summary["epochs"] == 1 and len(seen) == 4
    assert seen[0][0] is None
    assert all(init is last for (init, _), (_, last) in zip(seen[1:], seen[:-1], strict=True))
