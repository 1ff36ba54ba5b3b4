import dataclasses
import itertools

import numpy as np
import pytest

from kos_audio.core import (
    NS_PER_S,
    AudioFormat,
    CapturedBlock,
    ChunkStamper,
    FrameChunker,
    SampleClock,
    SampleFormat,
)
from kos_audio.errors import AudioFormatError


def test_chunker_is_exact_for_any_input_sizes() -> None:
    data = np.arange(10_000, dtype=np.int32).reshape(-1, 2)
    chunker = FrameChunker(320)
    out, start = [], 0
    for size in np.random.default_rng(1).integers(0, 900, size=100):
        out += chunker.push(data[start : start + size])
        start += size
    out += chunker.push(data[start:])
    rest = chunker.flush()
    assert all(len(c) == 320 for c in out)
    joined = np.concatenate([*out, rest])
    assert np.array_equal(joined, data)
    assert chunker.flush() is None
    with pytest.raises(AudioFormatError):
        FrameChunker(0)


def test_sample_clock_does_not_accumulate_error() -> None:
    clock = SampleClock(44100)
    clock.anchor(1_000)
    stamps = [clock.take(441) for _ in range(100_000)]  # 10 ms chunks, ~17 min
    assert stamps[0] == 1_000
    assert stamps[-1] == 1_000 + 99_999 * 441 * NS_PER_S // 44100
    assert set(np.diff(stamps)) == {10_000_000}


