"""speaker_node into Resonite's virtual microphone: topic -> Resonite latency, CPU, drops.

    scripts/benchmark.py resonite [--seconds 30] [--period 2.0] [--lead-ms 100]

A Resonite IO test server (tests/servers: the mod's 2 s drop-oldest ring buffer drained by a
480-sample engine tick every 10 ms) runs in this process on a Unix socket; speaker_node runs
as its own process with ``sink: resonite_mic``. Every ``--period`` s a publisher here sends a
1.2 s utterance (16 kHz mono S16LE, 20 ms AudioData chunks) on the node's ``audio`` topic,
in two cases: all chunks at once (a TTS publishing a sentence) and paced to real time (a
streaming TTS). Measured per utterance, all on this process's monotonic clock:

- topic -> Resonite: publish of the first chunk to the server receiving the first frame;
- topic -> played: to the first engine tick that played the utterance;
- the Resonite buffer's peak (the sink's lead bound), ring-buffer drops, summary mismatches
  and underruns (from the node's diagnostics), and the streams per utterance;
- CPU of the speaker_node process, and of the same workload on ``sink: null`` (baseline: the
  engine and DDS without the Resonite sink).

The server shares this process's GIL with the publisher; its timings include that.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the test harness and the test servers

from kos_testing.procs import NodeProcess
from servers.resonite_io_server import ResoniteIoServer

from benchmarks.common import CpuMeter, percentiles

RATE = 16000
CHUNK = 320  # 20 ms of 16 kHz
UTTERANCE_S = 1.2
SPEAKER = "kos_audio.nodes.speaker_node"
#: Diagnostics come every second.
DIAG_WAIT_S = 1.5


def utterance() -> bytes:
    """1.2 s of a synthetic voice (a chirp under a syllable envelope), S16LE, loud from 0."""
    t = np.arange(round(UTTERANCE_S * RATE)) / RATE
    envelope = 0.35 + 0.25 * np.sin(2 * np.pi * 3.3 * t)
    x = envelope * np.sin(2 * np.pi * (200 * t + 180 * t * t) + np.pi / 2)
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


class Publisher:
    """The TTS side: AudioData on ``audio``, the format latched on ``audio_info``."""

    def __init__(self, namespace: str) -> None:
        from audio_common_msgs.msg import AudioData, AudioInfo
        from diagnostic_msgs.msg import DiagnosticArray
        from kos_testing.ros import LATCHED, RosProbe

        self.probe = RosProbe(namespace, name="bench_tts")
        self._msg = AudioData
        self.pub = self.probe.publisher(AudioData, "audio")
        self.info = self.probe.publisher(AudioInfo, "audio_info", LATCHED)
        self.info.publish(AudioInfo(channels=1, sample_rate=RATE, sample_format="S16LE",
                                    bitrate=RATE * 16, coding_format="wave"))
        self.diags = self.probe.subscribe(DiagnosticArray, "/diagnostics")
        self.namespace = namespace

    def say(self, pcm: bytes, *, real_time: bool) -> int:
        """Publish one utterance; the monotonic ns just before its first chunk."""
        start = time.monotonic_ns()
        step = CHUNK * 2
        for k, i in enumerate(range(0, len(pcm), step)):
            if real_time:
                due = start + k * 20_000_000
                time.sleep(max(0.0, (due - time.monotonic_ns()) / 1e9))
            self.pub.publish(self._msg(data=pcm[i : i + step]))
        return start

    def diagnostics(self, node: str) -> dict[str, str]:
        name = f"{self.namespace.lstrip('/')}/{node}"
        for array in reversed(self.diags.messages):
            for status in array.status:
                if status.name == name:
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def close(self) -> None:
        self.probe.close()


def watch_buffer(server: ResoniteIoServer, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], server.buffered_samples)
        time.sleep(0.001)


def run_case(sink: str, *, real_time: bool, seconds: float, period: float, lead_ms: float,
             socket_dir: Path) -> dict[str, Any]:
    """One workload on one sink; the measurements."""
    namespace = f"/bench_resonite_{os.getpid()}_{sink}_{int(real_time)}"
    server = ResoniteIoServer(directory=socket_dir) if sink == "resonite_mic" else None
    if server is not None:
        server.start()
    tts = Publisher(namespace)
    params: dict[str, Any] = {"sink": sink, "resonite.lead_ms": lead_ms}
    if server is not None:
        params["resonite.socket"] = str(server.socket_path)
    node = NodeProcess(SPEAKER, namespace=namespace, params=params).start()
    pcm = utterance()
    stop, peak = threading.Event(), [0]
    try:
        tts.probe.wait_for_subscribers(tts.pub, timeout_s=30)
        if server is not None:
            deadline = time.monotonic() + 30
            while not server.pings() and time.monotonic() < deadline:
                time.sleep(0.05)
        tts.say(pcm, real_time=real_time)  # warm-up: first-use costs stay out of the numbers
        time.sleep(period)
        if server is not None:
            watcher = threading.Thread(target=watch_buffer, args=(server, stop, peak),
                                       daemon=True)
            watcher.start()
        assert node.proc is not None
        meter = CpuMeter(node.proc.pid)
        meter.start()
        sends: list[int] = []
        end = time.monotonic() + seconds
        while time.monotonic() + period <= end + 1e-6:
            began = time.monotonic()
            sends.append(tts.say(pcm, real_time=real_time))
            time.sleep(max(0.0, began + period - time.monotonic()))
        cpu = meter.stop()
        time.sleep(DIAG_WAIT_S)
        diag = tts.diagnostics("speaker")
    finally:
        stop.set()
        node.stop()
        tts.close()
    result: dict[str, Any] = {"cpu": cpu, "utterances": len(sends), "diag": diag}
    if server is not None:
        result.update(server_side(server, sends), peak_ms=peak[0] / 48.0)
        server.stop()
    return result


def server_side(server: ResoniteIoServer, sends: list[int]) -> dict[str, Any]:
    """Latencies per utterance (publish -> first frame received, -> first tick played), drops."""
    streams = server.microphone_streams()[1:]  # [0] is the warm-up
    played = server.played_chunks()
    received_ms, played_ms = [], []
    for sent, record in zip(sends, streams, strict=False):
        if not record.received_monotonic_ns:
            continue
        first = record.received_monotonic_ns[0]
        received_ms.append((first - sent) / 1e6)
        tick = next((c.monotonic_ns for c in played if c.monotonic_ns >= first), None)
        if tick is not None:
            played_ms.append((tick - sent) / 1e6)
    return {"received_ms": received_ms, "played_ms": played_ms, "streams": len(streams),
            "ring_drops": server.ring_dropped_samples,
            "frames_ok": all(r.frame_ids == list(range(len(r.frame_ids))) for r in streams)}


def report(title: str, r: dict[str, Any], baseline_cpu: float | None) -> None:
    d = r["diag"]
    print(f"{title}: {r['utterances']} utterances of {UTTERANCE_S:g} s")
    print(f"  topic -> Resonite received (ms): {percentiles(r['received_ms'])}")
    print(f"  topic -> Resonite played (ms):   {percentiles(r['played_ms'])}")
    print(f"  node's own estimate receive -> sound (ms): p50 {d.get('latency_p50_ms', '?')} "
          f"p99 {d.get('latency_p99_ms', '?')}")
    print(f"  Resonite buffer peak {r['peak_ms']:.1f} ms (lead {d.get('resonite_lead_ms')} ms);"
          f" ring drops {r['ring_drops']} samples; summary mismatches "
          f"{d.get('resonite_summary_mismatches', '?')}; underruns {d.get('underruns', '?')};"
          f" starvations {d.get('starvations', '?')}")
    print(f"  streams {r['streams']} for {r['utterances']} utterances; frame ids contiguous: "
          f"{r['frames_ok']}; sink failures {d.get('sink_failures', '?')}")
    base = f", sink null {baseline_cpu:.2f}%" if baseline_cpu is not None else ""
    print(f"  CPU speaker_node {r['cpu']:.2f}% of one core{base}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmark resonite", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--period", type=float, default=2.0)
    parser.add_argument("--lead-ms", type=float, default=100.0)
    opts = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    for key in ("RESONITE_IO_SOCKET", "RESONITE_IO_SOCKET_DIR"):
        os.environ.pop(key, None)
    with tempfile.TemporaryDirectory(prefix="rio-", dir="/tmp") as tmp:
        for real_time, title in ((False, "TTS publishes each utterance at once"),
                                 (True, "streaming TTS, chunks paced to real time")):
            kwargs = dict(real_time=real_time, seconds=opts.seconds, period=opts.period,
                          lead_ms=opts.lead_ms, socket_dir=Path(tmp))
            measured = run_case("resonite_mic", **kwargs)  # type: ignore[arg-type]
            baseline = run_case("null", **kwargs)  # type: ignore[arg-type]
            report(f"resonite_mic, {title}", measured, baseline["cpu"])
    return 0
