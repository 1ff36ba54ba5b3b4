"""The KOS bridge: KOS server -> topic (mic_node) and topic -> KOS server (speaker_node).

    scripts/benchmark.py kos [--seconds 30] [--utterances 20]

A real gRPC KOS SoundService (test/servers/kos_sound_server.py) runs in this process on
loopback; the nodes run as child processes over real DDS; a RosProbe is the other side.

- mic: mic_node ``source: kos`` records the server's known signal (16 kHz mono S16LE, 37 ms
  server chunks, paced to real time). Latency per published 20 ms chunk: from the moment its
  last sample existed at the server (its stamp + duration: stamps are anchored on the first
  chunk's arrival and then count samples) to the subscriber's callback. Loss: stamp gaps, and
  every received sample compared with the known signal.
- speaker, utterances: every 1.5 s a 0.5 s TTS-style utterance (25 chunks published at once).
  Latency: publish -> the utterance's first speech sample arriving at the server (the robot
  then adds the lead and its own output latency). Loss: each PlayAudio stream compared with
  what was published.
- speaker, streaming: 20 ms chunks published in real time for ``--seconds``. Latency per
  chunk: publish -> arrival at the server of the message carrying its first sample.

CPU is % of one core of each node process (utime + stime from /proc/<pid>/stat).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the test harness and the test KOS server

from kos_testing.procs import NodeProcess
from servers.kos_sound_server import KosSoundServer, PlayStreamRecord, record_signal

from benchmarks.common import CpuMeter, percentiles

RATE = 16_000
CHUNK = 320  # frames: 20 ms
CHUNK_BYTES = CHUNK * 2
UTTERANCE_S = 0.5
UTTERANCE_PERIOD_S = 1.5


def noise(frames: int, seed: int) -> bytes:
    """Unique S16LE "speech": noise without zero samples, so it can be found by content."""
    rng = np.random.default_rng(seed)
    values = rng.integers(1, 12_000, frames) * rng.choice([-1, 1], frames)
    return values.astype("<i2").tobytes()


def status_of(diags: Any, name: str) -> dict[str, str]:
    """The latest diagnostics values of node ``name`` (``ns/node``)."""
    for array in reversed(diags.messages):
        for status in array.status:
            if status.name == name:
                return {kv.key: kv.value for kv in status.values}
    return {}


def first_frame(data: bytes) -> int:
    """The signal frame ``data`` starts at (the first chunks may predate DDS matching)."""
    for start in range(0, 600 * RATE, CHUNK):
        if record_signal(RATE, 16, 1, start, CHUNK) == data[:CHUNK_BYTES]:
            return start
    return -1


# ---------------------------------------------------------------------------- mic


def bench_mic(seconds: float) -> None:
    from audio_common_msgs.msg import AudioDataStamped
    from diagnostic_msgs.msg import DiagnosticArray
    from kos_testing.ros import RosProbe

    namespace = f"/bench_kos_mic_{os.getpid()}"
    probe = RosProbe(namespace)
    rows: list[tuple[int, int, bytes]] = []  # receive ns, stamp ns, data

    def on_audio(msg: AudioDataStamped) -> None:
        rows.append((time.time_ns(), msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                     bytes(msg.audio.data)))

    probe.node.create_subscription(AudioDataStamped, "audio_stamped", on_audio, 100)
    diags = probe.subscribe(DiagnosticArray, "/diagnostics")
    server = KosSoundServer()
    server.start()
    node = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params={
        "source": "kos", "kos.address": server.address, "sample_rate": RATE, "channels": 1,
        "chunk_ms": 20.0}).start()
    try:
        deadline = time.monotonic() + 30
        while len(rows) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert node.proc is not None
        meter = CpuMeter(node.proc.pid)
        time.sleep(1.0)
        start = len(rows)
        meter.start()
        time.sleep(seconds)
        cpu = meter.stop()
        window = rows[start:]
        time.sleep(1.5)
        values = status_of(diags, f"{namespace[1:]}/mic")
    finally:
        node.stop()
        server.stop()
        probe.close()
    latencies = [(r - s) / 1e6 - len(d) / 2 / RATE * 1e3 for r, s, d in window]
    lost = 0
    for (_, s0, d0), (_, s1, _) in itertools.pairwise(window):
        lost += max(0, round((s1 - s0 - len(d0) // 2 * 10**9 // RATE) * RATE / 1e9))
    data = b"".join(d for _, _, d in window)
    start_frame = first_frame(data)
    expected = record_signal(RATE, 16, 1, max(start_frame, 0), len(data) // 2)
    wrong = int(np.count_nonzero(np.frombuffer(data, "<i2") != np.frombuffer(expected, "<i2")))
    print(f"mic (KOS server -> topic): {len(window)} chunks in {seconds:.0f} s; latency last "
          f"sample at server -> callback (ms) {percentiles(latencies)}")
    print(f"mic: lost samples {lost} (stamp gaps); samples differing from the server's signal "
          f"{wrong if start_frame >= 0 else 'all'} of {len(data) // 2}; server errors "
          f"{values.get('server_errors', '?')}, reconnects {values.get('errors', '?')}; "
          f"CPU mic_node {cpu:.2f}% of one core")


# ---------------------------------------------------------------------------- speaker


def lead_bytes() -> int:
    from kos_audio.backends.kos_sink import DEFAULT_LEAD_S

    return round(DEFAULT_LEAD_S * RATE) * 2


def bench_speaker(seconds: float, utterances: int) -> None:
    from audio_common_msgs.msg import AudioData
    from diagnostic_msgs.msg import DiagnosticArray
    from kos_testing.ros import RosProbe

    namespace = f"/bench_kos_speaker_{os.getpid()}"
    probe = RosProbe(namespace)
    diags = probe.subscribe(DiagnosticArray, "/diagnostics")
    server = KosSoundServer()
    server.start()
    node = NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace, params={
        "sink": "kos", "kos.address": server.address, "sample_rate": RATE, "channels": 1,
        "sample_format": "S16LE"}).start()
    pub = probe.publisher(AudioData, "audio")
    try:
        probe.wait_for_subscribers(pub, timeout_s=30)
        time.sleep(1.0)  # the sink has opened (GetAudioInfo) by now
        assert node.proc is not None
        meter = CpuMeter(node.proc.pid)
        meter.start()
        sent = speak_utterances(pub, utterances)
        cpu_utterances = meter.stop()
        time.sleep(1.0)
        streams = server.play_streams()
        report_utterances(sent, streams, cpu_utterances)
        first_stream = len(streams)
        meter.start()
        chunks = stream_realtime(pub, seconds)
        cpu_stream = meter.stop()
        time.sleep(1.5)
        report_streaming(chunks, server.play_streams()[first_stream:], cpu_stream)
        values = status_of(diags, f"{namespace[1:]}/speaker")
    finally:
        node.stop()
        server.stop()
        probe.close()
    print(f"speaker: underruns {values.get('underruns', '?')}, starvations "
          f"{values.get('starvations', '?')}, server errors {values.get('server_errors', '?')},"
          f" early answers {values.get('early_answers', '?')}, sink failures "
          f"{values.get('sink_failures', '?')}")


def speak_utterances(pub: Any, count: int) -> list[tuple[float, bytes]]:
    """Publish ``count`` utterances, all chunks at once, one every UTTERANCE_PERIOD_S."""
    from audio_common_msgs.msg import AudioData

    sent = []
    t0 = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, t0 + i * UTTERANCE_PERIOD_S - time.monotonic()))
        data = noise(round(UTTERANCE_S * RATE), seed=i)
        published = time.monotonic()
        for k in range(0, len(data), CHUNK_BYTES):
            pub.publish(AudioData(data=data[k : k + CHUNK_BYTES]))
        sent.append((published, data))
    return sent


def report_utterances(sent: list[tuple[float, bytes]], streams: list[PlayStreamRecord],
                      cpu: float) -> None:
    lead = lead_bytes()
    latencies, wrong, missing = [], 0, 0
    for published, data in sent:
        match = next((s for s in streams if s.data[lead : lead + 64] == data[:64]), None)
        if match is None:
            missing += len(data) // 2
            continue
        # Message 0 is the config, 1 the lead silence, 2 the first speech block.
        latencies.append((match.arrival_s[2] - published) * 1e3)
        got = np.frombuffer(match.data[lead : lead + len(data)], "<i2")
        want = np.frombuffer(data, "<i2")[: len(got)]
        wrong += int(np.count_nonzero(got != want))
        missing += len(data) // 2 - len(got)
    print(f"speaker utterances (topic -> KOS server): {len(sent)} x {UTTERANCE_S:g} s, "
          f"{len(streams)} PlayAudio streams; latency publish -> first speech sample at "
          f"server (ms) {percentiles(latencies)}")
    print(f"speaker utterances: samples missing {missing}, differing {wrong}; CPU "
          f"speaker_node {cpu:.2f}% of one core")


def stream_realtime(pub: Any, seconds: float) -> list[tuple[float, bytes]]:
    """Publish 20 ms chunks at real-time pace (a streaming producer) for ``seconds``."""
    from audio_common_msgs.msg import AudioData

    chunks = []
    data = noise(round(seconds * RATE), seed=10_000)
    t0 = time.monotonic()
    for i, k in enumerate(range(0, len(data), CHUNK_BYTES)):
        time.sleep(max(0.0, t0 + i * CHUNK / RATE - time.monotonic()))
        chunk = data[k : k + CHUNK_BYTES]
        chunks.append((time.monotonic(), chunk))
        pub.publish(AudioData(data=chunk))
    return chunks


def report_streaming(chunks: list[tuple[float, bytes]], streams: list[PlayStreamRecord],
                     cpu: float) -> None:
    lead = lead_bytes()
    latencies, missing = [], 0
    places: list[tuple[int, int]] = []  # (stream, byte offset) of each chunk found
    for published, chunk in chunks:
        for index, stream in enumerate(streams):
            offset = stream.data.find(chunk, lead)
            if offset >= 0:
                # Message 2 onwards each carry one 20 ms block after the lead.
                message = 2 + (offset - lead) // CHUNK_BYTES
                latencies.append((stream.arrival_s[message] - published) * 1e3)
                places.append((index, offset))
                break
        else:
            missing += 1
    # Silence the sink had to insert between consecutive chunks (the queue ran dry).
    gap_frames = sum(b - a - CHUNK_BYTES for (sa, a), (sb, b) in itertools.pairwise(places)
                     if sa == sb) // 2
    print(f"speaker streaming (topic -> KOS server): {len(chunks)} real-time 20 ms chunks, "
          f"{len(streams)} PlayAudio streams; latency publish -> server (ms) "
          f"{percentiles(latencies)}")
    print(f"speaker streaming: chunks not found intact at the server {missing}, silence "
          f"inserted between chunks {gap_frames / RATE * 1e3:.0f} ms; CPU speaker_node "
          f"{cpu:.2f}% of one core")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmark kos", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--utterances", type=int, default=20)
    opts = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    bench_mic(opts.seconds)
    bench_speaker(opts.seconds, opts.utterances)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "benchmark"
    sys.exit(main(sys.argv[1:]))
