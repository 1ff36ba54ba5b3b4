"""Real-time pacing for sources and sinks that have no hardware clock (tone, file, servers)."""

from __future__ import annotations

import threading
import time

from kos_audio.core.stamping import NS_PER_S


class RealTimePacer:
    """Keeps a frame count in step with the monotonic clock.

    Frame ``n`` is due at ``start + n / rate`` on ``time.monotonic_ns()``; its capture (or
    play) time on the system clock is ``wall_start + n / rate``. Computed from the count, never
    accumulated, so pacing does not drift. Not thread-safe except :meth:`cancel`.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._cancel = threading.Event()
        self.restart()

    def restart(self) -> None:
        """Frame 0 is now."""
        self._mono0 = time.monotonic_ns()
        self._wall0 = time.time_ns()
        self._cancel.clear()

    def offset_ns(self, frames: int) -> int:
        """Duration of ``frames`` frames in ns."""
        return frames * NS_PER_S // self.sample_rate_hz

    def wall_time_ns(self, frame: int) -> int:
        """System-clock time of frame ``frame``."""
        return self._wall0 + self.offset_ns(frame)

    def lag_ns(self, frame: int) -> int:
        """How late (ns, negative = early) it is now for frame ``frame``."""
        return time.monotonic_ns() - (self._mono0 + self.offset_ns(frame))

    def wait_until(self, frame: int, timeout_s: float) -> bool:
        """Sleep until frame ``frame`` is due; False if ``timeout_s`` or a cancel came first."""
        early_s = -self.lag_ns(frame) / NS_PER_S
        if early_s <= 0:
            return True
        if early_s > timeout_s:
            self._cancel.wait(timeout_s)
            return False
        return not self._cancel.wait(early_s)

    def cancel(self) -> None:
        """Wake a :meth:`wait_until` now (from any thread)."""
        self._cancel.set()
