"""Sample-count time stamps: the time of frame ``n`` is ``t0 + n / rate``."""

from __future__ import annotations

NS_PER_S = 1_000_000_000


class SampleClock:
    """Maps frame counts of one continuous stream onto a clock.

    Stamps are computed from the frame count with integer arithmetic, never accumulated, so
    consecutive chunks of N frames differ by exactly ``N / rate`` (to the nanosecond) forever
    and a subscriber can detect any lost sample as a stamp jump. :meth:`anchor` starts a new
    timeline (first block, overflow, device restart). Not thread-safe.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._t0_ns: int | None = None
        self._frames = 0

    @property
    def anchored(self) -> bool:
        """True once :meth:`anchor` was called."""
        return self._t0_ns is not None

    @property
    def frames(self) -> int:
        """Frames stamped since the last anchor."""
        return self._frames

    def anchor(self, t0_ns: int) -> None:
        """Start a new timeline whose next frame is at ``t0_ns``."""
        self._t0_ns = t0_ns
        self._frames = 0

    def time_of(self, frame_index: int) -> int:
        """Clock time (ns) of frame ``frame_index`` counted from the anchor."""
        if self._t0_ns is None:
            raise RuntimeError("SampleClock.time_of() before anchor()")
        return self._t0_ns + frame_index * NS_PER_S // self.sample_rate_hz

    def take(self, frames: int) -> int:
        """Stamp (ns) of the next ``frames`` frames: the time of their first frame."""
        stamp = self.time_of(self._frames)
        self._frames += frames
        return stamp
