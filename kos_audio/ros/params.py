"""Declaring parameters once, with descriptors, from a table.

Each node lists its parameters as :class:`Param` rows; :func:`declare_all` declares them with
a ParameterDescriptor (description, range, read-only) and checks choices, so a bad value is
refused at start with one clear line naming the parameter and what it accepts.

Values are taken as users type them (:func:`coerce`): ``chunk_ms:=40`` for a float,
``sample_rate:=16000.0`` for an integer, ``device:=3`` or ``sink:=null`` for a string. ROS
parses every ``-p``, YAML and ``ros2 param set`` value by its spelling, so without this a
float parameter refuses ``40`` and a string parameter refuses ``3``. The parameters stay
statically typed (``ros2 param describe`` shows the real type); the spelling is converted
before rclpy checks the type: at declaration for overrides, and in a pre-set callback for
run-time changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

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


def coerce(default: Any, value: Any) -> Any:
    """``value`` as the type of ``default`` when its spelling means that; else unchanged.

    An integer for a float parameter becomes that float; an integral float for an integer
    parameter becomes that integer; a number, bool or null for a string parameter becomes the
    text the user typed (``3`` -> ``"3"``, ``true`` -> ``"true"``, null -> ``"null"``).
    Anything else is returned as it is, for rclpy to refuse with its type error.
    """
    if isinstance(default, str):
        if value is None or isinstance(value, bool):
            return {None: "null", True: "true", False: "false"}[value]
        return str(value) if isinstance(value, (int, float)) else value
    if isinstance(default, bool) or isinstance(value, bool):
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _coerced(param: Parameter, defaults: dict[str, Any]) -> Parameter:
    if param.name not in defaults:
        return param
    value = coerce(defaults[param.name], param.value)
    return param if value is param.value else Parameter(param.name, value=value)


def declare_all(node: Node, params: Iterable[Param]) -> dict[str, Any]:
    """Declare every parameter and return ``{name: value}`` with overrides applied.

    Overrides (``-p``, parameter files, launch) and later ``ros2 param set`` values are
    converted by :func:`coerce` first. Call once per node, from its constructor.

    Raises:
        ParameterError: a value has the wrong type, is out of range or not a choice.

    """
    params = list(params)
    defaults = {param.name: param.default for param in params}
    # rclpy keeps the overrides of --ros-args and parameter files in this mapping (the same
    # attribute from Humble to Kilted) and offers no public way to see them before declaring.
    overrides: dict[str, Parameter] = getattr(node, "_parameter_overrides", {})
    for name, override in list(overrides.items()):
        overrides[name] = _coerced(override, defaults)
    # Run-time changes: rclpy >= Iron converts before its type check; Humble has no such
    # hook, so there an integer for a float parameter is still refused by ros2 param set.
    if hasattr(node, "add_pre_set_parameters_callback"):
        node.add_pre_set_parameters_callback(
            lambda changes: [_coerced(change, defaults) for change in changes])
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


def on_parameters_set(node: Node, apply: Callable[[list[Parameter]], None]) -> None:
    """Call ``apply`` with every accepted run-time change (executor thread).

    rclpy's post-set callback is the place for side effects (the on-set callback only
    validates, and may be followed by another that refuses); Humble has none, so there the
    change is applied from an on-set callback that accepts everything.
    """
    if hasattr(node, "add_post_set_parameters_callback"):
        node.add_post_set_parameters_callback(apply)
        return

    def apply_and_accept(params: list[Parameter]) -> SetParametersResult:
        apply(params)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(apply_and_accept)


def device_latency(text: str) -> str | float:
    """A ``device_latency`` parameter for PortAudio: ``"high"``/``"low"``, or seconds."""
    try:
        return float(text)
    except ValueError:
        return text
