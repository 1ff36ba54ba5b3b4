"""speaker_node's barge-in: the user talking over the robot interrupts it."""

from __future__ import annotations

import time
from collections.abc import Callable

from rclpy.node import Node
from rclpy.timer import Timer
from std_msgs.msg import Bool

from kos_audio.ros.qos import LATCHED_QOS


class BargeIn:
    """Interrupts speech when ``voice_activity`` stays true for ``min_speech_ms``.

    Subscribes ``voice_activity`` (std_msgs/Bool, latched, on change: echo_canceller's, which
    hears the user and not the robot). When it turns true, a one-shot timer checks
    ``min_speech_ms`` later that it is still true and that the robot is still speaking, then
    calls ``interrupt``. A shorter burst (a cough, a click) is ignored. Runs on the executor.

    Args:
        node: the node to subscribe and time on.
        min_speech_ms: how long the user's speech must last (ms).
        interrupt: called with the reason; interrupts like ``~/interrupt``.
        speaking: whether the robot is speaking now.

    Attributes:
        interrupts: barge-ins that interrupted the robot.
        ignored: voice activity that ended before ``min_speech_ms`` or came while silent.

    """

    def __init__(self, node: Node, *, min_speech_ms: float,
                 interrupt: Callable[[str], object], speaking: Callable[[], bool]) -> None:
        self._node = node
        self._min_s = min_speech_ms / 1000.0
        self._interrupt = interrupt
        self._speaking = speaking
        self._since: float | None = None
        self._timer: Timer | None = None
        self.interrupts = 0
        self.ignored = 0
        node.create_subscription(Bool, "voice_activity", self._on_voice, LATCHED_QOS)

    def _on_voice(self, msg: Bool) -> None:
        self._cancel()
        if not msg.data:
            if self._since is not None:
                self.ignored += 1
            self._since = None
            return
        self._since = time.monotonic()
        self._timer = self._node.create_timer(max(self._min_s, 0.001), self._check)

    def _check(self) -> None:
        since = self._since
        self._cancel()
        self._since = None
        if since is None:
            return
        if not self._speaking():
            self.ignored += 1
            return
        self.interrupts += 1
        spoke_ms = (time.monotonic() - since) * 1000
        self._interrupt(f"barge-in (the user spoke for {spoke_ms:.0f} ms)")

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._node.destroy_timer(self._timer)
            self._timer = None
