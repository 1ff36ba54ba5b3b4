"""Publishing one node's health on ``/diagnostics`` (diagnostic_msgs)."""

from __future__ import annotations

from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR

#: Absolute on purpose: the diagnostic aggregator and rqt_robot_monitor listen there.
DIAGNOSTICS_TOPIC = "/diagnostics"


class DiagnosticsPublisher:
    """Publishes a one-status DiagnosticArray named after the node's fully qualified name."""

    def __init__(self, node: Node, *, hardware_id: str) -> None:
        self._node = node
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._name = node.get_fully_qualified_name().lstrip("/")
        self.hardware_id = hardware_id

    def publish(self, level: bytes | int, message: str, values: Mapping[str, object]) -> None:
        """Publish the status now. ``values`` become key/value pairs (floats with 3 decimals)."""
        status = DiagnosticStatus(
            level=level if isinstance(level, bytes) else bytes([level]),
            name=self._name, message=message, hardware_id=self.hardware_id,
            values=[KeyValue(key=k, value=_text(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(array)


def _text(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
