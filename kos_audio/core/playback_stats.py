"""The playback engine's statistics: running counters and the snapshot diagnostics read.

:class:`PlaybackCounters` is what the engine counts as it goes (frames at the output rate);
:class:`UtteranceCounter` tells utterances' ends from starvations as the speech queue runs dry
and refills; :meth:`PlaybackCounters.snapshot` turns the counters into a frozen
:class:`PlaybackStats` in seconds, whose :meth:`PlaybackStats.diagnostics` gives the
key/values speaker_node publishes.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from kos_audio.core.formats import AudioFormat

#: Recent receive-to-sound latencies kept for percentiles.
LATENCY_HISTORY = 1000
#: The speech queue ran dry and more speech arrived within this time (s): the producer was too
#: slow and the listener heard a gap; counted as a starvation.
STARVE_WINDOW_S = 0.25


class PlaybackState(enum.Enum):
    """What the speech side of the engine is doing."""

    IDLE = "idle"  # nothing queued, nothing sounding
    PLAYING = "playing"  # audio queued or still sounding in the device
    PAUSED = "paused"  # paused by request; the queue is kept


@dataclass(frozen=True, slots=True)
class PlaybackStats:
    """A consistent snapshot of the engine's state and counters (for diagnostics).

    Durations in s at the output rate; counts since the engine was made.
    """

    state: PlaybackState
    output: AudioFormat
    queued_s: float
    background_queued_s: float
    output_latency_s: float
    pulled_frames: int
    played_s: float
    utterances: int
    starvations: int
    interrupts: int
    dropped_overflow_s: float
    dropped_interrupt_s: float
    background_dropped_s: float
    late_chunks: int
    invalid_chunks: int
    repaired_chunks: int
    non_finite_samples: int
    clipped_samples: int
    latencies_s: tuple[float, ...] = field(default=())

    def latency_percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of receive-to-sound latency (ms); NaN if none."""
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_s), q) * 1000.0)

    def diagnostics(self) -> dict[str, str | int | float]:
        """The engine's part of speaker_node's diagnostics, under their published key names."""
        return {
            "state": self.state.value,
            "sink_format": self.output.describe(),
            "queue_s": self.queued_s,
            "background_queue_s": self.background_queued_s,
            "output_latency_ms": self.output_latency_s * 1000.0,
            "latency_p50_ms": self.latency_percentile_ms(50),
            "latency_p99_ms": self.latency_percentile_ms(99),
            "starvations": self.starvations,
            "played_s": self.played_s,
            "utterances": self.utterances,
            "interrupts": self.interrupts,
            "dropped_overflow_s": self.dropped_overflow_s,
            "dropped_interrupt_s": self.dropped_interrupt_s,
            "dropped_background_s": self.background_dropped_s,
            "dropped_late_chunks": self.late_chunks,
            "dropped_invalid_chunks": self.invalid_chunks,
            "repaired_chunks": self.repaired_chunks,
            "non_finite_samples": self.non_finite_samples,
            "clipped_samples": self.clipped_samples,
        }


@dataclass(slots=True)
class PlaybackCounters:
    """What the engine counts as it goes; frame counts at the output rate.

    Not thread-safe: the engine updates and reads it under its lock.
    """

    pulled_frames: int = 0  # every frame a sink pulled, silence included
    played_frames: int = 0  # speech frames pulled, fade-outs excluded
    utterances: int = 0  # speech queue ran dry at the end of one
    starvations: int = 0  # ran dry and refilled within STARVE_WINDOW_S: a heard gap
    interrupts: int = 0
    overflow_frames: int = 0  # oldest speech dropped at max_queue_s, or on a format switch
    interrupt_frames: int = 0  # speech dropped by interrupts
    background_overflow_frames: int = 0
    late_chunks: int = 0
    invalid_chunks: int = 0
    repaired_chunks: int = 0
    non_finite_samples: int = 0
    #: Receive-to-sound latencies (s) of the latest utterances' first samples.
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))

    def count_repair(self, non_finite: int) -> None:
        """Count a chunk played after a repair that replaced ``non_finite`` samples."""
        self.repaired_chunks += 1
        self.non_finite_samples += non_finite

    def snapshot(
        self, *, state: PlaybackState, output: AudioFormat, queued_frames: int,
        background_frames: int, output_latency_s: float, clipped_samples: int,
    ) -> PlaybackStats:
        """The counters in seconds at ``output``'s rate, with the state the engine adds."""
        rate = output.sample_rate_hz
        return PlaybackStats(
            state=state, output=output,
            queued_s=queued_frames / rate,
            background_queued_s=background_frames / rate,
            output_latency_s=output_latency_s,
            pulled_frames=self.pulled_frames, played_s=self.played_frames / rate,
            utterances=self.utterances, starvations=self.starvations,
            interrupts=self.interrupts,
            dropped_overflow_s=self.overflow_frames / rate,
            dropped_interrupt_s=self.interrupt_frames / rate,
            background_dropped_s=self.background_overflow_frames / rate,
            late_chunks=self.late_chunks, invalid_chunks=self.invalid_chunks,
            repaired_chunks=self.repaired_chunks, non_finite_samples=self.non_finite_samples,
            clipped_samples=clipped_samples, latencies_s=tuple(self.latencies_s),
        )


class UtteranceCounter:
    """Counts utterances and starvations from the speech queue running dry and refilling.

    The queue running dry ends an utterance; speech arriving within :data:`STARVE_WINDOW_S`
    after that means the producer was late and the listener heard a gap (a starvation). The
    end of an interrupt's fade-out is neither. Not thread-safe: the engine calls it under its
    lock; times are ``time.monotonic()`` (s).

    Args:
        counts: where the counts go (``utterances``, ``starvations``).

    """

    def __init__(self, counts: PlaybackCounters) -> None:
        self._counts = counts
        self._dry_at: float | None = None
        self._drained = False  # the last pull emptied the queue exactly
        self._no_starve = False  # the next time the queue runs dry is an interrupt's end

    def refilled(self, now: float) -> None:
        """Speech frames were queued at ``now``."""
        self._drained = False
        if self._dry_at is not None:
            if now - self._dry_at < STARVE_WINDOW_S:
                self._counts.starvations += 1
            self._dry_at = None

    def emptied(self, now: float, *, short: bool) -> None:
        """A pull at ``now`` took the last speech (none queued nor held back by the resampler).

        ``short``: it got fewer frames than it asked for, so the gap is heard now.
        """
        if short:
            self._went_dry(now)
        else:
            # Drained exactly: it is dry only if the next pull finds nothing (a producer
            # streaming in real time refills it in between, no gap).
            self._drained = True

    def found_nothing(self, now: float) -> None:
        """A pull at ``now``, not paused, found no speech queued."""
        if self._drained:
            self._drained = False
            self._went_dry(now)

    def interrupted(self, *, fading: bool) -> None:
        """Speech was interrupted; ``fading``: a fade-out is left to play (not an utterance)."""
        self._no_starve = fading
        self._dry_at = None
        self._drained = False

    def _went_dry(self, now: float) -> None:
        if self._no_starve:
            self._no_starve = False
        else:
            self._dry_at = now
            self._counts.utterances += 1
