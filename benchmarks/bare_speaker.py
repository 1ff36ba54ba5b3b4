"""The CPU floor of speaker_node: the same I/O with no audio work.

    python -m benchmarks.bare_speaker NAMESPACE BLOCK_MS [--background]

A bare rclpy node subscribing ``NAMESPACE/audio`` (and ``NAMESPACE/background/audio``) with
speaker_node's QoS and empty callbacks, plus a sounddevice raw output stream on the default
device (its native rate, stereo float32, ``BLOCK_MS`` blocks, latency "high", as speaker_node
opens it) whose callback writes silence. What rclpy, DDS and a PortAudio callback alone cost.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
import sounddevice
from audio_common_msgs.msg import AudioData
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy


def main() -> None:
    namespace, block_ms = sys.argv[1], float(sys.argv[2])
    background = "--background" in sys.argv[3:]
    rclpy.init()
    node = Node("bare_speaker", namespace=namespace)
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(AudioData, "audio", lambda _msg: None, qos)
    if background:
        node.create_subscription(AudioData, "background/audio", lambda _msg: None, qos)
    rate = int(sounddevice.query_devices(kind="output")["default_samplerate"])

    def callback(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        outdata[:] = bytes(len(outdata))

    stream = sounddevice.RawOutputStream(samplerate=rate, channels=2, dtype="float32",
                                         blocksize=round(rate * block_ms / 1000),
                                         latency="high", callback=callback)
    stream.start()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stream.abort()
        stream.close()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
