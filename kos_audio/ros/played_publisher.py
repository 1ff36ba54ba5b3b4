"""speaker_node's ``played/`` topics: what the sink plays, stamped when it leaves the speaker.

The echo reference for echo_canceller, and the robot's side of a recorded conversation.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import numpy.typing as npt
from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from rclpy.node import Node
from rclpy.qos import QoSProfile

from kos_audio.core.formats import AudioFormat
from kos_audio.core.played_tap import PlayedTap
from kos_audio.ros.messages import audio_info, audio_messages
from kos_audio.ros.qos import LATCHED_QOS

#: How often (s) the executor checks whether anybody subscribes to played/.
SUBSCRIBER_CHECK_S = 0.5


class PlayedPublisher:
    """Publishes ``played/audio_stamped``, ``played/audio`` and ``played/audio_info`` (latched).

    The exact mix handed to the sink (speech, background, fades, silence between utterances)
    in the sink's rate and channels, S16LE, ``chunk_ms`` chunks. ``header.stamp`` is the time
    the chunk's first sample leaves the speaker (device: PortAudio's DAC time; KOS and
    Resonite: send time + lead + configured output latency), contiguous while the sink runs,
    with a stamp jump where it restarted. Nothing is done while nobody subscribes: the sink
    thread's :meth:`on_played` then returns at once, and a subscriber arriving starts a new
    timeline.

    Threads: :meth:`on_played` on the sink's real-time thread (copy, queue); stamping and
    publishing on a thread of its own; the subscriber check on the executor.

    Args:
        node: the node that owns the publishers.
        qos: profile of the audio topics.
        chunk_ms: duration of one chunk (ms).

    """

    def __init__(self, node: Node, qos: QoSProfile, *, chunk_ms: float) -> None:
        self._node = node
        self._tap = PlayedTap(chunk_ms=chunk_ms, clock_offset_ns=self._clock_offset_ns)
        self._pub_stamped = node.create_publisher(AudioDataStamped, "played/audio_stamped", qos)
        self._pub_plain = node.create_publisher(AudioData, "played/audio", qos)
        self._pub_info = node.create_publisher(AudioInfo, "played/audio_info", LATCHED_QOS)
        self._format: AudioFormat | None = None
        self.chunks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kos_audio-played", daemon=True)
        self._thread.start()
        node.create_timer(SUBSCRIBER_CHECK_S, self._check_subscribers)

    @property
    def dropped(self) -> int:
        """Blocks dropped because publishing fell behind."""
        return self._tap.dropped

    def on_played(self, samples: npt.NDArray[np.float32], fmt: AudioFormat,
                  leaves_ns: int) -> None:
        """A block the sink is about to play (its real-time thread; never blocks)."""
        self._tap.push(samples, fmt, leaves_ns)

    def _check_subscribers(self) -> None:
        self._tap.enabled = (self._pub_stamped.get_subscription_count()
                             + self._pub_plain.get_subscription_count()) > 0

    def _run(self) -> None:
        while not self._stop.is_set():
            chunks = self._tap.take(0.25)
            if not chunks:
                continue
            plain_wanted = self._pub_plain.get_subscription_count() > 0
            for fmt, chunk in chunks:
                if fmt != self._format:
                    self._format = fmt
                    self._pub_info.publish(audio_info(fmt))
                plain, stamped = audio_messages(chunk.data, chunk.stamp_ns, "speaker")
                self._pub_stamped.publish(stamped)
                if plain_wanted:
                    self._pub_plain.publish(plain)
                self.chunks += 1

    def _clock_offset_ns(self) -> int:
        return int(self._node.get_clock().now().nanoseconds) - time.time_ns()

    def close(self) -> None:
        """Stop the publishing thread (after the sink has stopped)."""
        self._stop.set()
        self._thread.join(1.0)
