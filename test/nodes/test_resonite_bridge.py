"""The Resonite IO bridge end to end: speaker_node (sink resonite_mic) and mic_node (source
resonite_speaker) as real processes over real DDS, against the real test gRPC server on a Unix
socket in a short temp dir. The socket reaches the nodes as a ROS parameter or through the
environment, as on a robot.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("audio_common_msgs")
soxr = pytest.importorskip("soxr")

from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from kos_testing.procs import NodeProcess  # noqa: E402
from kos_testing.ros import LATCHED, wait_until  # noqa: E402
from mic_helpers import gaps, peak_hz, stamps_ns  # noqa: E402
from servers.resonite_io_server import ResoniteIoServer, speaker_signal  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

SPEAKER = "kos_audio.nodes.speaker_node"
MIC = "kos_audio.nodes.mic_node"
RATE = 48_000
TIMEOUT_S = 30.0  # generous: a loaded 2-core machine starts rclpy processes slowly
#: Nodes must not inherit a developer's own Resonite setup.
CLEAN_ENV = {"RESONITE_IO_SOCKET": "", "RESONITE_IO_SOCKET_DIR": ""}


# -- fixtures ------------------------------------------------------------------------------
@contextlib.contextmanager
def live_pid() -> Iterator[int]:
    """A live pid other than ours (a sleeping child): another Resonite's socket name."""
    child = subprocess.Popen(["sleep", "120"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


# -- helpers -------------------------------------------------------------------------------
def speaker(namespace: str, env: dict[str, str], **params: Any) -> NodeProcess:
    return NodeProcess(SPEAKER, namespace=namespace, params={"sink": "resonite_mic", **params},
                       env={**CLEAN_ENV, **env})


def speech_like(seconds: float, rate: int = 16000) -> np.ndarray:
    """A deterministic, non-periodic utterance: a chirp under a syllable-rate envelope."""
    t = np.arange(round(seconds * rate)) / rate
    envelope = 0.35 + 0.25 * np.sin(2 * np.pi * 3.3 * t)
    return (envelope * np.sin(2 * np.pi * (200 * t + 180 * t * t))).astype(np.float32)


class Tts:
    """A TTS as a robot has one: 16 kHz S16LE AudioData chunks on ``audio`` (+ audio_info)."""

    def __init__(self, ros: Any) -> None:
        self.pub = ros.publisher(AudioData, "audio")
        info = ros.publisher(AudioInfo, "audio_info", LATCHED)
        info.publish(AudioInfo(channels=1, sample_rate=16000, sample_format="S16LE",
                               bitrate=16000 * 16, coding_format="wave"))
        self._ros = ros
        self._info = info

    def wait_for_node(self) -> None:
        self._ros.wait_for_subscribers(self.pub, timeout_s=TIMEOUT_S)

    def say(self, clip: np.ndarray) -> None:
        """Publish the whole clip at once in 20 ms chunks, as a TTS publishes a sentence."""
        pcm = np.clip(np.round(clip * 32767), -32768, 32767).astype("<i2").tobytes()
        for i in range(0, len(pcm), 640):
            self.pub.publish(AudioData(data=pcm[i : i + 640]))


def best_correlation(received: np.ndarray, reference: np.ndarray) -> float:
    """Normalised correlation at the best lag within +-200 samples."""
    n = min(len(received), len(reference)) - 400
    assert n > RATE // 2, f"only {len(received)} samples arrived"
    b = reference[200 : 200 + n]
    return max(float(np.dot(received[200 + lag : 200 + lag + n], b)
                     / (np.linalg.norm(received[200 + lag : 200 + lag + n]) * np.linalg.norm(b)))
               for lag in range(-200, 201))


def diag_values(diags: Any, namespace: str, node: str) -> dict[str, str]:
    """The key/values of the newest status the node published."""
    name = f"{namespace.lstrip('/')}/{node}"
    for array in reversed(diags.messages):
        for status in array.status:
            if status.name == name:
                return {kv.key: kv.value for kv in status.values}
    return {}


# -- speaker_node, sink resonite_mic -------------------------------------------------------
def test_tts_reaches_resonite_as_48k_mono_float_paced_and_interrupt_cancels(
        ros: Any, namespace: str, make_resonite_server: Callable[..., ResoniteIoServer]) -> None:
    server = make_resonite_server()
    diags = ros.subscribe(DiagnosticArray, "/diagnostics")
    tts = Tts(ros)
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server.buffered_samples)
            time.sleep(0.002)

    with speaker(namespace, {"RESONITE_IO_SOCKET": str(server.socket_path)}) as node:
        tts.wait_for_node()
        wait_until(server.pings, TIMEOUT_S, "the sink connected (ping)")
        watcher = threading.Thread(target=watch)
        watcher.start()
        clip = speech_like(2.6)  # longer than Resonite's 2 s buffer: an unpaced sender drops
        try:
            tts.say(clip)
            assert server.wait_microphone_outcome(0, TIMEOUT_S) == "completed"
        finally:
            stop.set()
            watcher.join()
        record = server.microphone_streams()[0]
        assert record.frame_ids == list(range(len(record.frame_ids)))
        assert record.sample_count_fields == [n // 4 for n in record.byte_lengths]
        assert max(record.byte_lengths) == 960 * 4  # 20 ms frames of 48 kHz float32
        assert server.ring_dropped_samples == 0
        assert peak[0] < 0.5 * RATE  # lead 100 ms; nowhere near the 2 s that would drop
        reference = soxr.resample(clip, 16000, RATE, "HQ")
        assert best_correlation(record.samples(), reference) > 0.99
        assert abs(record.received_samples - len(reference)) < 0.03 * RATE
        wait_until(lambda: diag_values(diags, namespace, "speaker").get("resonite_summaries")
                   == "1", TIMEOUT_S, "diagnostics count the summary")
        values = diag_values(diags, namespace, "speaker")
        assert values["resonite_summary_mismatches"] == "0"
        assert values["resonite_samples_sent"] == str(record.received_samples)
        assert (f"Resonite microphone stream 0: sent {len(record.frame_ids)} frames"
                in node.output)

        # Interrupt: the call is cancelled, Resonite drops its buffer, nothing more plays.
        tts.say(speech_like(3.0))
        wait_until(lambda: len(server.microphone_streams()) > 1
                   and server.microphone_streams()[1].received_samples > RATE // 2,
                   TIMEOUT_S, "the second utterance is streaming")
        answer = ros.call(Trigger, "speaker/interrupt", Trigger.Request())
        assert answer.success
        assert server.wait_microphone_outcome(1, 10) == "cancelled"
        assert server.microphone_streams()[1].received_samples < 2 * RATE
        played = len(server.played_samples())
        time.sleep(0.5)
        assert len(server.played_samples()) == played
        assert len(server.microphone_streams()) == 2
        assert node.alive()


def test_explicit_socket_parameter_beats_the_environment(
        ros: Any, namespace: str, make_resonite_server: Callable[..., ResoniteIoServer],
        resonite_socket_dir: Path) -> None:
    server = make_resonite_server()
    tts = Tts(ros)
    env = {"RESONITE_IO_SOCKET": str(resonite_socket_dir / "not-this-one.sock")}
    with speaker(namespace, env, **{"resonite.socket": str(server.socket_path)}):
        tts.wait_for_node()
        wait_until(server.pings, TIMEOUT_S, "the sink connected to the parameter's socket")
        tts.say(speech_like(0.4))
        assert server.wait_microphone_outcome(0, TIMEOUT_S) == "completed"
        assert server.microphone_streams()[0].received_samples > 0.3 * RATE


def test_waits_for_resonite_then_follows_it_to_a_new_socket(
        ros: Any, namespace: str, make_resonite_server: Callable[..., ResoniteIoServer],
        resonite_socket_dir: Path) -> None:
    tts = Tts(ros)
    diags = ros.subscribe(DiagnosticArray, "/diagnostics")
    with speaker(namespace, {"RESONITE_IO_SOCKET_DIR": str(resonite_socket_dir)}) as node:
        # No Resonite yet: one clear error naming the variable; the node keeps running.
        wait_until(lambda: "no live Resonite IO socket" in node.output, TIMEOUT_S,
                   "the resolution error was logged")
        error = next(line for line in node.output.splitlines() if "no live" in line)
        assert "[ERROR]" in error and "Set RESONITE_IO_SOCKET" in error
        assert "reopening in" in error  # retried with back-off
        assert node.alive()
        first = make_resonite_server()  # Resonite starts: found by the directory search
        tts.wait_for_node()
        wait_until(first.pings, TIMEOUT_S, "connected once Resonite started")
        tts.say(speech_like(0.4))
        assert first.wait_microphone_outcome(0, TIMEOUT_S) == "completed"
        first.stop()  # Resonite quits (its socket goes) and comes back under another pid
        with live_pid() as pid:
            second = make_resonite_server(pid=pid)
            # The node's error log is throttled; diagnostics keep the last error.
            wait_until(lambda: "vanished" in diag_values(diags, namespace, "speaker").get(
                "last_error", ""), TIMEOUT_S, "the lost socket was reported")
            wait_until(second.pings, TIMEOUT_S, "reconnected to the new socket")
            tts.say(speech_like(0.4))
            assert second.wait_microphone_outcome(0, TIMEOUT_S) == "completed"
        assert node.alive()


# -- mic_node, source resonite_speaker -----------------------------------------------------
def test_resonite_speaker_is_published_intact(
        ros: Any, namespace: str, make_resonite_server: Callable[..., ResoniteIoServer]) -> None:
    server = make_resonite_server()
    exact = ros.subscribe(AudioDataStamped, "audio_stamped")
    speech = ros.subscribe(AudioDataStamped, "robot/audio_stamped")
    info = ros.subscribe(AudioInfo, "audio_info", LATCHED)
    native = {"source": "resonite_speaker", "sample_rate": 48000, "channels": 2,
              "sample_format": "F32LE", "chunk_ms": 20.0}
    converted = {"source": "resonite_speaker", "sample_rate": 16000, "channels": 1,
                 "sample_format": "S16LE", "chunk_ms": 20.0}
    with NodeProcess(MIC, namespace=namespace, env={**CLEAN_ENV},
                     params={**native, "resonite.socket": str(server.socket_path)}), \
            NodeProcess(MIC, namespace=f"{namespace}/robot",
                        env={**CLEAN_ENV, "RESONITE_IO_SOCKET": str(server.socket_path)},
                        params=converted):
        msgs = exact.wait_for(60, timeout_s=TIMEOUT_S)[:60]
        converted_msgs = speech.wait_for(60, timeout_s=TIMEOUT_S)[:60]
        audio_info = info.wait_for(1, timeout_s=TIMEOUT_S)[0]
    assert (audio_info.sample_rate, audio_info.channels, audio_info.sample_format) == (
        48000, 2, "F32LE")
    # Same format as the wire: Resonite's samples, bit for bit. The first chunks may be
    # published before discovery matched this subscriber, so the data starts a whole number
    # of 960-frame chunks into Resonite's stream.
    data = np.frombuffer(b"".join(bytes(m.audio.data) for m in msgs), "<f4").reshape(-1, 2)
    assert len(data) == 60 * 960
    assert any(np.array_equal(data, speaker_signal(960 * k, len(data))) for k in range(500)
               if np.array_equal(data[:960], speaker_signal(960 * k, 960)))
    # Sample-accurate stamps: consecutive chunks exactly one chunk apart, near the wall clock.
    frames_bytes = [len(m.audio.data) for m in msgs]
    assert set(frames_bytes) == {960 * 8}
    assert [s - s0 for s0, s in zip(stamps_ns(msgs), stamps_ns(msgs)[1:], strict=False)] == [
        20_000_000] * 59
    assert abs(stamps_ns(msgs)[0] - time.time_ns()) < 30 * 10**9
    # Converted for speech recognition: 16 kHz mono S16LE, both tones still there.
    assert gaps(converted_msgs, 16000) == [0] * 59
    x = np.frombuffer(b"".join(bytes(m.audio.data) for m in converted_msgs), "<i2") / 32768.0
    assert peak_hz(x, 16000) == pytest.approx(440.0, abs=20)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k1000 = round(1000 * len(x) / 16000)
    assert spectrum[k1000 - 3 : k1000 + 4].max() > 0.2 * spectrum.max()
    assert len(server.speaker_streams()) == 2
