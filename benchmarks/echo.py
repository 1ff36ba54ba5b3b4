"""echo_canceller through the real nodes: echo reduction, voice activity, latency, CPU.

    scripts/benchmark.py echo [--seconds 60] [--rates 16000,48000]

For each microphone rate: mic_node (virtual mic), speaker_node (virtual speaker, barge-in on)
and echo_canceller run as processes on the private PulseAudio server, where what the speaker
plays reaches the microphone 60 ms later at half amplitude (module-loopback). The robot speaks
for ``--seconds`` (espeak-ng sentences published at once, as a TTS does). Measured:

- echo return loss enhancement: 10 log10(P(mic) / P(clean)) in 1 s windows of the same stamps,
  median and 10th percentile, from the second second on;
- voice-activity detections and self-interrupts over that robot-only speech (target 0);
- added latency: the clean chunk's arrival minus the mic chunk's arrival, same stamp
  (p50/p99), and mic stamp -> clean arrival beside mic stamp -> mic arrival;
- CPU of each process (% of one core) beside a bare rclpy subscriber+publisher floor:
  echo_canceller's worker thread as its diagnostics report it, and the whole process.
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
sys.path.insert(0, str(ROOT / "test"))  # the test harness

from kos_testing.echo_signals import ROBOT_LINES, erle_db, speech
from kos_testing.procs import NodeProcess
from kos_testing.pulse import PulseServer

from benchmarks.common import CpuMeter, percentiles

NS = 1_000_000_000


def run_rate(pulse: PulseServer, rate: int, seconds: float) -> None:
    from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
    from kos_testing.ros import LATCHED, RosProbe, wait_until
    from std_msgs.msg import Bool

    namespace = f"/bench_echo_{os.getpid()}_{rate}"
    probe = RosProbe(namespace)
    mic = probe.subscribe(AudioDataStamped, "audio_stamped")
    clean = probe.subscribe(AudioDataStamped, "clean/audio_stamped")
    speaking = probe.subscribe(Bool, "is_speaking", LATCHED)
    vad = probe.subscribe(Bool, "voice_activity", LATCHED)
    tts = probe.publisher(AudioData, "tts/audio")
    info = probe.publisher(AudioInfo, "tts/audio_info", LATCHED)
    info.publish(AudioInfo(channels=1, sample_rate=16000, sample_format="S16LE",
                           coding_format="wave"))
    loopback = pulse.loopback(latency_ms=60, gain=0.5)
    nodes = {
        "mic_node": NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params={
            "source": "device", "device": "mic", "sample_rate": rate, "chunk_ms": 20.0}),
        "speaker_node": NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace,
                                    params={"sink": "device", "barge_in.enabled": True},
                                    ros_args=["-r", "audio:=tts/audio",
                                              "-r", "audio_info:=tts/audio_info"]),
        "echo_canceller": NodeProcess("kos_audio.nodes.echo_canceller_node",
                                      namespace=namespace, params={"qos.depth": 500}),
    }
    try:
        for node in nodes.values():
            node.start()
        clean.wait_for(50, timeout_s=60)
        probe.wait_for_subscribers(tts, timeout_s=10)
        voice = speech(ROBOT_LINES, "en-us", seconds + 1.0, 16000, seed=1)
        pcm = (voice * (0.3 / np.max(np.abs(voice))) * 32767).astype("<i2").tobytes()
        meters = {name: CpuMeter(node.proc.pid) for name, node in nodes.items()
                  if node.proc is not None}
        for meter in meters.values():
            meter.start()
        # Published ahead of real time, in 2 s bursts: a burst of the whole minute would
        # overflow the speaker's subscription history (qos.depth 1000 chunks = 20 s).
        def publish_all() -> None:
            t0 = time.monotonic()
            for k, i in enumerate(range(0, len(pcm), 640)):
                if k % 100 == 0:
                    time.sleep(max(0.0, t0 + k * 0.02 - 4.0 - time.monotonic()))
                tts.publish(AudioData(data=pcm[i : i + 640]))

        publisher = threading.Thread(target=publish_all, daemon=True)
        publisher.start()
        wait_until(lambda: any(m.data for m in speaking.messages[1:]), 10, "speaking")
        started = next(t for t, m in speaking.timed if m.data)
        wait_until(lambda: any(not m.data for t, m in speaking.timed if t > started),
                   seconds + 30, "end of speech")
        ended = next(t for t, m in speaking.timed if t > started and not m.data)
        wait_until(lambda: clean.timed[-1][0] > ended + NS // 2, 10, "clean to catch up")
        cpu = {name: meter.stop() for name, meter in meters.items()}
        publisher.join()
    finally:
        for node in reversed(list(nodes.values())):
            node.stop()
        pulse.unload(loopback)

    report(rate, seconds, (started, ended), mic_timed=mic.timed, clean_timed=clean.timed,
           vad_timed=vad.timed, cpu=cpu)
    probe.close()


def report(rate: int, seconds: float, span: tuple[int, int], *, mic_timed: list[Any],
           clean_timed: list[Any], vad_timed: list[Any], cpu: dict[str, float]) -> None:
    """Print the figures of one rate from what the probe received."""
    started, ended = span

    def by_stamp(rows: list[Any]) -> dict[int, tuple[int, bytes]]:
        return {m.header.stamp.sec * NS + m.header.stamp.nanosec: (t, bytes(m.audio.data))
                for t, m in rows}

    mic_rows, clean_rows = by_stamp(mic_timed), by_stamp(clean_timed)
    stamps = sorted(s for s in mic_rows if started <= s <= ended and s in clean_rows)
    mic_x = np.concatenate([np.frombuffer(mic_rows[s][1], "<i2") for s in stamps]) / 32768.0
    clean_x = np.concatenate([np.frombuffer(clean_rows[s][1], "<i2") for s in stamps]) / 32768.0
    windows = []
    for k in range(1, int(len(mic_x) / rate) - 1):
        a, b = k * rate, (k + 1) * rate
        windows.append(10 * np.log10(np.mean(mic_x[a:b] ** 2) /
                                     (np.mean(clean_x[a:b] ** 2) + 1e-20)))
    added = [(clean_rows[s][0] - mic_rows[s][0]) / 1e6 for s in stamps]
    mic_latency = [(mic_rows[s][0] - s) / 1e6 for s in stamps]
    clean_latency = [(clean_rows[s][0] - s) / 1e6 for s in stamps]
    detections = sum(1 for t, m in vad_timed if m.data and started <= t <= ended)
    self_interrupts = (ended - started) / 1e9 < seconds - 0.5
    print(f"{rate} Hz: {len(stamps)} chunks, {(ended - started) / 1e9:.1f} s of robot speech; "
          f"echo reduced {erle_db(mic_x, clean_x, rate):.1f} dB (median of 1 s windows; "
          f"p10 {np.percentile(windows, 10):.1f} dB); voice-activity detections "
          f"{detections}; self-interrupted: {'yes' if self_interrupts else 'no'}")
    print(f"{rate} Hz: added latency (clean arrival - mic arrival, same stamp, ms) "
          f"{percentiles(added)}; mic stamp -> mic arrival {percentiles(mic_latency)}; "
          f"mic stamp -> clean arrival {percentiles(clean_latency)}")
    print(f"{rate} Hz: CPU % of one core: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))




def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmark echo", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rates", default="16000,48000")
    opts = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="pulse-") as tmp:
        pulse = PulseServer(Path(tmp)).start()
        try:
            for rate in (int(r) for r in opts.rates.split(",")):
                run_rate(pulse, rate, opts.seconds)
                time.sleep(1.0)
        finally:
            pulse.stop()
    return 0
