"""recorder_node recording compressed topics: real libopus packets (one per message, as
mic_node encoding:=opus publishes them) and real LAME MP3 cut anywhere (audio_capture), as a
real process over real DDS; files read back with the standard library's ``wave``."""

from __future__ import annotations

import contextlib
import json
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray
from kos_testing.codecs import cut_anywhere, mp3_stream, opus_packets, tone_s16
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, wait_until
from mic_helpers import peak_hz
from std_srvs.srv import Trigger

from kos_audio.core import NS_PER_S

pytest.importorskip("av")

RECORDER = "kos_audio.nodes.recorder_node"
RATE = 16000
FRAME_NS = 20_000_000
LOST, CORRUPT, RAW_PCM = 40, 60, 70  # message indices: never sent, garbage, raw PCM


def spoilt(k: int, packet: bytes, pcm: np.ndarray) -> bytes:
    """Message ``k``'s payload: the packet, or garbage, or the raw PCM it encodes."""
    if k == CORRUPT:
        return b"\xff\xff\xff"  # code 3 with an impossible frame count
    if k == RAW_PCM:
        return pcm[k * 320:(k + 1) * 320].tobytes()  # PCM under an Opus audio_info
    return packet


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0


def sidecar_of(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".json").read_text())  # type: ignore[no-any-return]


def wait_for_samples(path: Path, samples: int, timeout_s: float = 15.0) -> None:
    def done() -> bool:
        with contextlib.suppress(OSError, ValueError):
            return int(sidecar_of(path)["samples"]) >= samples
        return False
    wait_until(done, timeout_s, f"{samples} samples written to {path}")


class Diagnostics:
    def __init__(self, ros: Any, namespace: str) -> None:
        self.sub = ros.subscribe(DiagnosticArray, "/diagnostics")
        self.name = f"{namespace.strip('/')}/recorder"

    def wait(self, predicate: Any, what: str) -> dict[str, str]:
        found: dict[str, str] = {}

        def check() -> bool:
            for array in reversed(self.sub.messages):
                for status in array.status:
                    if status.name == self.name:
                        found.clear()
                        found.update({kv.key: kv.value for kv in status.values})
                        return bool(predicate(found))
            return False
        wait_until(check, 15, what)
        return found


def start(ros: Any) -> Path:
    response = ros.call(Trigger, "recorder/start", Trigger.Request(), timeout_s=20.0)
    assert response.success, response.message
    return Path(response.message)


def stop(ros: Any) -> None:
    response = ros.call(Trigger, "recorder/stop", Trigger.Request(), timeout_s=20.0)
    assert response.success, response.message


def test_opus_with_a_lost_message_and_bad_payloads_records_without_a_hole(
        ros: Any, namespace: str, tmp_path: Path) -> None:
    diags = Diagnostics(ros, namespace)
    info = ros.publisher(AudioInfo, "audio_info", LATCHED)
    pub = ros.publisher(AudioDataStamped, "audio_stamped")
    pcm = tone_s16(RATE, 2.0, 440.0)
    packets = opus_packets(pcm, RATE)
    t0 = (time.time_ns() // NS_PER_S) * NS_PER_S
    with NodeProcess(RECORDER, namespace=namespace, params={
            "output_dir": str(tmp_path), "sync_period_s": 0.1, "qos.depth": 1000}) as rec:
        info.publish(AudioInfo(channels=1, sample_rate=RATE, sample_format="S16LE",
                               bitrate=32000, coding_format="opus"))
        diags.wait(lambda v: v["input_coding"] == "opus", "the Opus audio_info taken")
        ros.wait_for_subscribers(pub)
        path = start(ros)
        for k, packet in enumerate(packets):
            if k == LOST:
                continue  # lost on the link: the next message's stamp is 20 ms late
            msg = AudioDataStamped()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t0 + k * FRAME_NS, NS_PER_S)
            msg.audio.data = spoilt(k, packet, pcm)
            pub.publish(msg)
        wait_for_samples(path, len(pcm))
        values = diags.wait(lambda v: v["corrupt_chunks"] == "2", "corrupt payloads counted")
        assert values["concealments"] == "3"
        assert float(values["concealed_s"]) == pytest.approx(0.06, abs=0.001)
        assert values["gaps"] == "0"
        stop(ros)
        assert rec.alive()
        assert rec.output.count("payload dropped") == 1, rec.output  # one line, throttled
        assert "corrupt opus" in rec.output
    rate, x = read_wav(path)
    side = sidecar_of(path)
    assert rate == RATE and len(x) == len(pcm) == side["samples"]  # every message's time
    assert side["started_at_ns"] == t0
    assert side["gaps"] == {"count": 0, "missing_s": 0.0}  # no hole...
    assert side["concealed"] == {"count": 3, "concealed_s": 0.06}  # ...yet the loss is counted
    assert side["source_codings"] == ["opus"]
    assert side["source_formats"] == ["16000 Hz 1 ch S16LE"]
    # The lost message is concealed: the tone goes on through it at nearly its level.
    lost = x[LOST * 320: (LOST + 1) * 320]
    assert np.max(np.abs(lost)) > 0.25
    assert peak_hz(x[160:], RATE) == pytest.approx(440.0, abs=2)
    before = x[800: LOST * 320]
    assert np.max(np.abs(before)) == pytest.approx(0.5, abs=0.05)


