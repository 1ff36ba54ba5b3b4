"""speaker_node through the virtual speaker: dropouts, latency, CPU against a floor.

    scripts/benchmark.py speaker [--seconds 60] [--utterances 30] [--cases all]
                                 [--cpu-seconds 30] [--skip-gaps] [--skip-cpu]

Gaps and latency: for every case (``device_latency`` high/low x TTS publishing the sentence
at once / streaming it in real time x input rate equal to / different from the sink's),
speaker_node plays on the private PulseAudio server's default sink through PortAudio while
``--utterances`` utterances are published over ``--seconds``. An utterance is a 1 s 440 Hz
tone, 16 kHz mono S16LE in 20 ms chunks: a tone has no silent run of its own, so every run of
zeros inside it is a dropout. "same" forces the sink to 16 kHz mono S16LE (no resampling),
"diff" leaves it at the device's native rate (44.1 kHz stereo F32 through ALSA's pulse
plugin). A ``parec`` recording of the speaker's monitor gives, per utterance, the zero runs
>= 2 ms between its first and last sound, and the latency from publishing its first chunk
to its first sound.

CPU: speaker_node (16 kHz mono S16LE speech streamed in real time, device out at its native
format) beside the floor, :mod:`benchmarks.bare_speaker` (an rclpy subscriber of the same
topics and a PortAudio output callback writing silence, same block size), both fed by the
same publisher in the same run; without and with background sound (16 kHz mono, 100 ms
chunks). Printed: both CPU % of one core and their ratio.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the test harness: NodeProcess, PulseServer, RosProbe

from kos_testing.procs import NodeProcess
from kos_testing.pulse import PulseServer

from benchmarks.common import CpuMeter

RATE = 16000
CHUNK = 320  # 20 ms
MONITOR_RATE = 48000
BLOCK_MS = 20.0
UTTERANCE_S = 1.0
TONE_HZ = 440.0
#: A recorded sample this close to 0 is silence (-72 dBFS; the tone is at -6 dBFS).
SILENT = 8 / 32768
#: A silent run at least this long inside an utterance is a dropout.
MIN_GAP_S = 0.002
#: Sink formats: "same" = the input's (no resampling), "diff" = the device's native one.
SINK_PARAMS = {"same": {"sample_rate": 16000, "channels": 1, "sample_format": "S16LE"},
               "diff": {}}


@dataclass(frozen=True)
class Case:
    latency: str  # device_latency: high / low
    mode: str  # sentence (published at once) / stream (real time)
    rate: str  # same / diff (input rate vs sink rate)

    @property
    def name(self) -> str:
        return f"{self.latency}/{self.mode}/{self.rate}"


ALL_CASES = [Case(*c) for c in itertools.product(("high", "low"), ("sentence", "stream"),
                                                 ("same", "diff"))]


def tone(seconds: float) -> np.ndarray:
    """``seconds`` of a 440 Hz tone at -6 dBFS, 16 kHz mono int16."""
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * t) * 32767).astype("<i2")


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


@dataclass
class Heard:
    """One utterance found in the recording."""

    latency_ms: float
    gaps_ms: list[float]
    sounding_s: float  # first to last sound
    producer_late_ms: float = 0.0  # the latest chunk's publication behind its schedule


def analyse(x: np.ndarray, t0_ns: float, published_ns: list[int]) -> list[Heard]:
    """Each utterance's latency and inner silent runs; window: its publication to the next."""
    loud = np.abs(x) > SILENT
    out = []
    bounds = [*published_ns, published_ns[-1] + int(3 * UTTERANCE_S * 1e9)]
    for pub, nxt in itertools.pairwise(bounds):
        lo = max(0, round((pub - t0_ns) / 1e9 * MONITOR_RATE) - MONITOR_RATE // 100)
        hi = min(len(x), round((nxt - t0_ns) / 1e9 * MONITOR_RATE))
        idx = np.flatnonzero(loud[lo:hi])
        if not len(idx):
            out.append(Heard(float("nan"), [], 0.0))
            continue
        first, last = lo + idx[0], lo + idx[-1]
        # Silent runs: where loudness changes inside [first, last].
        inner = loud[first : last + 1].astype(np.int8)
        edges = np.flatnonzero(np.diff(inner))
        falls, rises = edges[inner[edges] == 1] + 1, edges[inner[edges] == 0] + 1
        runs = (rises - falls) / MONITOR_RATE
        gaps = [float(r * 1000) for r in runs if r >= MIN_GAP_S]
        latency = (t0_ns + first / MONITOR_RATE * 1e9 - pub) / 1e6
        out.append(Heard(latency, gaps, (last - first) / MONITOR_RATE))
    return out


def publish_utterance(audio: Any, speech: np.ndarray, mode: str) -> tuple[int, float]:
    """Publish one utterance (at once or paced in real time).

    Returns the wall time (ns) of its first chunk and how late (ms) the latest chunk was
    published against its real-time schedule (streamed only; this process may be descheduled
    on a loaded machine, and a chunk published late is the producer's gap, not the speaker's).
    """
    from audio_common_msgs.msg import AudioData

    start_ns = time.time_ns()
    t0 = time.monotonic()
    late = 0.0
    for k, i in enumerate(range(0, len(speech), CHUNK)):
        if mode == "stream":
            due = t0 + k * CHUNK / RATE
            time.sleep(max(0.0, due - time.monotonic()))
            late = max(late, time.monotonic() - due)
        audio.publish(AudioData(data=speech[i : i + CHUNK].tobytes()))
    return start_ns, late * 1000


def status_of(diags: Any, namespace: str) -> dict[str, str]:
    name = f"{namespace.lstrip('/')}/speaker"
    for array in reversed(diags.messages):
        for status in array.status:
            if status.name == name:
                return {kv.key: kv.value for kv in status.values}
    return {}


def start_speaker(probe: Any, namespace: str, diags: Any, params: dict[str, Any]
                  ) -> NodeProcess:
    from kos_testing.ros import wait_until

    node = NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace,
                       params={"sink": "device", "block_ms": BLOCK_MS, **params}).start()
    wait_until(lambda: status_of(diags, namespace).get("sink_state") == "running", 30,
               "speaker_node's sink running")
    return node


