"""speaker_node through the virtual speaker: latency, CPU and underruns.

    scripts/benchmark.py speaker [--seconds 60] [--bursts 30]

speaker_node plays on the private PulseAudio server's default sink through PortAudio while a
publisher in this process sends background sound (16 kHz mono, real-time paced) and, every
3 s, a TTS-style utterance (16 kHz mono speech from espeak-ng, or a synthetic voice without
it; all chunks published at once, as a TTS does). Measured:

- CPU of the speaker_node process over ``--seconds`` of that, from /proc/<pid>/stat;
- underruns (device underflows while audio played) and starvations (speech queue ran dry
  mid-stream) from its diagnostics;
- receive-to-first-sample-at-device latency, as the node measures it (reception to the DAC
  time of the utterance's first sample: pull time + PortAudio's output latency);
- the same end to end and independently: ``--bursts`` 1 kHz bursts are published over the
  background and found in a parec recording of the speaker's monitor; publish time to onset.
"""

from __future__ import annotations

import argparse
import os
import shutil
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

RATE = 16000
CHUNK = 320  # 20 ms
MONITOR_RATE = 48000
BLOCK_MS = 20.0
#: Diagnostics are published every second.
DIAG_WAIT_S = 1.5
SENTENCE = "The robot heard you. Here is what I found about the weather tomorrow."


def speech_clip() -> tuple[np.ndarray, str]:
    """16 kHz mono int16 speech: espeak-ng if installed, else a synthetic voice."""
    espeak = shutil.which("espeak-ng")
    if espeak:
        import soundfile
        import soxr

        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "s.wav"
            subprocess.run([espeak, "-w", str(wav), SENTENCE], check=True)
            data, rate = soundfile.read(str(wav), dtype="float32")
        data = soxr.resample(data, rate, RATE)
        loud = np.flatnonzero(np.abs(data) > 0.01)
        data = data[loud[0] : loud[-1] + 1]
        return (np.clip(data, -1, 1) * 32767).astype("<i2"), "espeak-ng"
    t = np.arange(2 * RATE) / RATE
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) * 0.3
    return (voice * envelope * 32767 / 3).astype("<i2"), "synthetic"


def background_clip() -> np.ndarray:
    """10 s of a soft two-tone chord, 16 kHz mono int16 (loops seamlessly)."""
    t = np.arange(10 * RATE) / RATE
    x = 0.25 * np.sin(2 * np.pi * 200 * t) + 0.2 * np.sin(2 * np.pi * 300 * t)
    return (x * 32767).astype("<i2")


class MonitorRecorder:
    """parec on speaker.monitor; maps sample indices to wall time from read times."""

    def __init__(self, pulse: PulseServer) -> None:
        self.proc = pulse.record(device="speaker.monitor", rate=MONITOR_RATE)
        self._data = bytearray()
        self._t0_ns: float = float("inf")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):  # type: ignore[attr-defined]
            now = time.time_ns()
            self._data.extend(chunk)
            # Sample i was captured no later than now - (n - i) / rate: the tightest bound
            # over all reads is the best estimate of the recording's start.
            n = len(self._data) // 2
            self._t0_ns = min(self._t0_ns, now - n * 1e9 / MONITOR_RATE)

    def stop(self) -> tuple[np.ndarray, float]:
        """The recording (float) and the wall time (ns) of its first sample."""
        self.proc.terminate()
        self.proc.wait(5)
        self._thread.join(5)
        n = len(self._data) // 2 * 2
        return (np.frombuffer(bytes(self._data[:n]), "<i2").astype(np.float32) / 32768.0,
                self._t0_ns)


