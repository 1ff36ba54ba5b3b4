"""A real rclpy node for tests, spinning on its own thread, with waiting helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

T = TypeVar("T")

RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Collected(Generic[T]):
    """Messages received on one subscription, with their receive time (time.time_ns())."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[int, T]] = []
        self._cond = threading.Condition(self._lock)

    def add(self, msg: T) -> None:
        with self._cond:
            self._items.append((time.time_ns(), msg))
            self._cond.notify_all()

    @property
    def messages(self) -> list[T]:
        with self._lock:
            return [m for _, m in self._items]

    @property
    def timed(self) -> list[tuple[int, T]]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def wait_for(self, count: int, timeout_s: float) -> list[T]:
        """Block until ``count`` messages arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._items) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"got {len(self._items)} of {count} messages "
                                         f"in {timeout_s} s")
                self._cond.wait(left)
            return [m for _, m in self._items]


class RosProbe:
    """One test node in ``namespace`` on a private executor thread.

    Topic and service names given to it are relative to ``namespace``, like the nodes under
    test see them when started with ``__ns:=namespace``.
    """

    def __init__(self, namespace: str, name: str = "probe") -> None:
        if not rclpy.ok():
            rclpy.init()
        self.node = Node(name, namespace=namespace)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()

    def _spin(self) -> None:
        while self._running and rclpy.ok():
            self._executor.spin_once(timeout_sec=0.05)

    def subscribe(self, msg_type: type[T], topic: str, qos: QoSProfile = RELIABLE) -> Collected[T]:
        """Collect every message on ``topic``."""
        box: Collected[T] = Collected()
        self.node.create_subscription(msg_type, topic, box.add, qos)
        return box

    def publisher(self, msg_type: type, topic: str, qos: QoSProfile = RELIABLE) -> Any:
        """A publisher on ``topic``."""
        return self.node.create_publisher(msg_type, topic, qos)

    def wait_for_subscribers(
        self, publisher: Any, count: int = 1, timeout_s: float = 10.0
    ) -> None:
        """Block until ``publisher`` is matched with ``count`` subscriptions."""
        wait_until(lambda: publisher.get_subscription_count() >= count, timeout_s,
                   f"no subscriber on {publisher.topic_name}")

    def call(self, srv_type: type, name: str, request: Any, timeout_s: float = 10.0) -> Any:
        """Call a service (waiting for it first); the response."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise AssertionError(f"service {name} not available")
            future = client.call_async(request)
            wait_until(future.done, timeout_s, f"service {name} did not answer")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self._running = False
        self._thread.join(2)
        self._executor.remove_node(self.node)
        self.node.destroy_node()


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str = "condition") -> None:
    """Poll ``predicate`` until true; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s: {what}")
        time.sleep(0.02)


def wait_recorder_has_format(probe: Any, node: str, timeout_s: float = 30.0) -> None:
    """Until the recorder's /diagnostics say it has an audio_info (so ``~/start`` can work)."""
    from diagnostic_msgs.msg import DiagnosticArray

    name = node.lstrip("/")
    diags = probe.subscribe(DiagnosticArray, "/diagnostics")

    def has_format() -> bool:
        for array in diags.messages:
            for status in array.status:
                if status.name == name:
                    values = {kv.key: kv.value for kv in status.values}
                    if not values.get("input_format", "no ").startswith("no "):
                        return True
        return False
    wait_until(has_format, timeout_s, f"{node} reporting its input format")
