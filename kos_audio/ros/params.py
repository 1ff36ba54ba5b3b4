"""Declaring parameters once, with descriptors, from a table.

Each node lists its parameters as :class:`Param` rows; :func:`declare_all` declares them with
a ParameterDescriptor (description, range, read-only) and checks choices, so a bad value is
refused at start with one clear line naming the parameter and what it accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

from kos_audio.errors import KosAudioError


class ParameterError(KosAudioError, ValueError):
    """A parameter value was refused; the message names the parameter and the accepted values."""


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: name, default (its type is the parameter's type), documentation.

    ``read_only`` parameters need a restart to change (the default); ranges are inclusive.
    """

    name: str
    default: Any
    description: str
    read_only: bool = True
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: Sequence[str] = ()

    def descriptor(self) -> ParameterDescriptor:
        """The ParameterDescriptor rclpy enforces (type, range, read-only)."""
        desc = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.int_range is not None:
            desc.integer_range = [IntegerRange(from_value=self.int_range[0],
                                               to_value=self.int_range[1], step=0)]
        if self.float_range is not None:
            desc.floating_point_range = [FloatingPointRange(
                from_value=self.float_range[0], to_value=self.float_range[1], step=0.0)]
        if self.choices:
            desc.additional_constraints = "one of: " + ", ".join(self.choices)
        return desc

    def check(self, value: Any) -> None:
        """Raise :class:`ParameterError` if ``value`` is not one of :attr:`choices`."""
        if self.choices and value not in self.choices:
            raise ParameterError(
                f"parameter {self.name}={value!r} is invalid; choose one of "
                f"{', '.join(self.choices)}"
            )


def declare_all(node: Node, params: Iterable[Param]) -> dict[str, Any]:
    """Declare every parameter and return ``{name: value}`` with overrides applied.

    Raises:
        ParameterError: a value has the wrong type, is out of range or not a choice.

    """
    values: dict[str, Any] = {}
    for param in params:
        try:
            value = node.declare_parameter(param.name, param.default, param.descriptor()).value
        except InvalidParameterValueException as err:
            raise ParameterError(f"parameter {param.name} refused: {err}") from err
        except InvalidParameterTypeException as err:
            raise ParameterError(
                f"parameter {param.name} must be of type {type(param.default).__name__}: {err}"
            ) from err
        param.check(value)
        values[param.name] = value
    return values


def qos_params(default_depth: int = 50) -> list[Param]:
    """The ``qos.*`` parameters every audio topic node shares."""
    return [
        Param("qos.reliability", "reliable",
              "Reliability of the audio topics: reliable (default; every subscriber and "
              "ros2 bag match) or best_effort (drop instead of retransmitting)",
              choices=("reliable", "best_effort")),
        Param("qos.depth", default_depth,
              "History depth (messages) of the audio topics", int_range=(1, 10000)),
    ]