def test_mp3_cut_anywhere_is_recorded_as_pcm(ros: Any, namespace: str, tmp_path: Path) -> None:
    diags = Diagnostics(ros, namespace)
    info = ros.publisher(AudioInfo, "audio_info", LATCHED)
    pub = ros.publisher(AudioData, "audio")  # like audio_capture: unstamped AudioData
    pcm = tone_s16(RATE, 1.5, 660.0)
    pieces = cut_anywhere(mp3_stream(pcm, RATE))
    with NodeProcess(RECORDER, namespace=namespace, params={
            "output_dir": str(tmp_path), "sync_period_s": 0.1, "qos.depth": 1000,
            "input.stamped": False, "format": "flac"}):
        info.publish(AudioInfo(channels=1, sample_rate=RATE, sample_format="S16LE",
                               bitrate=32000, coding_format="mp3"))
        diags.wait(lambda v: v["input_coding"] == "mp3", "the MP3 audio_info taken")
        ros.wait_for_subscribers(pub)
        path = start(ros)
        for piece in pieces:
            pub.publish(AudioData(data=piece))
        wait_for_samples(path, len(pcm) - 1152)  # FFmpeg's parser may hold the last frame
        stop(ros)
    x, rate = soundfile.read(str(path), dtype="float32")
    side = sidecar_of(path)
    assert rate == RATE and side["format"] == "flac" and side["source_codings"] == ["mp3"]
    assert len(pcm) - 1152 <= len(x) <= len(pcm) + 2 * 1152  # LAME's delay and padding
    loud = np.flatnonzero(np.abs(x) > 0.05)
    assert (loud[-1] - loud[0]) / RATE == pytest.approx(1.5, abs=0.03)
    body = x[loud[0] + 800: loud[-1] - 800]
    assert peak_hz(body, RATE) == pytest.approx(660.0, abs=2)
    assert np.max(np.abs(body)) == pytest.approx(0.5, abs=0.05)
    assert side["concealed"]["count"] == 0 and side["stamped"] is False


def test_a_codec_change_mid_recording_is_a_format_change(
        ros: Any, namespace: str, tmp_path: Path) -> None:
    """Raw 16 kHz PCM, then Opus at 48 kHz on contiguous stamps: converted, no gap."""
    diags = Diagnostics(ros, namespace)
    info = ros.publisher(AudioInfo, "audio_info", LATCHED)
    pub = ros.publisher(AudioDataStamped, "audio_stamped")
    t0 = (time.time_ns() // NS_PER_S) * NS_PER_S

    def send(payloads: list[bytes], start_ns: int) -> None:
        for k, payload in enumerate(payloads):
            msg = AudioDataStamped()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(
                start_ns + k * FRAME_NS, NS_PER_S)
            msg.audio.data = payload
            pub.publish(msg)

    raw = tone_s16(RATE, 1.0, 440.0)
    with NodeProcess(RECORDER, namespace=namespace, params={
            "output_dir": str(tmp_path), "sync_period_s": 0.1, "qos.depth": 1000}) as rec:
        info.publish(AudioInfo(channels=1, sample_rate=RATE, sample_format="S16LE",
                               bitrate=256000, coding_format="wave"))
        diags.wait(lambda v: v["input_coding"] == "wave", "the PCM audio_info taken")
        ros.wait_for_subscribers(pub)
        path = start(ros)
        send([raw[i:i + 320].tobytes() for i in range(0, RATE, 320)], t0)
        wait_for_samples(path, RATE)
        info.publish(AudioInfo(channels=1, sample_rate=48000, sample_format="S16LE",
                               bitrate=32000, coding_format="opus"))
        diags.wait(lambda v: v["input_coding"] == "opus", "the Opus audio_info taken")
        send(opus_packets(tone_s16(48000, 1.0, 440.0), 48000), t0 + NS_PER_S)
        wait_for_samples(path, 2 * RATE - 800)  # the resampler holds ~20 ms until stop
        stop(ros)
        assert "(wave) to 48000 Hz 1 ch S16LE (opus)" in rec.output
    rate, x = read_wav(path)
    side = sidecar_of(path)
    assert rate == RATE and abs(len(x) - 2 * RATE) <= 20
    assert side["source_codings"] == ["wave", "opus"]
    assert side["source_formats"] == ["16000 Hz 1 ch S16LE", "48000 Hz 1 ch S16LE"]
    assert side["gaps"]["count"] == 0 and side["timeline_resets"]["count"] == 0
    second = x[RATE + 800: 2 * RATE - 800]
    assert peak_hz(second, RATE) == pytest.approx(440.0, abs=2)
    assert np.max(np.abs(second)) == pytest.approx(0.5, abs=0.05)
