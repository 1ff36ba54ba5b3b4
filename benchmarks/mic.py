"""mic_node through the virtual microphone: latency, CPU and lost samples.

    scripts/benchmark.py mic [--seconds 60]

For 16 kHz mono (virtual mic) and 48 kHz 8-channel (virtual array), a continuous signal is
played into the device's feed with pacat while mic_node captures it through PortAudio; a
subscriber in this process records the latency from each chunk's stamp (its first sample's
capture time) to the subscription callback, and the stamp jumps (lost samples). Then a bare
rclpy publisher sends the same messages at the same rate to the same subscriber (this
process subscribes its ``audio_stamped`` as it does mic_node's), as the CPU floor.

Then, for 16 kHz mono, the stamp offset's stability: capture is stopped and started
``--opens`` times through ``~/enable``; for each stream open, the p50 of (receive time -
stamp) over ``--open-seconds``; their spread (max - min) is what a subscriber aligning two
streams by stamp sees move from one open to the next.
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
from typing import Any

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
    base_cpu = bare_publisher_cpu(probe, size, 1000 / CHUNK_MS, seconds)
    capture_cpu = bare_capture_cpu(device, rate, channels, rate * CHUNK_MS // 1000, seconds)
    probe.close()
    print(f"{name}: {len(window)} chunks in {seconds:.0f} s; latency stamp->callback (ms) "
          f"{percentiles(latencies)}; target p50 <= chunk {CHUNK_MS} + input latency "
          f"{input_latency_ms:.1f} + 2 = {CHUNK_MS + input_latency_ms + 2:.1f}")
    floor = base_cpu + capture_cpu
    print(f"{name}: lost samples {lost}; CPU mic_node {cpu:.2f}% of one core; bare rclpy "
          f"publisher {base_cpu:.2f}% (ratio {cpu / base_cpu if base_cpu else float('nan'):.2f}); "
          f"bare PortAudio capture {capture_cpu:.2f}%; publisher + capture {floor:.2f}% "
          f"(ratio {cpu / floor if floor else float('nan'):.2f})")


def bare_publisher_cpu(probe: Any, size: int, rate_hz: float, seconds: float) -> float:
    """CPU of the bare publisher, sending to a subscriber in ``probe`` as mic_node does."""
    from audio_common_msgs.msg import AudioDataStamped

    namespace = f"/bare_{os.getpid()}_{size}"
    received = probe.subscribe(AudioDataStamped, f"{namespace}/audio_stamped")
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_publisher", str(size),
                             str(rate_hz), "--ros-args", "-r", f"__ns:={namespace}"],
                            cwd=ROOT, start_new_session=True)
    try:
        received.wait_for(50, timeout_s=30)
        time.sleep(1.0)
        meter = CpuMeter(proc.pid)
        meter.start()
        time.sleep(seconds)
        return meter.stop()
    finally:
        proc.send_signal(2)
        proc.wait(10)


def offset_spread(pulse: PulseServer, opens: int, open_seconds: float) -> None:
    """Print p50 of (receive - stamp) for each of ``opens`` stream opens, and the spread."""
    from audio_common_msgs.msg import AudioDataStamped
    from kos_testing.ros import RosProbe, wait_until
    from std_srvs.srv import SetBool

    name, rate, channels, device, sink = CASES[0]
    namespace = f"/bench_offset_{os.getpid()}"
    probe = RosProbe(namespace)
    stop = threading.Event()
    feeder = threading.Thread(target=feed_forever, args=(pulse, sink, channels, stop))
    feeder.start()
    offsets: list[float] = []
    params = {"source": "device", "device": device, "sample_rate": rate, "channels": channels,
              "chunk_ms": float(CHUNK_MS)}
    received = probe.subscribe(AudioDataStamped, "audio_stamped")
    node = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params=params).start()
    try:
        for _ in range(opens):
            received.wait_for(25, timeout_s=30)
            received.clear()
            wait_until(lambda: len(received.messages) >= open_seconds * 1000 / CHUNK_MS,
                       timeout_s=open_seconds + 30, what="audio")
            rows = [(t - m.header.stamp.sec * 10**9 - m.header.stamp.nanosec) / 1e6
                    for t, m in received.timed]
            offsets.append(float(np.percentile(rows, 50)))
            for enable in (False, True):
                probe.call(SetBool, "mic/enable", SetBool.Request(data=enable))
            received.clear()
    finally:
        node.stop()
        stop.set()
        feeder.join()
        probe.close()
    print(f"{name}: receive - stamp p50 per stream open (ms): "
          f"{' '.join(f'{o:.1f}' for o in offsets)}; spread {max(offsets) - min(offsets):.1f} ms")


def bare_capture_cpu(device: str, rate: int, channels: int, block_frames: int,
                     seconds: float) -> float:
    """CPU of capturing the same device into Python with nothing else (bare_capture)."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_capture", device, str(rate),
                             str(channels), str(block_frames)], cwd=ROOT, start_new_session=True)
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
    parser.add_argument("--opens", type=int, default=5, help="stream opens for the offset")
    parser.add_argument("--open-seconds", type=float, default=3.0)
    parser.add_argument("--only", choices=["cpu", "offset"], help="run one part only")
    parser.add_argument("--case", choices=[c[0] for c in CASES], help="run one case only")
    opts = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="pulse-") as tmp:
        pulse = PulseServer(Path(tmp)).start()
        try:
            if opts.only != "offset":
                for case in CASES:
                    if opts.case in (None, case[0]):
                        run_case(pulse, case, seconds=opts.seconds)
            if opts.only != "cpu":
                offset_spread(pulse, opts.opens, opts.open_seconds)
        finally:
            pulse.stop()
    return 0