def run_case(pulse: PulseServer, case: Case, seconds: float, utterances: int
             ) -> tuple[list[Heard], dict[str, str]]:
    from audio_common_msgs.msg import AudioData
    from diagnostic_msgs.msg import DiagnosticArray
    from kos_testing.ros import RosProbe

    namespace = f"/bench_speaker_{os.getpid()}_{case.name.replace('/', '_')}"
    probe = RosProbe(namespace)
    audio = probe.publisher(AudioData, "audio")
    diags = probe.subscribe(DiagnosticArray, "/diagnostics")
    speech = tone(UTTERANCE_S)
    period = seconds / utterances
    recorder = MonitorRecorder(pulse)
    node = start_speaker(probe, namespace, diags,
                         {"device_latency": case.latency, **SINK_PARAMS[case.rate]})
    published: list[int] = []
    lateness: list[float] = []
    try:
        probe.wait_for_subscribers(audio, timeout_s=30)
        time.sleep(0.5)
        t0 = time.monotonic()
        for k in range(utterances):
            time.sleep(max(0.0, t0 + k * period - time.monotonic()))
            start_ns, late_ms = publish_utterance(audio, speech, case.mode)
            published.append(start_ns)
            lateness.append(late_ms)
        time.sleep(max(period, 1.5))  # the last one played; diagnostics published
        diag = status_of(diags, namespace)
    finally:
        node.stop()
        probe.close()
    x, t0_ns = recorder.stop()
    heard = analyse(x, t0_ns, published)
    for h, late_ms in zip(heard, lateness, strict=False):
        h.producer_late_ms = late_ms
    return heard, diag


def report_case(case: Case, heard: list[Heard], diag: dict[str, str], utterances: int
                ) -> None:
    gaps = [g for h in heard for g in h.gaps_ms]
    with_gaps = sum(1 for h in heard if h.gaps_ms)
    late = [h for h in heard if h.producer_late_ms > BLOCK_MS]
    late_gaps = sum(len(h.gaps_ms) for h in late)
    lat = [h.latency_ms for h in heard if h.sounding_s]
    p50, p99 = np.percentile(lat, [50, 99]) if lat else (float("nan"),) * 2
    worst = f", longest {max(gaps):.1f} ms" if gaps else ""
    producer = (f"  producer >{BLOCK_MS:g} ms late in {len(late)} (max "
                f"{max(h.producer_late_ms for h in late):.0f} ms; {late_gaps} of the gaps there)"
                if late else "")
    found = [h for h in heard if h.sounding_s]
    print(f"  {case.name:<20} heard {len(found)}/{utterances}  gaps>=2ms {len(gaps):>3} in "
          f"{with_gaps:>2} utterances{worst}  latency p50 {p50:6.1f} p99 {p99:6.1f} ms  "
          f"sounding {np.mean([h.sounding_s for h in found]):.3f} s  device underruns "
          f"{diag.get('underruns', '?')} starvations {diag.get('starvations', '?')}{producer}",
          flush=True)


