"""The common base of sinks whose clock is a pacing thread (file, null, KOS, Resonite IO)."""

from __future__ import annotations

from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import AudioSink, PlaybackBlock, PullCallback
from kos_audio.core.pacing import PacedPuller
from kos_audio.errors import BackendError


class PacedSink(AudioSink):
    """A sink whose clock is a :class:`PacedPuller` thread: one block every ``block_ms``.

    Owns the format, the block size, the pacing thread and its underrun count. Subclasses
    implement :meth:`_consume` (called on the pacing thread with every block), :meth:`open`
    and :meth:`describe`, and may extend :meth:`close`, :meth:`_set_format` and
    :meth:`_new_puller`. A failure raised by :meth:`_consume` stops the pacing thread and is
    reported by :meth:`check`, so the playback loop reopens the sink with back-off. Output
    latency is 0 unless a subclass says otherwise: a block counts as heard when it is consumed.

    Args:
        fmt: the format (a subclass that negotiates one on :meth:`open` calls
            :meth:`_set_format`).
        block_ms: the pacing period (ms); converted to frames once per format.
        thread_name: the pacing thread's name.

    """

    #: How long :meth:`close` waits for the pacing thread to end (s).
    _stop_timeout_s = 1.0

    def __init__(self, fmt: AudioFormat, *, block_ms: float, thread_name: str) -> None:
        self._block_ms = block_ms
        self._thread_name = thread_name
        self._set_format(fmt)
        self._puller: PacedPuller | None = None
        self._pull: PullCallback | None = None
        self._past_underruns = 0  # of pacing threads that ran before the current one
        self._underruns = 0  # a subclass's own count (e.g. of a server buffer it models)

    @property
    def format(self) -> AudioFormat:
        """The format blocks are consumed in (the requested one before :meth:`open`)."""
        return self._format

    @property
    def output_latency_s(self) -> float:
        """0: a block is "heard" when it is consumed."""
        return 0.0

    @property
    def block_frames(self) -> int:
        """Frames per pull: ``block_ms`` at :attr:`format`'s rate."""
        return self._block_frames

    @property
    def underruns(self) -> int:
        """Late pulls while audio was playing (all runs), plus the subclass's own count."""
        puller = self._puller
        current = puller.underruns if puller is not None else 0
        return self._past_underruns + self._underruns + current

    def start(self, pull: PullCallback) -> None:
        """Start the pacing thread calling ``pull`` (returns at once; no-op while running)."""
        if self._puller is not None:
            return
        self._pull = pull
        puller = self._new_puller()
        self._puller = puller
        puller.start(self._pull_block)

    def check(self) -> None:
        """Raise :class:`BackendError` if consuming a block failed (e.g. disk full)."""
        error = self._pacing_error()
        if error is not None:
            raise BackendError(f"{self.describe()} failed: {error}") from error

    def interrupt(self) -> None:
        """Nothing is held downstream: blocks are consumed as they are pulled."""

    def close(self) -> None:
        """Stop the pacing thread; idempotent, any thread."""
        puller, self._puller = self._puller, None
        if puller is not None:
            puller.stop(self._stop_timeout_s)
            self._past_underruns += puller.underruns

    def describe(self) -> str:
        """One line naming the sink."""
        raise NotImplementedError

    # -- for subclasses --------------------------------------------------------------------
    def _set_format(self, fmt: AudioFormat) -> None:
        """Adopt ``fmt`` (at construction and on a negotiating :meth:`open`)."""
        self._format = fmt
        self._block_frames = fmt.frames_for_ms(self._block_ms)

    def _new_puller(self) -> PacedPuller:
        """The pacing thread of one run (from :meth:`start`; not started yet)."""
        return PacedPuller(self._format.sample_rate_hz, self._block_frames, self._consume,
                           name=self._thread_name)

    def _pull_block(self, frames: int) -> PlaybackBlock:
        """Pull ``frames`` from the engine (pacing thread only)."""
        assert self._pull is not None
        return self._pull(frames)

    def _pacing_error(self) -> Exception | None:
        """What stopped the current pacing thread, if anything."""
        puller = self._puller
        return None if puller is None else puller.error

    def _consume(self, block: PlaybackBlock) -> None:
        """Handle one block (pacing thread); raising stops the thread (:meth:`check`)."""
        raise NotImplementedError
