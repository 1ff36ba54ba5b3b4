"""The common base of sinks without a clock of their own (file, null)."""

from __future__ import annotations

from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import AudioSink, PlaybackBlock, PullCallback
from kos_audio.core.pacing import PacedPuller
from kos_audio.errors import BackendError


class PacedSink(AudioSink):
    """A sink whose clock is a :class:`PacedPuller` thread: one block every ``block_ms``.

    Subclasses implement :meth:`_consume` (called on the pacing thread with every block),
    :meth:`open` and :meth:`describe`, and may extend :meth:`close`. A failure raised by
    :meth:`_consume` stops the pacing thread and is reported by :meth:`check`, so the playback
    loop reopens the sink with back-off. Output latency is 0: a block counts as heard when it
    is consumed.
    """

    def __init__(self, fmt: AudioFormat, *, block_ms: float, thread_name: str) -> None:
        self._format = fmt
        self._block_frames = fmt.frames_for_ms(block_ms)
        self._thread_name = thread_name
        self._puller: PacedPuller | None = None
        self._underruns = 0  # of pullers that ran before the current one

    @property
    def format(self) -> AudioFormat:
        """The format blocks are consumed in."""
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
        """Blocks the pacing thread pulled late while audio was playing (all runs)."""
        puller = self._puller
        return self._underruns + (puller.underruns if puller is not None else 0)

    def start(self, pull: PullCallback) -> None:
        """Start a new pacing thread calling ``pull``."""
        if self._puller is not None:
            self._underruns += self._puller.underruns
        self._puller = PacedPuller(self._format.sample_rate_hz, self._block_frames,
                                   self._consume, name=self._thread_name)
        self._puller.start(pull)

    def _consume(self, block: PlaybackBlock) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Raise :class:`BackendError` if consuming a block failed (e.g. disk full)."""
        puller = self._puller
        if puller is not None and puller.error is not None:
            raise BackendError(f"{self.describe()} failed: {puller.error}") from puller.error

    def interrupt(self) -> None:
        """Nothing is held downstream: blocks are consumed as they are pulled."""

    def close(self) -> None:
        """Stop the pacing thread; idempotent."""
        if self._puller is not None:
            self._puller.stop()

    def describe(self) -> str:
        """One line naming the sink."""
        raise NotImplementedError