def run_cpu(pulse: PulseServer, seconds: float, background: bool) -> tuple[float, float]:
    """CPU % of speaker_node and of the floor over ``seconds`` of streamed speech."""
    from audio_common_msgs.msg import AudioData
    from diagnostic_msgs.msg import DiagnosticArray
    from kos_testing.ros import RosProbe

    namespace = f"/bench_speaker_cpu_{os.getpid()}_{int(background)}"
    probe = RosProbe(namespace)
    audio = probe.publisher(AudioData, "audio")
    bg_pub = probe.publisher(AudioData, "background/audio")
    diags = probe.subscribe(DiagnosticArray, "/diagnostics")
    node = start_speaker(probe, namespace, diags, {"device_latency": "high"})
    floor = NodeProcess("benchmarks.bare_speaker", namespace=namespace,
                        args=[namespace, str(BLOCK_MS), *(["--background"] * background)],
                        ).start()
    stop = threading.Event()
    speech = tone(10.0)
    bg = (0.2 * 32767 * np.sin(2 * np.pi * 200 * np.arange(10 * RATE) / RATE)).astype("<i2")

    def feed(pub: Any, clip: np.ndarray, step: int, ahead_s: float) -> None:
        t0, i = time.monotonic(), 0
        while not stop.is_set():
            start = (i * step) % len(clip)
            pub.publish(AudioData(data=clip[start : start + step].tobytes()))
            i += 1
            stop.wait(max(0.0, t0 + i * step / RATE - ahead_s - time.monotonic()))

    feeders = [threading.Thread(target=feed, args=(audio, speech, CHUNK, 0.0), daemon=True)]
    if background:
        feeders.append(threading.Thread(target=feed, args=(bg_pub, bg, RATE // 10, 0.2),
                                        daemon=True))
    try:
        probe.wait_for_subscribers(audio, count=2, timeout_s=30)
        if background:
            probe.wait_for_subscribers(bg_pub, count=2, timeout_s=30)
        for f in feeders:
            f.start()
        time.sleep(2.0)
        assert node.proc is not None and floor.proc is not None
        meters = [CpuMeter(node.proc.pid), CpuMeter(floor.proc.pid)]
        for m in meters:
            m.start()
        time.sleep(seconds)
        cpu = [m.stop() for m in meters]
    finally:
        stop.set()
        node.stop()
        floor.stop()
        probe.close()
    return cpu[0], cpu[1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmark speaker", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--utterances", type=int, default=30)
    parser.add_argument("--cases", default="all",
                        help="comma-separated case names (e.g. high/stream/diff) or 'all'")
    parser.add_argument("--cpu-seconds", type=float, default=30.0)
    parser.add_argument("--skip-gaps", action="store_true")
    parser.add_argument("--skip-cpu", action="store_true")
    opts = parser.parse_args(argv)
    cases = ALL_CASES if opts.cases == "all" else [
        c for c in ALL_CASES if c.name in opts.cases.split(",")]
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="pulse-") as tmp:
        pulse = PulseServer(Path(tmp)).start()
        try:
            if not opts.skip_gaps:
                print(f"utterances: {UTTERANCE_S:g} s {TONE_HZ:g} Hz tone, 16 kHz mono S16LE, "
                      f"{opts.utterances} in {opts.seconds:g} s per case; latency = publish of "
                      "the first chunk -> first sound on the monitor", flush=True)
                for case in cases:
                    heard, diag = run_case(pulse, case, opts.seconds, opts.utterances)
                    report_case(case, heard, diag, opts.utterances)
            if not opts.skip_cpu:
                print("CPU (% of one core), 16 kHz mono S16LE speech streamed in real time, "
                      "device out (native format), latency high; floor = bare rclpy "
                      "subscriber + PortAudio callback writing silence", flush=True)
                for background in (False, True):
                    speaker, floor = run_cpu(pulse, opts.cpu_seconds, background)
                    print(f"  background {'on ' if background else 'off'}: speaker_node "
                          f"{speaker:.2f}%  floor {floor:.2f}%  ratio {speaker / floor:.2f}",
                          flush=True)
        finally:
            pulse.stop()
    return 0
