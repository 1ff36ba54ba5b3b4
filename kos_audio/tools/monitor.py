"""audio_monitor: watch an audio topic and print what arrives, once a second.

    audio_monitor [--duration S] [--check] --ros-args -r __ns:=/mic

Subscribes ``audio_stamped`` and ``audio_info`` (relative names: remap or namespace them) and
prints the chunk rate, format, first stamps, latency (receive time minus the stamp of the
chunk's first sample), lost samples found from stamp jumps, level and dominant frequency.
With ``--check`` it exits 1 unless audio arrived and no sample was lost.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import rclpy
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from kos_audio.core import NS_PER_S, AudioFormat, SampleFormat, to_float
from kos_audio.errors import AudioFormatError
from kos_audio.ros.messages import format_of, time_ns
from kos_audio.ros.qos import LATCHED_QOS, audio_qos

DEFAULT_FORMAT = AudioFormat(16000, 1, SampleFormat.S16LE)


@dataclass
class Window:
    """What arrived since the last report."""

    chunks: int = 0
    frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    peak: float = 0.0
    tail: list[npt.NDArray[np.float32]] = field(default_factory=list)


class AudioMonitor(Node):
    """Collects statistics of ``audio_stamped``; :meth:`report` prints and resets them."""

    def __init__(self) -> None:
        super().__init__("audio_monitor")
        self.format = DEFAULT_FORMAT
        self.info_seen = False
        self.window = Window()
        self.first_stamps: list[int] = []
        self.total_frames = 0
        self.lost_frames = 0
        self.jumps = 0
        self._next_ns: int | None = None
        self.create_subscription(AudioInfo, "audio_info", self._on_info, LATCHED_QOS)
        self.create_subscription(AudioDataStamped, "audio_stamped", self._on_audio,
                                 audio_qos("reliable", 100))

    def _on_info(self, msg: AudioInfo) -> None:
        try:
            self.format = format_of(msg)
            self.info_seen = True
        except AudioFormatError as err:
            self.get_logger().error(f"audio_info refused: {err}")

    def _on_audio(self, msg: AudioDataStamped) -> None:
        now = time.time_ns()
        stamp = time_ns(msg.header.stamp)
        try:
            frames = to_float(msg.audio.data, self.format)
        except AudioFormatError as err:
            self.get_logger().error(f"chunk refused: {err}")
            return
        if len(self.first_stamps) < 3:
            self.first_stamps.append(stamp)
        if self._next_ns is not None and abs(stamp - self._next_ns) > (
                NS_PER_S // (2 * self.format.sample_rate_hz)):
            self.jumps += 1
            self.lost_frames += max(0, round((stamp - self._next_ns) * self.format.sample_rate_hz
                                             / NS_PER_S))
        self._next_ns = stamp + len(frames) * NS_PER_S // self.format.sample_rate_hz
        w = self.window
        w.chunks += 1
        w.frames += len(frames)
        w.latencies_ms.append((now - stamp) / 1e6)
        if len(frames):
            w.peak = max(w.peak, float(np.max(np.abs(frames))))
            w.tail.append(frames[:, 0])
        self.total_frames += len(frames)

    def report(self, elapsed_s: float) -> None:
        """Print one line about the last ``elapsed_s`` seconds and start a new window."""
        w, self.window = self.window, Window()
        if not w.chunks:
            print(f"[audio_monitor] no audio on {self.resolve_topic_name('audio_stamped')}",
                  flush=True)
            return
        lat = np.percentile(w.latencies_ms, [50, 99])
        x = np.concatenate(w.tail)[-self.format.sample_rate_hz:]
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        freq = float(np.argmax(spectrum)) * self.format.sample_rate_hz / len(x)
        level = 20 * np.log10(max(w.peak, 1e-9))
        print(f"[audio_monitor] {w.chunks / elapsed_s:5.1f} chunks/s  "
              f"{w.frames / elapsed_s:8.0f} frames/s  {self.format.describe()}"
              f"{'' if self.info_seen else ' (assumed: no audio_info)'}  "
              f"latency p50 {lat[0]:.1f} ms p99 {lat[1]:.1f} ms  peak {level:.1f} dBFS  "
              f"~{freq:.0f} Hz  lost {self.lost_frames} frames in {self.jumps} jumps",
              flush=True)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``audio_monitor``."""
    argv = sys.argv if args is None else args
    parser = argparse.ArgumentParser(prog="audio_monitor", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless audio arrived with no lost samples")
    opts = parser.parse_args(rclpy.utilities.remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    node = AudioMonitor()
    start = last = time.monotonic()
    try:
        while rclpy.ok() and (not opts.duration or time.monotonic() - start < opts.duration):
            rclpy.spin_once(node, timeout_sec=0.05)
            if time.monotonic() - last >= 1.0:
                node.report(time.monotonic() - last)
                last = time.monotonic()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stamps = ", ".join(f"{s / NS_PER_S:.6f}" for s in node.first_stamps)
        print(f"[audio_monitor] total {node.total_frames} frames "
              f"({node.total_frames / node.format.sample_rate_hz:.2f} s), "
              f"first stamps [{stamps}], "
              f"lost {node.lost_frames} frames", flush=True)
        ok = node.total_frames > 0 and node.lost_frames == 0 and node.jumps == 0
        node.destroy_node()
        rclpy.try_shutdown()
    return 0 if ok or not opts.check else 1


if __name__ == "__main__":
    sys.exit(main())
