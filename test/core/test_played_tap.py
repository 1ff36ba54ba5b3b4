import numpy as np

from kos_audio.core import NS_PER_S, AudioFormat, SampleFormat, from_float
from kos_audio.core.played_tap import SETTLE_S, PlayedTap

SINK = AudioFormat(48000, 2, SampleFormat.F32LE)
T0 = 1_700_000_000 * NS_PER_S


def _block(k: int, frames: int = 960) -> np.ndarray:
    # A ramp: every frame differs from its neighbours, so a lost or repeated one shows.
    values = (np.arange(frames) + k * frames).astype(np.float32) / 2**20
    return np.repeat(values[:, None], 2, axis=1)


def _push(tap: PlayedTap, blocks: range, late_ms: float = 0.0, t0: int = T0) -> None:
    for k in blocks:
        tap.push(_block(k), SINK, t0 + k * 20_000_000 + round(late_ms * 1e6))


def test_played_blocks_become_contiguous_chunks_with_their_exact_samples() -> None:
    tap = PlayedTap(SampleFormat.S16LE, chunk_ms=20.0)
    tap.enabled = True
    _push(tap, range(0, 1), late_ms=15.0)  # the first block often goes out late
    _push(tap, range(1, 50))
    chunks = tap.take(1.0)
    assert all(fmt == AudioFormat(48000, 2, SampleFormat.S16LE) for fmt, _ in chunks)
    stamps = [c.stamp_ns for _, c in chunks]
    assert stamps[0] == T0  # the earliest estimate, not the late first block
    assert set(np.diff(stamps)) == {20_000_000}
    pcm = np.concatenate([np.frombuffer(c.data, "<i2") for _, c in chunks]).reshape(-1, 2)
    played = np.concatenate([_block(k) for k in range(50)])
    expected = np.frombuffer(from_float(played, SampleFormat.S16LE), "<i2").reshape(-1, 2)
    assert np.array_equal(pcm, expected)  # every played sample, once, in order
    assert SETTLE_S <= 0.5


def test_disabled_tap_costs_nothing_and_restarts_a_new_timeline() -> None:
    tap = PlayedTap()
    _push(tap, range(0, 20))
    assert tap.take(0.01) == []  # disabled: nothing queued
    tap.enabled = True
    _push(tap, range(20, 40))
    first = [c.stamp_ns for _, c in tap.take(1.0)]
    tap.enabled = False
    _push(tap, range(40, 45))
    tap.enabled = True
    _push(tap, range(45, 70))
    second = [c.stamp_ns for _, c in tap.take(1.0)]
    assert first[0] == T0 + 20 * 20_000_000
    # The old timeline's chunks end where its audio ended; the new one starts at block 45.
    assert second[-1] == T0 + 69 * 20_000_000
    assert T0 + 45 * 20_000_000 in second
    assert T0 + 44 * 20_000_000 not in second


def test_a_sink_reopened_in_another_format_ends_one_stream_and_starts_another() -> None:
    tap = PlayedTap(chunk_ms=20.0)
    tap.enabled = True
    _push(tap, range(0, 15))
    mono = AudioFormat(16000, 1, SampleFormat.F32LE)
    for k in range(15, 30):
        tap.push(np.zeros((320, 1), np.float32), mono, T0 + k * 20_000_000)
    chunks = tap.take(1.0)
    formats = [fmt for fmt, _ in chunks]
    assert formats[0].sample_rate_hz == 48000 and formats[-1].sample_rate_hz == 16000
    frames = sum(c.frames for fmt, c in chunks if fmt.sample_rate_hz == 48000)
    assert frames == 15 * 960  # the first stream's audio comes out whole

