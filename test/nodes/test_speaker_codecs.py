"""speaker_node playing compressed topics (real libopus packets, real LAME MP3 cut anywhere),
as a real process over real DDS; the sound is checked in the file sink's output."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from audio_common_msgs.msg import AudioInfo
from kos_testing.codecs import cut_anywhere, mp3_stream, opus_packets, tone_s16
from speaker_helpers import Speaker, amplitude_at, loud_seconds, loud_span, peak_hz

pytest.importorskip("av")

RATE = 16000
FRAME_NS = 20_000_000
LOST, CORRUPT, RAW_PCM = 20, 30, 35  # message indices: never sent, garbage, raw PCM


def read_file(path: Path) -> tuple[np.ndarray, int]:
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data[:, 0], rate


def spoilt(k: int, packet: bytes, pcm: np.ndarray) -> bytes:
    """Message ``k``'s payload: the packet, or garbage, or the raw PCM it encodes."""
    if k == CORRUPT:
        return b"\xff\xff\xff"  # code 3 with an impossible frame count
    if k == RAW_PCM:
        return pcm[k * 320:(k + 1) * 320].tobytes()  # PCM under an Opus audio_info
    return packet


def file_speaker(make_speaker: Callable[..., Speaker], path: Path, *, stamped: bool) -> Speaker:
    return make_speaker(sink="file", stamped=stamped,
                        **{"file.path": str(path), "sample_rate": RATE, "channels": 1})


def test_opus_packets_play_with_losses_concealed_and_bad_payloads_dropped(
        make_speaker: Callable[..., Speaker], tmp_path: Path) -> None:
    path = tmp_path / "opus.wav"
    speaker = file_speaker(make_speaker, path, stamped=True)
    speaker.info.publish(AudioInfo(channels=1, sample_rate=RATE, sample_format="S16LE",
                                   bitrate=32000, coding_format="opus"))
    speaker.wait_status(lambda s: s["input_coding"] == "opus")
    pcm = tone_s16(RATE, 1.0, 440.0)
    packets = opus_packets(pcm, RATE)
    assert len(packets) == 50
    t0 = time.time_ns()
    for k, packet in enumerate(packets):
        if k != LOST:  # lost on the link: the next message's stamp is 20 ms late
            speaker.send(spoilt(k, packet, pcm), stamp_ns=t0 + k * FRAME_NS)
    t_true = speaker.wait_speaking(True)
    speaker.wait_speaking(False, after=t_true)
    status = speaker.wait_status(lambda s: int(s["corrupt_chunks"]) == 2)
    # The lost message and the two dropped ones: three runs of 20 ms, each concealed.
    assert int(status["concealments"]) == 3
    assert float(status["concealed_s"]) == pytest.approx(0.06, abs=0.001)
    assert status["input_format"] == "16000 Hz 1 ch S16LE"
    assert speaker.node.alive()
    assert speaker.node.output.count("payload dropped") == 1  # throttled: one line
    assert "corrupt opus" in speaker.node.output
    assert speaker.stop() == 0
    x, rate = read_file(path)
    assert rate == RATE
    start, end = loud_span(x, rate)
    assert end - start == pytest.approx(1.0, abs=0.03)  # every message's time, no hole
    # The lost message and the corrupt one are concealed: the tone goes on. The raw PCM is
    # decoded by libopus before its size gives it away, which leaves the decoder's state
    # garbage: its concealment is silent (a known limit of the core; see docs/speaker_node.md).
    win = rate // 200
    peaks = np.abs(x[round(start * rate):][: round((end - start) * rate) // win * win])
    quiet = np.flatnonzero(peaks.reshape(-1, win).max(axis=1) < 0.05) * 0.005
    assert all(RAW_PCM * 0.02 - 0.01 <= t <= (RAW_PCM + 1) * 0.02 + 0.01 for t in quiet), quiet
    assert loud_seconds(x, rate) >= end - start - 0.025
    played = x[round(start * rate) + 160: round(end * rate) - 160]
    assert peak_hz(played, rate) == pytest.approx(440, abs=5)
    clean = x[round(start * rate) + 800: round((start + 0.38) * rate)]  # before the losses
    assert amplitude_at(clean, 440, rate) == pytest.approx(0.5, abs=0.05)


def test_mp3_cut_at_arbitrary_byte_boundaries_plays_whole(
        make_speaker: Callable[..., Speaker], tmp_path: Path) -> None:
    path = tmp_path / "mp3.wav"
    speaker = file_speaker(make_speaker, path, stamped=False)  # like audio_capture: AudioData
    speaker.info.publish(AudioInfo(channels=1, sample_rate=RATE, sample_format="S16LE",
                                   bitrate=32000, coding_format="mp3"))
    speaker.wait_status(lambda s: s["input_coding"] == "mp3")
    pieces = cut_anywhere(mp3_stream(tone_s16(RATE, 1.5, 660.0), RATE))
    assert len(pieces) > 10
    for piece in pieces:
        speaker.send(piece)
    t_true = speaker.wait_speaking(True)
    speaker.wait_speaking(False, after=t_true)
    status = speaker.wait_status(lambda s: float(s["played_s"]) >= 1.5)
    assert status["corrupt_chunks"] == "0"
    assert speaker.stop() == 0
    x, rate = read_file(path)
    start, end = loud_span(x, rate)
    assert end - start == pytest.approx(1.5, abs=0.03)  # LAME's delay and padding are silent
    played = x[round(start * rate) + 800: round(end * rate) - 800]
    assert peak_hz(played, rate) == pytest.approx(660, abs=5)
    assert amplitude_at(played, 660, rate) == pytest.approx(0.5, abs=0.05)