def onsets(x: np.ndarray, t0_ns: float, published_ns: list[int]) -> list[float]:
    """Publish-to-sound latency (ms) of each 1 kHz burst: the first 1 ms window after its
    publication where the high-passed signal jumps (the 200/300 Hz background hardly passes).
    """
    hp = np.abs(np.diff(x, 2))
    win = MONITOR_RATE // 1000
    peaks = hp[: len(hp) // win * win].reshape(-1, win).max(axis=1)
    quiet = np.median(peaks)
    out = []
    for pub in published_ns:
        first = int((pub - t0_ns) / 1e6) - 20  # 1 ms windows; a little before, for safety
        search = peaks[max(0, first) : first + 500]
        hits = np.flatnonzero(search > max(0.01, 10 * quiet))
        if len(hits):
            out.append((max(0, first) + hits[0]) - (pub - t0_ns) / 1e6)
    return out


def status_of(diags: Any, namespace: str) -> dict[str, str]:
    name = f"{namespace.lstrip('/')}/speaker"
    for array in reversed(diags.messages):
        for status in array.status:
            if status.name == name:
                return {kv.key: kv.value for kv in status.values}
    return {}


def speak(audio: Any, speech: np.ndarray, seconds: float, meter: CpuMeter) -> tuple[float, int]:
    """Publish an utterance every few seconds for ``seconds``; CPU % and utterance count."""
    from audio_common_msgs.msg import AudioData

    meter.start()
    t_end = time.monotonic() + seconds
    utterances = 0
    while time.monotonic() < t_end:
        for i in range(0, len(speech), CHUNK):  # a TTS publishes the sentence at once
            audio.publish(AudioData(data=speech[i : i + CHUNK].tobytes()))
        utterances += 1
        time.sleep(min(max(0.0, t_end - time.monotonic()), len(speech) / RATE + 1.5))
    return meter.stop(), utterances


def send_bursts(audio: Any, bursts: int) -> list[int]:
    """Publish ``bursts`` 200 ms 1 kHz bursts (crisp onset) 0.7-0.8 s apart; publish times."""
    from audio_common_msgs.msg import AudioData

    published: list[int] = []
    burst = 0.5 * np.cos(2 * np.pi * 1000 * np.arange(RATE // 5) / RATE) * 32767
    data = burst.astype("<i2").tobytes()
    rng = np.random.default_rng()
    for _ in range(bursts):
        published.append(time.time_ns())
        for i in range(0, len(data), 2 * CHUNK):
            audio.publish(AudioData(data=data[i : i + 2 * CHUNK]))
        time.sleep(0.7 + 0.1 * rng.random())
    return published


def run(pulse: PulseServer, seconds: float, bursts: int) -> None:
    from audio_common_msgs.msg import AudioData
    from diagnostic_msgs.msg import DiagnosticArray
    from kos_testing.ros import RosProbe, wait_until
    from std_msgs.msg import Bool

    namespace = f"/bench_speaker_{os.getpid()}"
    probe = RosProbe(namespace)
    speech, speech_kind = speech_clip()
    background = background_clip()
    audio = probe.publisher(AudioData, "audio")
    bg_pub = probe.publisher(AudioData, "background/audio")
    diags = probe.subscribe(DiagnosticArray, "/diagnostics")
    speaking = probe.subscribe(Bool, "is_speaking")
    recorder = MonitorRecorder(pulse)
    node = NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace,
                       params={"sink": "device", "block_ms": BLOCK_MS}).start()
    stop = threading.Event()

    def feed_background() -> None:
        # 100 ms chunks, kept 200 ms ahead of real time, like a music player node.
        step = RATE // 10
        t0 = time.monotonic()
        i = 0
        while not stop.is_set():
            start = (i * step) % len(background)
            bg_pub.publish(AudioData(data=background[start : start + step].tobytes()))
            i += 1
            stop.wait(max(0.0, t0 + i * 0.1 - 0.2 - time.monotonic()))

    feeder = threading.Thread(target=feed_background, daemon=True)
    try:
        probe.wait_for_subscribers(audio, timeout_s=30)
        probe.wait_for_subscribers(bg_pub, timeout_s=30)
        wait_until(lambda: status_of(diags, namespace).get("sink_state") == "running", 30,
                   "speaker_node's sink running")
        feeder.start()
        time.sleep(1.0)
        assert node.proc is not None
        cpu, utterances = speak(audio, speech, seconds, CpuMeter(node.proc.pid))
        wait_until(lambda: not speaking.messages[-1].data, 10, "speech ended")
        time.sleep(DIAG_WAIT_S)
        steady = status_of(diags, namespace)
        published = send_bursts(audio, bursts)
        time.sleep(DIAG_WAIT_S)
        final = status_of(diags, namespace)
    finally:
        stop.set()
        node.stop()
        probe.close()
    x, t0_ns = recorder.stop()
    report(steady, final, onsets(x, t0_ns, published), len(published), cpu=cpu,
           utterances=utterances, seconds=seconds, speech=speech, speech_kind=speech_kind)


def report(steady: dict[str, str], final: dict[str, str], heard: list[float], bursts: int, *,
           cpu: float, utterances: int, seconds: float, speech: np.ndarray,
           speech_kind: str) -> None:
    """Print the numbers."""
    latency_ms = float(final["output_latency_ms"])
    print(f"speech: {speech_kind}, {len(speech) / RATE:.2f} s every "
          f"{len(speech) / RATE + 1.5:.1f} s over background; {utterances} utterances in "
          f"{seconds:.0f} s")
    print(f"CPU speaker_node {cpu:.2f}% of one core (16 kHz mono speech + background -> "
          f"{final['sink_format']})")
    print(f"underruns (device underflow while playing) {steady['underruns']}; starvations "
          f"{steady['starvations']}; overflow dropped {steady['dropped_overflow_s']} s; "
          f"sink consumed {float(steady['sink_rate_ratio']):.3f}x real time")
    print(f"receive -> first sample at device (node's measure, ms): p50 "
          f"{float(steady['latency_p50_ms']):.2f} p99 {float(steady['latency_p99_ms']):.2f}; "
          f"target p50 <= block {BLOCK_MS:g} + device latency {latency_ms:.1f} + 5 = "
          f"{BLOCK_MS + latency_ms + 5:.1f}")
    print(f"publish -> sound on the speaker monitor (parec, independent, ms): "
          f"{percentiles(heard)} ({len(heard)}/{bursts} bursts found)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmark speaker", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bursts", type=int, default=30)
    opts = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="pulse-") as tmp:
        pulse = PulseServer(Path(tmp)).start()
        try:
            run(pulse, opts.seconds, opts.bursts)
        finally:
            pulse.stop()
    return 0
