"""The run: configuration and presets, the one build, the training loop, checkpoints and run folders."""

from eqprop.train.build import Run, build, load_data
from eqprop.train.config import RunConfig, config_from_dict, config_to_dict
from eqprop.train.loop import fit, resume
from eqprop.train.presets import apply_overrides, apply_rule_name, list_presets, load_preset
from eqprop.train.records import evaluate
from eqprop.train.rundir import load_run, read_checkpoint

__all__ = [
    "Run",
    "RunConfig",
    "apply_overrides",
    "apply_rule_name",
    "build",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "fit",
    "list_presets",
    "load_data",
    "load_preset",
    "load_run",
    "read_checkpoint",
    "resume",
]