def _blocks(fmt: AudioFormat, seconds: float, block_frames: int, t0: int) -> list[CapturedBlock]:
    total = int(fmt.sample_rate_hz * seconds)
    ramp = (np.arange(total) % 30000).astype("<i2")
    return [CapturedBlock(ramp[i : i + block_frames].tobytes(),
                          capture_time_ns=t0 + i * NS_PER_S // fmt.sample_rate_hz)
            for i in range(0, total, block_frames)]


def test_stamper_chunks_are_contiguous_and_lossless() -> None:
    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    t0 = 1_700_000_000 * NS_PER_S
    stamper = ChunkStamper(fmt, fmt, 320)
    chunks = [c for b in _blocks(fmt, 2.0, 137, t0) for c in stamper.push(b)]
    chunks += stamper.flush()
    assert chunks[0].stamp_ns == t0
    assert all(c.frames == 320 for c in chunks[:-1])
    for a, b in itertools.pairwise(chunks):
        assert b.stamp_ns - a.stamp_ns == a.frames * NS_PER_S // 16000
    data = b"".join(c.data for c in chunks)
    assert data == b"".join(b.data for b in _blocks(fmt, 2.0, 137, t0))


def test_discontinuity_reanchors_and_flushes_pending() -> None:
    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    stamper = ChunkStamper(fmt, fmt, 320)
    first = stamper.push(CapturedBlock(b"\x01\x00" * 500, capture_time_ns=0))
    assert [c.frames for c in first] == [320]
    later = 5 * NS_PER_S
    out = stamper.push(CapturedBlock(b"\x02\x00" * 320, capture_time_ns=later,
                                     discontinuity=True))
    assert [c.frames for c in out] == [180, 320]  # old timeline's tail, then the new one
    assert out[0].stamp_ns == 320 * NS_PER_S // 16000
    assert out[1].stamp_ns == later
    assert stamper.reanchors == 1


def test_drift_beyond_limit_reanchors() -> None:
    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    stamper = ChunkStamper(fmt, fmt, 160)
    stamper.push(CapturedBlock(b"\0\0" * 160, capture_time_ns=0))
    stamper.push(CapturedBlock(b"\0\0" * 160, capture_time_ns=10_000_000 + 50_000_000))
    assert stamper.reanchors == 0 and stamper.drift_ns == 50_000_000
    out = stamper.push(CapturedBlock(b"\0\0" * 160, capture_time_ns=20_000_000 + 900_000_000))
    assert stamper.reanchors == 1
    assert out[-1].stamp_ns == 920_000_000


def test_stamper_converts_rate_and_keeps_sample_count() -> None:
    src = AudioFormat(48000, 2, SampleFormat.F32LE)
    dst = AudioFormat(16000, 1, SampleFormat.S16LE)
    stamper = ChunkStamper(src, dst, 320)
    block = np.zeros((480, 2), "<f4").tobytes()
    chunks = [c for i in range(100) for c in stamper.push(
        CapturedBlock(block, capture_time_ns=i * 10_000_000))]
    chunks += stamper.flush()
    assert abs(sum(c.frames for c in chunks) - 16000) <= 2
    assert chunks[1].stamp_ns - chunks[0].stamp_ns == 20_000_000


def test_backoff_grows_caps_and_forgives_after_a_healthy_run() -> None:
    from kos_audio.core import Backoff

    b = Backoff(initial_s=0.2, max_s=1.0)
    assert [b.after_failure(0.1) for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.after_failure(60.0) == 0.2  # a long healthy run starts the growth again
    assert b.after_failure(0.0) == 0.4


def test_stamper_follows_a_source_reopened_in_another_format() -> None:
    s16 = AudioFormat(16000, 1, SampleFormat.S16LE)
    f32 = AudioFormat(48000, 1, SampleFormat.F32LE)
    stamper = ChunkStamper(s16, s16, 320)
    assert stamper.follow(s16) == []  # unchanged: nothing happens
    out = stamper.push(CapturedBlock(b"\1\0" * 400, capture_time_ns=1_000_000_000))
    assert [c.frames for c in out] == [320]
    tail = stamper.follow(f32)  # the old timeline ends with its partial chunk
    assert [(c.frames, c.stamp_ns) for c in tail] == [(80, 1_020_000_000)]
    assert stamper.reanchors == 1
    out = stamper.push(CapturedBlock(np.zeros(960, "<f4").tobytes(),
                                     capture_time_ns=5_000_000_000))
    out += stamper.flush()
    assert out[0].stamp_ns == 5_000_000_000  # a new timeline from the new block
    assert abs(sum(c.frames for c in out) - 320) <= 2
    assert stamper.reanchors == 1  # the new anchor is the one counted by follow()


def _late_blocks(fmt: AudioFormat, t0: int, delays_ms: list[float]) -> list[CapturedBlock]:
    """20 ms blocks whose first frame is at ``t0 + k * 20 ms``, each read ``delay`` late."""
    frames = fmt.sample_rate_hz // 50
    return [CapturedBlock(np.full(frames, k, "<i2").tobytes(),
                          capture_time_ns=t0 + k * frames * NS_PER_S // fmt.sample_rate_hz
                          + round(delay * 1e6))
            for k, delay in enumerate(delays_ms)]


def test_settling_anchors_on_the_earliest_capture_estimate() -> None:
    # A capture time is "no earlier than": a stream's first blocks are often read late.
    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    t0 = 1_700_000_000 * NS_PER_S
    stamper = ChunkStamper(fmt, fmt, 320, settle_s=0.1)
    blocks = _late_blocks(fmt, t0, [38.0, 21.0, 4.0, 0.5, 9.0, 2.0, 7.0, 1.0])
    out = [stamper.push(b) for b in blocks]
    # Held back until 100 ms (5 blocks) had arrived, then released at once, in order.
    assert [len(o) for o in out] == [0, 0, 0, 0, 5, 1, 1, 1]
    chunks = [c for o in out for c in o]
    assert chunks[0].stamp_ns == t0 + 500_000  # the earliest estimate (block 3's)
    assert [c.stamp_ns - chunks[0].stamp_ns for c in chunks] == [k * 20_000_000
                                                                for k in range(8)]
    assert [np.frombuffer(c.data, "<i2")[0] for c in chunks] == list(range(8))
    assert stamper.drift_ns == 500_000  # the last block, 1 ms late, against t0 + 0.5 ms


def test_flush_while_settling_anchors_and_loses_nothing() -> None:
    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    t0 = 1_700_000_000 * NS_PER_S
    stamper = ChunkStamper(fmt, fmt, 320, settle_s=0.2)
    out = [c for b in _late_blocks(fmt, t0, [30.0, 3.0]) for c in stamper.push(b)]
    assert out == []
    chunks = stamper.flush()
    assert [c.stamp_ns for c in chunks] == [t0 + 3_000_000, t0 + 23_000_000]
    # A discontinuity while settling ends that timeline too (its chunk comes out).
    restart = _late_blocks(fmt, t0 + NS_PER_S, [5.0])[0]
    assert stamper.push(dataclasses.replace(restart, discontinuity=True)) == []
    later = CapturedBlock(bytes(640), capture_time_ns=t0 + 2 * NS_PER_S, discontinuity=True)
    ended = stamper.push(later)
    assert [c.stamp_ns for c in ended] == [t0 + NS_PER_S + 5_000_000]
    assert stamper.reanchors == 2
