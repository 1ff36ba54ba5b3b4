"""The common base of sinks that send each utterance as one streaming call (KOS, Resonite IO).

:class:`StreamingSink` owns what those sinks share beyond a
:class:`~kos_audio.backends.paced_sink.PacedSink`'s pacing thread: the generation counter
that makes blocks pulled before an interrupt stale, interrupt-as-cancel, dropping the engine's
interrupt fade (:attr:`~kos_audio.core.interfaces.PlaybackBlock.fade_frames`), the list of
calls this side ended and awaits, the pacing failure :meth:`check` reports, and the common
counters. A subclass only places, feeds and ends a call (:meth:`StreamingSink._feed`) and
reaps finished ones (:meth:`StreamingSink._check_calls`).
"""

from __future__ import annotations

import threading
import time
from typing import Generic, Protocol, TypeVar

from kos_audio.backends.paced_sink import PacedSink
from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import PlaybackBlock
from kos_audio.core.pacing import PacedPuller
from kos_audio.errors import BackendError

__all__ = ["StreamCall", "StreamingSink", "Utterance"]


class StreamCall(Protocol):
    """The future-like side of a client-streaming gRPC call (thread-safe)."""

    def done(self) -> bool:
        """Whether the call finished (answered, failed or cancelled)."""
        ...

    def cancel(self) -> bool:
        """Cancel the call at once; False if it had already finished."""
        ...


class Utterance:
    """One streaming call (one utterance) and its fate; guarded by the sink's lock.

    Attributes:
        index: the sink's :attr:`StreamingSink.streams` count when it was placed (from 0).
        call: the call.
        ended: this side half-closed it: its answer is the normal end.
        cancelled: an interrupt or :meth:`StreamingSink.close` cancelled it: its outcome is
            this side's doing and is not reported.

    """

    def __init__(self, index: int, call: StreamCall) -> None:
        self.index = index
        self.call = call
        self.ended = False
        self.cancelled = False


U = TypeVar("U", bound=Utterance)


