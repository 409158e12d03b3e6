"""What the layered system kinds' settings share: their shape properties and checks."""

from __future__ import annotations

from eqprop.errors import ConfigError

__all__ = ["Layered", "per_layer", "widths"]


def widths(sizes: list[int]) -> None:
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(f"system.sizes = {sizes}: need at least two positive widths, e.g. [784, 1024, 10]")


def per_layer(name: str, value: float | list[float], layers: int, what: str) -> None:
    if isinstance(value, list) and len(value) != layers:
        raise ConfigError(
            f"system.{name} = {value}: give one value, or one per weight matrix ({layers} for {what})"
        )


class Layered:
    """A dense layered network: ``sizes`` lists the widths, input first (images are flattened)."""

    sizes: list[int]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.sizes[0],)

    @property
    def layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def output_width(self) -> int:
        return self.sizes[-1]
