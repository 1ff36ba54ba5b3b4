"""Capped exponential back-off for reconnecting to devices and servers."""

from __future__ import annotations

#: A backend that stayed up this long (s) before failing counts as recovered: the next retry
#: starts again from the initial delay instead of the grown one.
HEALTHY_S = 5.0


class Backoff:
    """Delays ``initial_s, initial_s*factor, ...`` capped at ``max_s``; :meth:`reset` on success.

    A reconnect loop that waits :meth:`next_delay` between attempts never spins hot and
    reaches a restarted peer within ``max_s``.
    """

    def __init__(self, *, initial_s: float = 0.2, max_s: float = 5.0, factor: float = 2.0) -> None:
        if initial_s <= 0 or max_s < initial_s or factor < 1:
            raise ValueError("Backoff needs 0 < initial_s <= max_s and factor >= 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self._next = initial_s
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay (s) before the next attempt; grows each call."""
        delay = self._next
        self._next = min(self.max_s, self._next * self.factor)
        self.attempts += 1
        return delay

    def after_failure(self, healthy_for_s: float) -> float:
        """The delay after a failure that followed ``healthy_for_s`` seconds of working.

        A long healthy run resets the growth first, so a rare glitch is retried quickly while a
        backend that fails right after every reopen backs off to ``max_s``.
        """
        if healthy_for_s >= HEALTHY_S:
            self.reset()
        return self.next_delay()

    def reset(self) -> None:
        """Back to the initial delay (call after a success)."""
        self._next = self.initial_s
        self.attempts = 0
