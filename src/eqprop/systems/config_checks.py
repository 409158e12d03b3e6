"""Checks the layered system kinds' settings share."""

from __future__ import annotations

from eqprop.errors import ConfigError

__all__ = ["per_layer", "widths"]


def widths(sizes: list[int]) -> None:
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(f"system.sizes = {sizes}: need at least two positive widths, e.g. [784, 1024, 10]")


def per_layer(name: str, value: float | list[float], layers: int, what: str) -> None:
    if isinstance(value, list) and len(value) != layers:
        raise ConfigError(
            f"system.{name} = {value}: give one value, or one per weight matrix ({layers} for {what})"
        )
