"""The playback engine's counters, their snapshot and the utterance/starvation count."""

from __future__ import annotations

import math

import pytest

from kos_audio.core import AudioFormat, SampleFormat
from kos_audio.core.playback_stats import (
    STARVE_WINDOW_S,
    PlaybackCounters,
    PlaybackState,
    UtteranceCounter,
)

OUT = AudioFormat(48000, 2, SampleFormat.F32LE)


def test_snapshot_turns_frames_into_seconds_and_diagnostics_keep_the_published_names() -> None:
    counts = PlaybackCounters(pulled_frames=96000, played_frames=48000, overflow_frames=24000,
                              interrupt_frames=4800, background_overflow_frames=480,
                              late_chunks=2, invalid_chunks=3)
    counts.count_repair(3)
    counts.latencies_s.extend([0.05, 0.07])
    stats = counts.snapshot(state=PlaybackState.PLAYING, output=OUT, queued_frames=4800,
                            background_frames=9600, output_latency_s=0.04, clipped_samples=7)
    assert (stats.played_s, stats.dropped_overflow_s, stats.dropped_interrupt_s) == (1.0, 0.5, 0.1)
    assert (stats.queued_s, stats.background_queued_s, stats.background_dropped_s) == (
        0.1, 0.2, 0.01)
    assert stats.repaired_chunks == 1 and stats.non_finite_samples == 3
    values = stats.diagnostics()
    assert list(values) == [
        "state", "sink_format", "queue_s", "background_queue_s", "output_latency_ms",
        "latency_p50_ms", "latency_p99_ms", "starvations", "played_s", "utterances",
        "interrupts", "dropped_overflow_s", "dropped_interrupt_s", "dropped_background_s",
        "dropped_late_chunks", "dropped_invalid_chunks", "repaired_chunks",
        "non_finite_samples", "clipped_samples"]
    assert values["state"] == "playing" and values["sink_format"] == OUT.describe()
    assert values["output_latency_ms"] == pytest.approx(40.0)
    assert values["latency_p50_ms"] == pytest.approx(60.0)
    assert values["dropped_late_chunks"] == 2 and values["clipped_samples"] == 7


def test_latency_percentiles_are_nan_without_an_utterance() -> None:
    stats = PlaybackCounters().snapshot(state=PlaybackState.IDLE, output=OUT, queued_frames=0,
                                        background_frames=0, output_latency_s=0.0,
                                        clipped_samples=0)
    assert math.isnan(stats.latency_percentile_ms(50)) and stats.latencies_s == ()


def test_a_refill_soon_after_running_dry_is_a_starvation_a_late_one_is_not() -> None:
    counts = PlaybackCounters()
    utterances = UtteranceCounter(counts)
    utterances.emptied(10.0, short=True)  # ran dry
    utterances.refilled(10.0 + STARVE_WINDOW_S / 2)
    utterances.emptied(11.0, short=True)
    utterances.refilled(11.0 + 2 * STARVE_WINDOW_S)
    assert (counts.utterances, counts.starvations) == (2, 1)


def test_an_exact_drain_is_dry_only_if_the_next_pull_finds_nothing() -> None:
    counts = PlaybackCounters()
    utterances = UtteranceCounter(counts)
    utterances.emptied(1.0, short=False)
    utterances.refilled(1.01)  # refilled in time: still the same utterance
    utterances.emptied(1.02, short=False)
    assert counts.utterances == 0
    utterances.found_nothing(1.04)
    assert counts.utterances == 1
    utterances.found_nothing(1.06)  # counted once
    assert counts.utterances == 1


def test_the_end_of_an_interrupt_fade_is_not_an_utterance() -> None:
    counts = PlaybackCounters()
    utterances = UtteranceCounter(counts)
    utterances.interrupted(fading=True)
    utterances.emptied(1.0, short=True)
    utterances.refilled(1.01)
    assert (counts.utterances, counts.starvations) == (0, 0)
