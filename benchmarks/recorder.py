"""recorder_node: write throughput, CPU, start/stop latency and loss.

    scripts/benchmark.py recorder [--seconds 20] [--cycles 20]

1. Writer throughput (in this process, no ROS): 20 ms chunks of 48 kHz stereo S16LE pushed
   into a Recording as fast as possible, per container, and with a format conversion
   (48 kHz stereo F32LE -> 16 kHz mono S16LE file); reported as x real time and MB/s of input.
2. Real processes: mic_node (tone, 48 kHz stereo S16LE, 20 ms chunks) and recorder_node. CPU of
   recorder_node while idle (pre-roll 2 s) and while recording; start/stop service round trips
   (p50/p99) over short recordings; loss = stamp gaps filled + chunks dropped, from the sidecars.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the test harness: NodeProcess, RosProbe

from kos_testing.procs import NodeProcess

from benchmarks.common import CpuMeter, percentiles
from kos_audio.core import NS_PER_S, AudioFormat, SampleFormat, from_float
from kos_audio.core.recording import (
    Chunk,
    Container,
    Recording,
    RecordingOptions,
    claim_new_file,
)

RATE, CHANNELS = 48000, 2


def throughput(directory: Path, container: Container, source: AudioFormat,
               seconds_of_audio: float = 60.0) -> str:
    n = source.frames_for_ms(20)
    x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / source.sample_rate_hz)
    data = from_float(np.repeat(x[:, None], source.channels, 1), source.sample_format)
    chunks = round(seconds_of_audio * 50)
    claimed = claim_new_file(directory, f"bench_{container.value}_{source.channels}",
                             container.value)
    file_format = source if source.sample_format is SampleFormat.S16LE else AudioFormat(
        16000, 1, SampleFormat.S16LE)
    recording = Recording(claimed, file_format, RecordingOptions(container=container))
    t0 = time.perf_counter()
    for i in range(chunks):
        recording.push(Chunk(data, source, i * n * NS_PER_S // source.sample_rate_hz))
    summary = recording.finish()
    wall = time.perf_counter() - t0
    mb = chunks * len(data) / 1e6
    return (f"{container.value:4} {source.describe():>22} -> {file_format.describe():<20}: "
            f"{seconds_of_audio / wall:7.0f}x real time, {mb / wall:6.1f} MB/s in "
            f"({summary.duration_s:.0f} s written incl. close+sha256 in {wall:.2f} s)")


_CLIENTS: dict[str, Any] = {}


def call(probe: Any, name: str) -> tuple[float, Any]:
    """One Trigger call; its round trip (ms), measured with a done-callback (no polling)."""
    import threading

    from std_srvs.srv import Trigger

    client = _CLIENTS.get(name)
    if client is None:
        client = _CLIENTS[name] = probe.node.create_client(Trigger, f"recorder/{name}")
        assert client.wait_for_service(timeout_sec=30), f"no recorder/{name}"
    done = threading.Event()
    t0 = time.perf_counter()
    future = client.call_async(Trigger.Request())
    future.add_done_callback(lambda _: done.set())
    assert done.wait(30), f"recorder/{name} did not answer"
    return (time.perf_counter() - t0) * 1e3, future.result()


def processes(directory: Path, seconds: float, cycles: int) -> None:
    from kos_testing.ros import RosProbe

    namespace = f"/bench_rec_{os.getpid()}"
    mic = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params={
        "source": "tone", "sample_rate": RATE, "channels": CHANNELS}).start()
    rec = NodeProcess("kos_audio.nodes.recorder_node", namespace=namespace, params={
        "output_dir": str(directory), "pre_roll_s": 2.0}).start()
    probe = RosProbe(namespace)
    try:
        deadline = time.monotonic() + 30
        while True:  # until audio_info reached the recorder
            _, response = call(probe, "start")
            if response.success:
                break
            assert time.monotonic() < deadline, response.message
            time.sleep(0.2)
        call(probe, "stop")
        assert rec.proc is not None
        meter = CpuMeter(rec.proc.pid)
        time.sleep(2.0)
        meter.start()
        time.sleep(min(seconds, 10.0))
        idle_cpu = meter.stop()
        call(probe, "start")
        meter.start()
        time.sleep(seconds)
        recording_cpu = meter.stop()
        _, stopped = call(probe, "stop")
        sidecars = [Path(stopped.message).with_suffix(".json")]
        starts, stops = [], []
        for _ in range(cycles):
            ms, response = call(probe, "start")
            starts.append(ms)
            time.sleep(0.3)
            ms, response = call(probe, "stop")
            stops.append(ms)
            sidecars.append(Path(response.message).with_suffix(".json"))
    finally:
        _CLIENTS.clear()
        probe.close()
        rec.stop()
        mic.stop()
    sides = [json.loads(p.read_text()) for p in sidecars]
    long = sides[0]
    gaps = sum(s["gaps"]["count"] for s in sides)
    missing = sum(s["gaps"]["missing_s"] for s in sides)
    dropped = sum(s["dropped_chunks"] for s in sides)
    print(f"recorder_node CPU (% of one core), {RATE} Hz {CHANNELS} ch S16LE from mic_node: "
          f"idle with 2 s pre-roll {idle_cpu:.2f}%, recording WAV {recording_cpu:.2f}%")
    print(f"start round trip (ms) {percentiles(starts)}; stop (close, sha256, sidecar) "
          f"{percentiles(stops)}")
    print(f"{long['duration_s']:.2f} s recorded in the {seconds:.0f} s window (incl. 2 s "
          f"pre-roll); loss over {len(sides)} recordings: {gaps} gaps ({missing:.3f} s "
          f"filled), {dropped} chunks dropped")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmark recorder",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cycles", type=int, default=20)
    opts = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        directory = Path(tmp)
        s16 = AudioFormat(RATE, CHANNELS, SampleFormat.S16LE)
        for container in Container:
            print(throughput(directory, container, s16))
        print(throughput(directory, Container.WAV, AudioFormat(RATE, CHANNELS,
                                                               SampleFormat.F32LE)))
        processes(directory, opts.seconds, opts.cycles)
    return 0
