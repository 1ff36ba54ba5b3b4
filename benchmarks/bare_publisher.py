"""The baseline: a bare rclpy node publishing AudioData + AudioDataStamped of N bytes at R Hz.

    python -m benchmarks.bare_publisher BYTES RATE_HZ

Same messages and rate as mic_node, no audio work: what rclpy and DDS alone cost.
"""

from __future__ import annotations

import sys
import time

import rclpy
from audio_common_msgs.msg import AudioData, AudioDataStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from kos_audio.ros.messages import pcm_array


def main() -> None:
    size, rate = int(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = Node("bare_publisher")
    pub = node.create_publisher(AudioData, "audio", 50)
    pub_stamped = node.create_publisher(AudioDataStamped, "audio_stamped", 50)
    payload = pcm_array(bytes(size))  # the efficient way, as mic_node does
    period = 1.0 / rate
    due = time.monotonic()
    try:
        while rclpy.ok():
            due += period
            time.sleep(max(0.0, due - time.monotonic()))
            plain = AudioData(data=payload)
            stamped = AudioDataStamped(audio=plain)
            stamped.header.stamp = node.get_clock().now().to_msg()
            pub.publish(plain)
            pub_stamped.publish(stamped)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
