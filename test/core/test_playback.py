"""The playback engine on real arrays and real threads (no ROS, no device)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from playback_helpers import BLOCK, OUT, S16, drain, feed, peak_hz, tone

from kos_audio.core import AudioFormat, PlaybackEngine, SampleFormat
from kos_audio.core.playback import FADE_S, DropReason, PlaybackState


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
    for _ in range(20):  # each chunk lands just before the pull that plays it
        engine.enqueue(block, native, now_ns=time.time_ns())
        assert engine.pull(BLOCK).audible_frames == BLOCK
    stats = engine.stats()
    assert stats.starvations == 0 and stats.utterances == 0  # still one utterance, going on
    assert engine.pull(BLOCK).audible_frames == 0  # the producer is late: a gap is heard
    engine.enqueue(block, native, now_ns=time.time_ns())
    stats = engine.stats()
    assert stats.starvations == 1 and stats.utterances == 1
