"""Capture side of the core: :class:`CaptureLoop` runs and reconnects a source on its own thread.

Its blocks become stamped chunks in :class:`kos_audio.core.stamping.ChunkStamper`.
"""

from __future__ import annotations

import dataclasses
import enum
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from kos_audio.core.backoff import Backoff
from kos_audio.core.interfaces import AudioSource, CapturedBlock, EventCallback
from kos_audio.errors import KosAudioError, SourceFinished


def drain(pending: queue.SimpleQueue[Any]) -> None:
    """Discard what ``pending`` holds.

    Blocks a source queued before it was closed must not reach the next stream's timeline.
    """
    while True:
        try:
            pending.get_nowait()
        except queue.Empty:
            return


class CaptureState(enum.Enum):
    """What a :class:`CaptureLoop` is doing."""

    STOPPED = "stopped"
    OPENING = "opening"
    RUNNING = "running"
    BACKOFF = "waiting to reopen"
    FINISHED = "finished"


class CaptureLoop:
    """Runs an :class:`AudioSource` on a dedicated thread and hands every block on.

    The thread opens the source, reads blocks and calls ``on_block`` with each; when the source
    fails (``BackendError``) it is closed and reopened after a capped exponential back-off, and
    the first block after a reopen is flagged as a discontinuity. ``on_block`` runs on the
    capture thread, never on a real-time audio callback nor the ROS executor: it may publish.

    Args:
        source: the source to run (opened and closed by the loop).
        on_block: receives each block, on the capture thread.
        on_event: receives ``(kind, message)`` for failures and recoveries, on the capture
            thread; kinds: ``"error"``, ``"reopened"``, ``"finished"``.

    """

    def __init__(
        self,
        source: AudioSource,
        on_block: Callable[[CapturedBlock], None],
        *,
        on_event: EventCallback,
        backoff: Backoff | None = None,
        read_timeout_s: float = 0.25,
    ) -> None:
        self.source = source
        self._on_block = on_block
        self._on_event = on_event
        self._backoff = backoff or Backoff()
        self._read_timeout_s = read_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = CaptureState.STOPPED
        self.failures = 0
        self.blocks = 0

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None

    def start(self) -> None:
        """Start the capture thread (no-op when running)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kos_audio-capture", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop capturing and close the source; returns once the thread has ended."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self.source.close()  # unblocks a pending read
        thread.join(timeout_s)
        self.state = CaptureState.STOPPED

    def _run(self) -> None:
        discontinuity = False
        while not self._stop.is_set():
            self.state = CaptureState.OPENING
            opened_at = time.monotonic()
            try:
                self.source.open()
                if discontinuity:
                    self._on_event("reopened", f"{self.source.describe()} reopened")
                opened_at = time.monotonic()
                self.state = CaptureState.RUNNING
                discontinuity = self._pump(discontinuity)
            except SourceFinished as err:
                self.state = CaptureState.FINISHED
                self._on_event("finished", str(err) or f"{self.source.describe()} finished")
                self.source.close()
                return
            except KosAudioError as err:
                self.failures += 1
                discontinuity = True
                healthy_s = time.monotonic() - opened_at if self.state is CaptureState.RUNNING \
                    else 0.0
                delay = self._backoff.after_failure(healthy_s)
                self._on_event("error", f"{err}; retrying in {delay:.1f} s")
                self.source.close()
                self.state = CaptureState.BACKOFF
                self._stop.wait(delay)
        self.source.close()

    def _pump(self, discontinuity: bool) -> bool:
        """Read until stopped; return whether the next block starts a new timeline."""
        while not self._stop.is_set():
            block = self.source.read(self._read_timeout_s)
            if block is None:
                continue
            if discontinuity and not block.discontinuity:
                block = dataclasses.replace(block, discontinuity=True)
            discontinuity = False
            self.blocks += 1
            try:
                self._on_block(block)
            except KosAudioError as err:
                # A bad block must not stop capture; the consumer reports what it was.
                self._on_event("error", f"block dropped: {err}")
        return discontinuity

