"""The playback engine on real arrays and real threads (no ROS, no device)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from playback_helpers import BLOCK, OUT, S16, drain, feed, peak_hz, tone

from kos_audio.core import AudioFormat, PlaybackEngine, SampleFormat
from kos_audio.core.playback import FADE_S, START_WAIT_PULLS, DropReason, PlaybackState


def test_empty_engine_pulls_silence() -> None:
    engine = PlaybackEngine(OUT)
    block = engine.pull(BLOCK)
    assert block.samples.shape == (BLOCK, 2) and block.samples.dtype == np.float32
    assert block.audible_frames == 0 and not block.samples.any()
    assert not engine.speaking() and engine.state is PlaybackState.IDLE


def test_resamples_and_remixes_to_sink_format_without_losing_samples() -> None:
    engine = PlaybackEngine(OUT)
    feed(engine, tone(440, 1.0), receive_mono=time.monotonic())
    assert engine.speaking()
    samples, audible = drain(engine)
    assert audible == 48000  # 1 s at 16 kHz is exactly 1 s at 48 kHz, tail included
    left = samples[:audible, 0]
    assert np.array_equal(left, samples[:audible, 1])  # mono copied to both channels
    assert peak_hz(left, 48000) == pytest.approx(440, abs=2)
    assert np.max(np.abs(left)) == pytest.approx(0.5, abs=0.01)
    stats = engine.stats()
    assert stats.utterances == 1 and stats.played_s == pytest.approx(1.0)
    assert len(stats.latencies_s) == 1  # the utterance's first sample was timed


def test_interrupt_drops_queue_fades_and_reports_seconds() -> None:
    engine = PlaybackEngine(OUT)
    feed(engine, tone(440, 2.0))
    for _ in range(10):
        engine.pull(BLOCK)
    queued = engine.stats().queued_s
    dropped = engine.interrupt(time.time_ns())
    assert dropped == pytest.approx(queued - FADE_S, abs=0.001)
    assert not engine.speaking()  # false right after the interrupt
    block = engine.pull(BLOCK)
    fade = round(FADE_S * 48000)
    assert block.audible_frames == fade  # a 5 ms fade-out, then silence
    assert block.fade_frames == fade  # marked, so KOS/Resonite can drop it
    assert np.all(np.abs(np.diff(np.abs(block.samples[:fade, 0]))) < 0.05)
    assert not block.samples[fade:].any()
    after = engine.pull(BLOCK)
    assert after.audible_frames == 0 and after.fade_frames == 0
    feed(engine, tone(440, 0.1))
    assert engine.pull(BLOCK).fade_frames == 0  # new speech is not a fade
    stats = engine.stats()
    assert stats.interrupts == 1 and stats.dropped_interrupt_s == pytest.approx(dropped)
    assert stats.starvations == 0


def test_fence_drops_late_unstamped_chunks_then_accepts_new_speech() -> None:
    engine = PlaybackEngine(OUT, fence_s=0.3)
    t0 = time.time_ns()
    engine.interrupt(t0)
    chunk = tone(440, 0.02)
    result = engine.enqueue(chunk, S16, now_ns=t0 + 100_000_000)
    assert result.dropped is DropReason.LATE and "interrupt" in result.message
    assert engine.enqueue(chunk, S16, now_ns=t0 + 400_000_000).dropped is None
    assert engine.stats().late_chunks == 1


def test_stamped_chunks_from_before_the_interrupt_are_dropped_at_any_time() -> None:
    engine = PlaybackEngine(OUT, fence_s=0.3)
    t0 = time.time_ns()
    engine.interrupt(t0)
    chunk = tone(440, 0.02)
    late = engine.enqueue(chunk, S16, now_ns=t0 + 10_000_000_000, stamp_ns=t0 - 1)
    assert late.dropped is DropReason.LATE
    # A new utterance stamped after the interrupt plays even inside the fence.
    fresh = engine.enqueue(chunk, S16, now_ns=t0 + 1_000, stamp_ns=t0 + 1)
    assert fresh.dropped is None
    assert engine.stats().late_chunks == 1


def test_pause_keeps_queue_and_resume_continues_where_it_stopped() -> None:
    engine = PlaybackEngine(OUT)
    feed(engine, tone(440, 0.5))
    first = np.concatenate([engine.pull(BLOCK).samples for _ in range(5)])
    assert engine.pause()
    queued = engine.stats().queued_s
    for _ in range(5):
        assert engine.pull(BLOCK).audible_frames == 0
    assert engine.stats().queued_s == queued and engine.state is PlaybackState.PAUSED
    time.sleep(0.05)
    assert not engine.speaking()  # nothing sounds while paused
    assert engine.resume() and engine.speaking()
    rest, audible = drain(engine)
    whole = np.concatenate([first, rest[:audible]])[:, 0]
    assert len(whole) == 24000  # nothing lost, nothing repeated
    # Continuous phase across the pause: no jump larger than the sine's steepest step.
    around = whole[len(first) - 100 : len(first) + 100]
    assert np.max(np.abs(np.diff(around))) < 2 * np.pi * 440 / 48000 * 0.5 * 1.05


def test_overflow_drops_oldest_and_counts() -> None:
    engine = PlaybackEngine(OUT, max_queue_s=0.5)
    feed(engine, tone(440, 0.3))
    feed(engine, tone(1000, 0.5))
    stats = engine.stats()
    assert stats.queued_s == pytest.approx(0.5)
    # 0.3 s, less what the resampler still held when the newest chunk came.
    assert stats.dropped_overflow_s == pytest.approx(0.3, abs=0.05)
    samples, audible = drain(engine)
    # What is left is the newer (1 kHz) audio.
    assert peak_hz(samples[: audible - 2400, 0], 48000) == pytest.approx(1000, abs=5)


def test_bad_chunks_are_repaired_or_refused_and_counted() -> None:
    engine = PlaybackEngine(OUT)
    odd = engine.enqueue(tone(440, 0.02) + b"\x01", S16, now_ns=0)
    assert odd.repaired and "trailing 1 bytes" in odd.message and odd.dropped is None
    f32 = AudioFormat(16000, 1, SampleFormat.F32LE)
    x = np.full(320, 0.25, np.float32)
    x[[3, 50, 100]] = [np.nan, np.inf, -np.inf]
    bad = engine.enqueue(x.tobytes(), f32, now_ns=0)
    assert bad.repaired and "3 NaN/Inf" in bad.message
    stats = engine.stats()
    assert stats.repaired_chunks == 2 and stats.non_finite_samples == 3
    samples, _ = drain(engine)
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
    engine.note_invalid()
    assert engine.stats().invalid_chunks == 1


def test_format_change_applies_from_the_next_chunk() -> None:
    engine = PlaybackEngine(OUT)
    f44 = AudioFormat(44100, 2, SampleFormat.F32LE)
    feed(engine, tone(440, 0.5))
    feed(engine, tone(1000, 0.5, f44), f44)
    samples, audible = drain(engine)
    assert audible == pytest.approx(48000, abs=2)  # the first stream's tail was not lost
    left = samples[:audible, 0]
    assert peak_hz(left[1000:23000], 48000) == pytest.approx(440, abs=3)
    assert peak_hz(left[25000:47000], 48000) == pytest.approx(1000, abs=3)


def test_speaking_lasts_until_the_last_sample_left_the_device() -> None:
    engine = PlaybackEngine(OUT)
    engine.output_latency_s = 0.3  # a device that holds 300 ms
    feed(engine, tone(440, 0.1))
    _, audible = drain(engine)
    assert audible == 4800
    t_last_pull = time.monotonic()
    assert engine.speaking()  # the queue is empty, but the device still sounds
    time.sleep(0.2)
    assert engine.speaking()
    time.sleep(0.3 - (time.monotonic() - t_last_pull) + 0.1)
    assert not engine.speaking()


def test_producer_and_sink_threads_lose_nothing() -> None:
    engine = PlaybackEngine(OUT, max_queue_s=10)
    data = tone(440, 2.0)
    pulled: list[int] = []
    stop = threading.Event()

    def sink() -> None:
        while not stop.is_set():
            engine.flush_idle()
            pulled.append(engine.pull(BLOCK).audible_frames)

    thread = threading.Thread(target=sink)
    thread.start()
    feed(engine, data, chunk_ms=10)
    time.sleep(0.1)
    deadline = time.monotonic() + 10
    while engine.speaking() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join()
    assert sum(pulled) == 96000


def test_a_producer_in_lockstep_is_not_a_starvation_but_a_late_one_is() -> None:
    native = AudioFormat(48000, 2, SampleFormat.F32LE)  # no resampler: chunks pass whole
    block = np.full((BLOCK, 2), 0.25, "<f4").tobytes()
    engine = PlaybackEngine(OUT)
    engine.enqueue(block, native, now_ns=time.time_ns())
    assert engine.pull(BLOCK).audible_frames == 0  # the first chunk waits for a reserve
    for _ in range(20):  # each chunk lands just before the pull that plays it
        engine.enqueue(block, native, now_ns=time.time_ns())
        assert engine.pull(BLOCK).audible_frames == BLOCK
    stats = engine.stats()
    assert stats.starvations == 0 and stats.utterances == 0  # still one utterance, going on
    assert engine.pull(BLOCK).audible_frames == BLOCK  # one chunk late: the reserve plays
    assert engine.pull(BLOCK).audible_frames == 0  # later than that: a gap is heard
    engine.enqueue(block, native, now_ns=time.time_ns())
    stats = engine.stats()
    assert stats.starvations == 1 and stats.utterances == 1


def longest_silence(x: np.ndarray) -> int:
    """The longest run of (near) zero samples between the first and the last sound."""
    loud = np.abs(x) > 1e-4
    idx = np.flatnonzero(loud)
    inner = loud[idx[0] : idx[-1] + 1]
    edges = np.flatnonzero(np.diff(np.concatenate(([1], inner.astype(np.int8), [1]))))
    return int(np.max(np.diff(edges)[::2], initial=0))  # lengths of the silent runs


@pytest.mark.parametrize("rate", [48000, 44100, 16000])
def test_a_real_time_stream_plays_without_gaps(rate: int) -> None:
    # A TTS streaming 20 ms chunks in real time; the sink pulls 20 ms blocks right after each
    # chunk, and every 7th chunk arrives just after the pull that needed it. soxr released its
    # output in 40-60 ms bursts (the queue ran dry between them) and an utterance started on
    # its first chunk had no reserve for a late one: both played zeros mid-utterance.
    out = AudioFormat(rate, 2, SampleFormat.F32LE)
    block = rate // 50
    engine = PlaybackEngine(out)
    data = tone(440, 1.0)
    step = S16.frame_bytes * 320
    pulled = []
    for k, i in enumerate(range(0, len(data), step)):
        late = k % 7 == 3
        if late:
            pulled.append(engine.pull(block))
        engine.enqueue(data[i : i + step], S16, now_ns=time.time_ns())
        if not late:
            pulled.append(engine.pull(block))
    pulled += [engine.pull(block) for _ in range(4)]  # the producer is done: the rest plays
    x = np.concatenate([b.samples[:, 0] for b in pulled])
    assert longest_silence(x) < rate // 1000  # no zeros inside (a sine's crossing: 1 sample)
    assert sum(b.audible_frames for b in pulled) == rate  # all of it, the tail included
    assert engine.stats().starvations == 0


def test_a_short_utterance_waits_for_the_reserve_then_plays_whole() -> None:
    engine = PlaybackEngine(OUT)
    engine.enqueue(tone(440, 0.01), S16, now_ns=time.time_ns())  # half a block
    held = [engine.pull(BLOCK).audible_frames for _ in range(START_WAIT_PULLS)]
    assert held == [0] * START_WAIT_PULLS and engine.speaking()
    block = engine.pull(BLOCK)
    assert block.audible_frames == 480  # with the resampler's tail, in the same block
    assert longest_silence(block.samples[:480, 0]) <= 1


def test_sentence_at_once_starts_on_the_next_pull() -> None:
    engine = PlaybackEngine(OUT)
    feed(engine, tone(440, 0.5))
    assert engine.pull(BLOCK).audible_frames == BLOCK


def test_taking_the_last_speech_wakes_the_housekeeper_until_it_is_heard() -> None:
    engine = PlaybackEngine(OUT)
    engine.output_latency_s = 0.3  # a device that holds 300 ms
    engine.wake = threading.Event()
    feed(engine, tone(440, 0.1))
    assert engine.idle_for(1.0) == 1.0  # speech to play: nothing to time yet
    while not engine.wake.is_set():
        assert engine.pull(BLOCK).audible_frames  # set only by the pull that empties it
    assert not engine.stats().queued_s and engine.speaking()
    assert 0.0 < engine.idle_for(1.0) <= 0.3 + BLOCK / 48000 + 0.001  # until it is heard
    assert engine.idle_for(1.0, now=time.monotonic() + 1.0) == 1.0  # heard: nothing to time


def test_a_chunk_landing_after_the_reserve_was_used_plays_at_once() -> None:
    # The reserve covered a late chunk (the queue drained exactly, no gap heard); the late
    # chunk then lands on an empty queue. Holding it for a new reserve would make the gap.
    native = AudioFormat(48000, 2, SampleFormat.F32LE)
    block = np.full((BLOCK, 2), 0.25, "<f4").tobytes()
    engine = PlaybackEngine(OUT)
    engine.enqueue(block, native, now_ns=time.time_ns())
    engine.enqueue(block, native, now_ns=time.time_ns())
    assert engine.pull(BLOCK).audible_frames == BLOCK
    assert engine.pull(BLOCK).audible_frames == BLOCK  # the reserve: the queue is empty now
    engine.enqueue(block, native, now_ns=time.time_ns())
    assert engine.pull(BLOCK).audible_frames == BLOCK
    assert engine.stats().starvations == 0
