"""ReferenceTimeline: played audio cut out at the microphone's stamps."""

import numpy as np
import pytest

from kos_audio.core import AudioFormat, SampleFormat, from_float
from kos_audio.core.echo import ReferenceTimeline
from kos_audio.core.stamping import NS_PER_S

T0 = 1_700_000_000 * NS_PER_S  # a realistic ROS time
S16_16K = AudioFormat(16000, 1, SampleFormat.S16LE)


def ramp(n: int, start: int = 0) -> np.ndarray:
    """Distinct S16 values, so a sample's position can be read from its value."""
    return ((np.arange(start, start + n) % 30000) - 15000).astype(np.int16)


def add_ramp(tl: ReferenceTimeline, start_frame: int, frames: int, chunk: int,
             t0: int = T0) -> None:
    for i in range(start_frame, start_frame + frames, chunk):
        n = min(chunk, start_frame + frames - i)
        assert tl.add(ramp(n, i).tobytes(), S16_16K, t0 + i * NS_PER_S // 16000)


def test_a_reference_sample_stamped_t_aligns_with_the_mic_sample_stamped_t() -> None:
    tl = ReferenceTimeline(16000)
    add_ramp(tl, 0, 16000, 320)
    expected = ramp(16000) / 32768.0
    for first, frames in [(0, 320), (1, 333), (4321, 17), (15000, 999)]:
        got = tl.take(T0 + first * NS_PER_S // 16000, frames)
        assert np.array_equal(got, expected[first:first + frames].astype(np.float32))
    assert tl.frames_missing == 0
    # A mic stamp between two reference samples gets the nearest one.
    got = tl.take(T0 + 100 * NS_PER_S // 16000 + 20_000, 10)  # +0.32 sample
    assert np.array_equal(got, expected[100:110].astype(np.float32))
    got = tl.take(T0 + 100 * NS_PER_S // 16000 + 40_000, 10)  # +0.64 sample
    assert np.array_equal(got, expected[101:111].astype(np.float32))


def test_zeros_where_nothing_was_played_and_missing_frames_are_counted() -> None:
    tl = ReferenceTimeline(16000)
    add_ramp(tl, 1000, 320, 320)
    got = tl.take(T0 + 900 * NS_PER_S // 16000, 200)  # 100 before the reference, 100 in it
    assert np.all(got[:100] == 0)
    assert np.array_equal(got[100:], (ramp(100, 1000) / 32768.0).astype(np.float32))
    assert tl.last_missing == 100
    tl.take(T0 + 5 * NS_PER_S, 160)  # long after: nothing
    assert tl.last_missing == 160
    assert tl.frames_missing == 260
    assert tl.frames_taken == 360


def test_a_gap_in_the_reference_starts_a_new_run_and_stays_silent() -> None:
    tl = ReferenceTimeline(16000)
    add_ramp(tl, 0, 640, 320)
    add_ramp(tl, 960, 640, 320)  # 320 frames (20 ms) never played
    got = tl.take(T0, 1600)
    assert tl.segments_started == 2
    assert tl.last_missing == 320
    assert np.all(got[640:960] == 0)
    assert np.array_equal(got[960:], (ramp(640, 960) / 32768.0).astype(np.float32))


def test_reference_hours_off_the_mic_clock_is_refused_and_counted() -> None:
    tl = ReferenceTimeline(16000, max_offset_ns=NS_PER_S)
    tl.take(T0, 320)  # the microphone's time is now known
    hours = 3 * 3600 * NS_PER_S
    assert not tl.add(ramp(320).tobytes(), S16_16K, T0 + hours)
    assert not tl.add(ramp(320).tobytes(), S16_16K, T0 - hours)
    assert tl.chunks_refused == 2
    assert tl.last_offset_ns == -hours - 320 * NS_PER_S // 16000
    assert tl.covered_until_ns is None  # nothing stored
    assert tl.add(ramp(320).tobytes(), S16_16K, T0 + 320 * NS_PER_S // 16000)
    assert tl.chunks_added == 1


def test_a_reference_format_change_reinitialises_the_conversion() -> None:
    tl = ReferenceTimeline(16000)
    add_ramp(tl, 0, 3200, 320)
    stereo48 = AudioFormat(48000, 2, SampleFormat.F32LE)
    t1 = T0 + 3200 * NS_PER_S // 16000
    n = 48000
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / 48000).astype(np.float32)
    frames = np.repeat(tone[:, None], 2, axis=1)
    for i in range(0, n, 960):
        assert tl.add(from_float(frames[i:i + 960], SampleFormat.F32LE), stereo48,
                      t1 + i * NS_PER_S // 48000)
    assert tl.segments_started == 2
    assert tl.source_format == stereo48
    got = tl.take(t1 + 1600 * NS_PER_S // 16000, 1600)  # 100 ms into the tone
    expected = 0.5 * np.sin(2 * np.pi * 1000 * (1600 + np.arange(1600)) / 16000)
    assert np.max(np.abs(got - expected)) < 0.01  # resampled and aligned to the sample
    assert tl.last_missing == 0


def test_memory_is_bounded() -> None:
    tl = ReferenceTimeline(16000, history_s=2.0)
    add_ramp(tl, 0, 16000 * 10, 320)  # 10 s, no microphone yet
    assert tl._stored <= 2 * 16000
    assert tl.take(T0 + 9 * NS_PER_S, 160).any()  # the newest is kept
    assert tl.take(T0, 160).sum() == 0  # the oldest is gone


@pytest.mark.parametrize("chunk", [1, 7, 441, 960])
def test_any_reference_chunk_size(chunk: int) -> None:
    tl = ReferenceTimeline(16000)
    add_ramp(tl, 0, 4000, chunk)
    assert np.array_equal(tl.take(T0, 4000), (ramp(4000) / 32768.0).astype(np.float32))