class StreamingSink(PacedSink, Generic[U]):
    """A sink paced by a :class:`PacedPuller` that sends each utterance as one call.

    Threads: the pacing thread pulls and calls :meth:`_feed` (lock held), which may place a
    call, queue audio for gRPC's request thread and end the call, never waiting on the
    network; :meth:`check` runs on the playback loop's thread and reaps finished calls;
    :meth:`interrupt` and :meth:`close` may come from any thread and never wait on the network.

    Subclasses implement :meth:`_feed`, :meth:`_cancel`, :meth:`_check_calls`,
    :meth:`_disconnect`, :meth:`open` and :meth:`describe`, and may extend :meth:`_reset`.

    Args:
        fmt, block_ms, thread_name: as for :class:`PacedSink`.
        lead_s: how far ahead of real time the server is kept (s); :attr:`_lead_frames` at
            the format's rate.
        count_late_pulls: a pull later than the lead while a call is open counts as an
            underrun; False when the subclass models the server's buffer itself.

    """

    _stop_timeout_s = 2.0

    def __init__(self, fmt: AudioFormat, *, block_ms: float, thread_name: str,
                 lead_s: float, count_late_pulls: bool) -> None:
        self._lead_s = lead_s
        self._count_late_pulls = count_late_pulls
        super().__init__(fmt, block_ms=block_ms, thread_name=thread_name)
        self._lock = threading.Lock()  # everything below: short sections, no network waits
        self._utterance: U | None = None  # the open call, if any
        self._finished: list[U] = []  # calls this side ended, awaiting their answer
        self._generation = 0  # bumped by interrupt(): blocks pulled before it are stale
        self._pulled_generation = 0  # the generation when the last block was pulled
        #: Calls placed (one per utterance).
        self.streams = 0
        #: Calls cancelled by :meth:`interrupt`.
        self.cancelled_streams = 0

    # -- AudioSink -------------------------------------------------------------------------
    def check(self) -> None:
        """Raise what went wrong since :meth:`start` (the playback loop's thread; no waiting).

        Raises:
            BackendError: the pacing thread failed, or :meth:`_check_calls` found a broken
                call.

        """
        error = self._pacing_error()
        if error is not None:
            raise BackendError(f"{self.describe()}: pacing failed: {error!r}") from error
        self._check_calls()

    def interrupt(self) -> None:
        """Cancel the open call: the server drops what it holds. Any thread; never blocks.

        The engine's short fade-out is not sent (it would restart the interrupted speech on a
        new call): blocks pulled before this are stale, and later ones skip their
        ``fade_frames``.
        """
        with self._lock:
            self._generation += 1
            utterance, self._utterance = self._utterance, None
            if utterance is not None:
                utterance.cancelled = True
                self.cancelled_streams += 1
            self._reset()
        if utterance is not None:
            self._cancel(utterance)

    def close(self) -> None:
        """Stop pacing, cancel open and awaited calls, disconnect; idempotent, any thread."""
        super().close()
        with self._lock:
            calls = ([self._utterance] if self._utterance is not None else []) + self._finished
            self._utterance, self._finished = None, []
            for utterance in calls:
                utterance.cancelled = True
            self._reset()
        for utterance in calls:
            self._cancel(utterance)
        self._disconnect()

    # -- for subclasses --------------------------------------------------------------------
    def _set_format(self, fmt: AudioFormat) -> None:
        """Adopt ``fmt`` (at construction and on :meth:`open`): block and lead in its frames."""
        super()._set_format(fmt)
        self._lead_frames = round(self._lead_s * fmt.sample_rate_hz)

    def _emit(self, kind: str, message: str) -> None:
        """Report ``(kind, message)`` to :attr:`on_event`, if set (the caller's thread)."""
        callback = self.on_event
        if callback is not None:
            callback(kind, message)

    def _streaming(self) -> bool:
        # Pacing thread: is a call open (so a pull later than the lead starved the server)?
        return self._count_late_pulls and self._utterance is not None

    def _new_puller(self) -> PacedPuller:
        """Late only beyond the lead; "playing" while a call is open (see ``count_late_pulls``)."""
        return PacedPuller(self._format.sample_rate_hz, self._block_frames, self._consume,
                           name=self._thread_name, late_frames=self._lead_frames,
                           playing=self._streaming)

    def _pull_block(self, frames: int) -> PlaybackBlock:
        """Pull from the engine, noting the generation first (pacing thread only)."""
        self._pulled_generation = self._generation
        return super()._pull_block(frames)

    def _consume(self, block: PlaybackBlock) -> None:
        """The pacing thread's handler of each block; Resonite extends it to top up."""
        self._take(block, time.monotonic())

    def _take(self, block: PlaybackBlock, now: float) -> bool:
        """Hand a fresh block to :meth:`_feed` (pacing thread); what it returns, else False.

        A block pulled before the last interrupt is part of the cancelled utterance and is
        dropped; the engine's fade-out frames at its head are not audio to send.
        """
        with self._lock:
            if self._pulled_generation != self._generation:
                return False
            return self._feed(block, min(block.fade_frames, block.audible_frames), now)

    def _end(self, utterance: U) -> None:
        """Mark ``utterance`` half-closed and await its answer (lock held)."""
        utterance.ended = True
        self._finished.append(utterance)
        if self._utterance is utterance:
            self._utterance = None

    def _collect_done(self) -> list[U]:
        """Remove and return the calls that finished (lock held).

        The ended ones whose answer came, and the open one if the server ended it (not
        :attr:`Utterance.ended`); the caller reports them.
        """
        done = [utterance for utterance in self._finished if utterance.call.done()]
        self._finished = [utterance for utterance in self._finished if utterance not in done]
        current = self._utterance
        if current is not None and current.call.done():
            self._utterance = None
            done.append(current)
        return done

    def _feed(self, block: PlaybackBlock, start: int, now: float) -> bool:
        """Send ``block`` (lock held, pacing thread): place, feed and end calls.

        Args:
            block: a fresh block.
            start: its first frame that is not the interrupt fade (``<= audible_frames``).
            now: ``time.monotonic()`` of this pacing step.

        Returns:
            True if the sink wants the next block now (the producer is ahead).

        Raises:
            Exception: stops the pacing thread; :meth:`check` reports it.

        """
        raise NotImplementedError

    def _cancel(self, utterance: U) -> None:
        """Cancel ``utterance``'s call and end its request stream (lock not held)."""
        raise NotImplementedError

    def _check_calls(self) -> None:
        """Reap finished calls and report them (the playback loop's thread).

        Raises:
            BackendError: a call failed.

        """
        raise NotImplementedError

    def _reset(self) -> None:
        """Forget per-utterance state after an interrupt or close (lock held)."""

    def _disconnect(self) -> None:
        """Close the channel (lock not held; from :meth:`close`)."""
        raise NotImplementedError
