"""Logging bad input and failures without flooding: one line per kind per period, all counted.

A node fed a malformed stream at 50 chunks/s must say so once, not 50 times a second, yet
``/diagnostics`` must count every case. :class:`ProblemLog` does both for every node.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class ProblemLog:
    """Throttled warnings and errors of one node, with an error count and the last error.

    Lines of the same ``kind`` are logged at most once per ``period_s``; the next one logged
    says how many were held back. Every method is thread-safe (executor, capture, playback
    and gRPC threads all report here).

    Args:
        logger: the node's logger (``node.get_logger()``).
        period_s: the least time between two lines of one kind (s).
        clock: monotonic seconds; tests may pass their own.

    """

    def __init__(self, logger: Any, period_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._period_s = period_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_logged: dict[str, float] = {}
        self._held_back: dict[str, int] = {}
        #: Errors reported so far (logged or held back).
        self.errors = 0
        #: The text of the last error.
        self.last_error = ""

    def warning(self, kind: str, message: str) -> None:
        """Log a warning of ``kind`` unless one was logged within the period."""
        suffix = self._suffix(kind)
        if suffix is not None:
            self._logger.warning(message + suffix)

    def error(self, message: str, *, kind: str = "error") -> None:
        """Count an error, remember it, and log it unless one of ``kind`` was just logged."""
        with self._lock:
            self.errors += 1
            self.last_error = message
        suffix = self._suffix(kind)
        if suffix is not None:
            self._logger.error(message + suffix)

    def _suffix(self, kind: str) -> str | None:
        """None to stay quiet, else the text to append to the line about to be logged."""
        now = self._clock()
        with self._lock:
            last = self._last_logged.get(kind)
            if last is not None and now - last < self._period_s:
                self._held_back[kind] = self._held_back.get(kind, 0) + 1
                return None
            self._last_logged[kind] = now
            held = self._held_back.pop(kind, 0)
        return f" ({held} more like it not logged)" if held else ""
