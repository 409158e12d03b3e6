"""The run: configuration and presets, the training loop, checkpoints."""

from eqprop.train.config import RunConfig, apply_overrides, build, list_presets, load_preset
from eqprop.train.loop import evaluate, fit, load_run

__all__ = [
    "RunConfig",
    "apply_overrides",
    "build",
    "evaluate",
    "fit",
    "list_presets",
    "load_preset",
    "load_run",
]
