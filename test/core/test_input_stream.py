"""The playback engine's input side: repair, conversion, stream ends, the interrupt fence."""

from __future__ import annotations

import numpy as np
import pytest

from kos_audio.core import AudioFormat, SampleFormat, to_float
from kos_audio.core.input_stream import InputStream, InterruptFence

OUT = AudioFormat(48000, 2, SampleFormat.F32LE)
S16 = AudioFormat(16000, 1, SampleFormat.S16LE)


def sine_s16(seconds: float, fmt: AudioFormat = S16) -> bytes:
    n = round(seconds * fmt.sample_rate_hz)
    x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / fmt.sample_rate_hz)
    return np.round(np.repeat(x[:, None], fmt.channels, axis=1) * 32767).astype("<i2").tobytes()


def test_mono_speech_to_a_stereo_device_loses_no_sample_and_flush_ends_the_stream() -> None:
    stream = InputStream(OUT)
    data, step = sine_s16(1.0), 640
    out = [stream.convert(data[i : i + step], S16).frames for i in range(0, len(data), step)]
    assert stream.pending  # the resampler holds a tail back
    out.append(stream.flush())
    assert not stream.pending
    whole = np.concatenate(out)
    assert whole.shape == (48000, 2) and whole.dtype == np.float32
    assert np.array_equal(whole[:, 0], whole[:, 1])


def test_same_rate_passes_decoded_frames_and_holds_nothing_back() -> None:
    fmt = AudioFormat(48000, 2, SampleFormat.S16LE)
    data = sine_s16(0.01, fmt)
    stream = InputStream(OUT)
    chunk = stream.convert(data, fmt)
    assert not chunk.repair and chunk.non_finite == 0 and not stream.pending
    assert np.array_equal(chunk.frames, to_float(data, fmt))


def test_more_channels_than_the_output_are_averaged() -> None:
    stereo = AudioFormat(48000, 2, SampleFormat.F32LE)
    x = np.array([[0.5, -0.25], [1.0, 0.0]], "<f4")
    out = InputStream(AudioFormat(48000, 1, SampleFormat.F32LE)).convert(x.tobytes(), stereo)
    assert np.allclose(out.frames[:, 0], [0.125, 0.5])


def test_partial_frames_and_non_finite_samples_are_repaired_and_reported() -> None:
    stream = InputStream(AudioFormat(16000, 1, SampleFormat.F32LE))
    f32 = AudioFormat(16000, 1, SampleFormat.F32LE)
    x = np.full(8, 0.25, "<f4")
    x[[1, 2, 3]] = [np.nan, np.inf, -np.inf]
    data = x.tobytes() + b"\x00\x01"
    chunk = stream.convert(data, f32)
    assert "dropped the trailing 2 bytes" in chunk.repair and "3 NaN/Inf" in chunk.repair
    assert chunk.non_finite == 3
    assert chunk.frames[:4, 0].tolist() == [0.25, 0.0, 1.0, -1.0]
    assert np.frombuffer(data[:32], "<f4")[1] != 0  # the caller's buffer is left alone


def test_a_format_change_flushes_the_old_stream_into_the_first_new_chunk() -> None:
    stream = InputStream(OUT)
    first = stream.convert(sine_s16(0.1), S16).frames
    f44 = AudioFormat(44100, 1, SampleFormat.S16LE)
    second = stream.convert(sine_s16(0.1, f44), f44).frames
    tail = stream.flush()
    assert stream.format == f44
    assert len(first) + len(second) + len(tail) == pytest.approx(9600, abs=2)


def test_reset_discards_what_the_resampler_holds() -> None:
    stream = InputStream(OUT)
    stream.convert(sine_s16(0.1), S16)
    stream.reset()
    assert not stream.pending and len(stream.flush()) == 0


def test_fence_drops_stamped_chunks_from_before_and_unstamped_ones_for_a_while() -> None:
    fence = InterruptFence(0.3)
    assert fence.late(0, None) == "" and fence.late(0, 5) == ""  # no interrupt yet
    fence.interrupt(1_000_000_000)
    assert "stamped before" in fence.late(10_000_000_000, 999_999_999)
    assert fence.late(1_000_000_001, 1_000_000_000) == ""  # a new utterance, inside the fence
    assert "within 0.3 s" in fence.late(1_200_000_000, None)
    assert fence.late(1_300_000_000, None) == ""
