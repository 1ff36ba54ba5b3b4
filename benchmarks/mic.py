"""mic_node through the virtual microphone: latency, CPU and lost samples.

    scripts/benchmark.py mic [--seconds 60]

For 16 kHz mono (virtual mic) and 48 kHz 8-channel (virtual array), a continuous signal is
played into the device's feed with pacat while mic_node captures it through PortAudio; a
subscriber in this process records the latency from each chunk's stamp (its first sample's
capture time) to the subscription callback, and the stamp jumps (lost samples). Then a bare
rclpy publisher sends the same messages at the same rate, as the CPU baseline.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the test harness: NodeProcess, PulseServer, RosProbe

from kos_testing.procs import NodeProcess
from kos_testing.pulse import PulseServer

from benchmarks.common import CpuMeter, percentiles

CASES = [  # name, rate, channels, capture device, feed sink
    ("16 kHz mono", 16000, 1, "mic", "micfeed"),
    ("48 kHz 8-channel", 48000, 8, "array", "arrayfeed"),
]
CHUNK_MS = 20


def feed_forever(pulse: PulseServer, sink: str, channels: int, stop: threading.Event) -> None:
    """Play a never-ending tone into ``sink`` at 48 kHz; pacat's buffer paces the writes."""
    proc = subprocess.Popen(
        ["pacat", "--playback", f"--device={sink}", "--format=s16le", "--rate=48000",
         f"--channels={channels}", "--latency-msec=40", "--raw"],
        stdin=subprocess.PIPE, env={**os.environ, **pulse.env})
    t = np.arange(4800) / 48000
    block = np.repeat((np.sin(2 * np.pi * 500 * t) * 8000).astype("<i2")[:, None], channels, 1)
    data = block.tobytes()
    assert proc.stdin is not None
    try:
        while not stop.is_set():
            proc.stdin.write(data)
    except BrokenPipeError:
        pass
    finally:
        proc.kill()


def run_case(pulse: PulseServer, case: tuple[str, int, int, str, str], seconds: float) -> None:
    name, rate, channels, device, sink = case
    from audio_common_msgs.msg import AudioDataStamped
    from diagnostic_msgs.msg import DiagnosticArray
    from kos_testing.ros import RosProbe

    namespace = f"/bench_mic_{os.getpid()}_{channels}"
    probe = RosProbe(namespace)
    stop = threading.Event()
    feeder = threading.Thread(target=feed_forever, args=(pulse, sink, channels, stop))
    feeder.start()
    rows: list[tuple[int, int, int]] = []  # receive ns, stamp ns, bytes

    def on_audio(msg: AudioDataStamped) -> None:
        rows.append((time.time_ns(), msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                     len(msg.audio.data)))

    probe.node.create_subscription(AudioDataStamped, "audio_stamped", on_audio, 100)
    diags = probe.subscribe(DiagnosticArray, "/diagnostics")
    params = {"source": "device", "device": device, "sample_rate": rate, "channels": channels,
              "chunk_ms": float(CHUNK_MS)}
    node = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params=params).start()
    try:
        deadline = time.monotonic() + 30
        while len(rows) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert node.proc is not None
        meter = CpuMeter(node.proc.pid)
        time.sleep(1.0)
        rows.clear()
        meter.start()
        time.sleep(seconds)
        cpu = meter.stop()
        window = list(rows)
    finally:
        node.stop()
        stop.set()
        feeder.join()
    frame_bytes = 2 * channels
    latencies = [(r - s) / 1e6 for r, s, _ in window]
    lost = 0
    for (_, s0, n0), (_, s1, _) in itertools.pairwise(window):
        expected = s0 + (n0 // frame_bytes) * 10**9 // rate
        lost += max(0, round((s1 - expected) * rate / 1e9))
    input_latency_ms = 0.0
    for array in diags.messages:
        for status in array.status:
            for kv in status.values:
                if kv.key == "input_latency_ms" and status.name.startswith(namespace[1:]):
                    input_latency_ms = float(kv.value)
    size = window[0][2] if window else 0
    base_cpu = bare_publisher_cpu(size, 1000 / CHUNK_MS, seconds)
    probe.close()
    print(f"{name}: {len(window)} chunks in {seconds:.0f} s; latency stamp->callback (ms) "
          f"{percentiles(latencies)}; target p50 <= chunk {CHUNK_MS} + input latency "
          f"{input_latency_ms:.1f} + 2 = {CHUNK_MS + input_latency_ms + 2:.1f}")
    print(f"{name}: lost samples {lost}; CPU mic_node {cpu:.2f}% of one core, bare rclpy "
          f"publisher {base_cpu:.2f}% (ratio {cpu / base_cpu if base_cpu else float('nan'):.2f})")


def bare_publisher_cpu(size: int, rate_hz: float, seconds: float) -> float:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_publisher", str(size),
                             str(rate_hz), "--ros-args", "-r", f"__ns:=/bare_{os.getpid()}"],
                            cwd=ROOT, start_new_session=True)
    try:
        time.sleep(2.0)
        meter = CpuMeter(proc.pid)
        meter.start()
        time.sleep(seconds)
        return meter.stop()
    finally:
        proc.send_signal(2)
        proc.wait(10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmark mic", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    opts = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="pulse-") as tmp:
        pulse = PulseServer(Path(tmp)).start()
        try:
            for case in CASES:
                run_case(pulse, case, seconds=opts.seconds)
        finally:
            pulse.stop()
    return 0
