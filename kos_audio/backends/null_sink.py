"""A sink that discards audio at real-time pace: for benchmarks and robots without a speaker."""

from __future__ import annotations

from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import PlaybackBlock, PullCallback
from kos_audio.core.sink_loop import PacedPuller

#: What the null sink plays when the node requests no format.
NATIVE = AudioFormat(48000, 2, SampleFormat.F32LE)


class NullSink:
    """Pulls and discards one block every ``block_ms`` of real time, like a speaker would.

    Counts what it "played" (:attr:`frames_pulled`, :attr:`audible_frames`), so the node's
    timing (is_speaking, interrupts, latency) is the same as with a device of zero latency.
    """

    def __init__(
        self,
        *,
        sample_rate_hz: int = 0,
        channels: int = 0,
        sample_format: SampleFormat | None = None,
        block_ms: float = 20.0,
    ) -> None:
        self._format = AudioFormat(sample_rate_hz or NATIVE.sample_rate_hz,
                                   channels or NATIVE.channels,
                                   sample_format or NATIVE.sample_format)
        self._block_ms = block_ms
        self._puller: PacedPuller | None = None
        self._underruns = 0
        self.frames_pulled = 0
        self.audible_frames = 0

    @property
    def format(self) -> AudioFormat:
        """The requested format (or :data:`NATIVE`)."""
        return self._format

    @property
    def output_latency_s(self) -> float:
        """0: a block is "heard" when it is pulled."""
        return 0.0

    @property
    def underruns(self) -> int:
        """Blocks pulled late while audio was playing."""
        puller = self._puller
        return self._underruns + (puller.underruns if puller is not None else 0)

    def open(self) -> AudioFormat:
        """Nothing to acquire."""
        return self._format

    def start(self, pull: PullCallback) -> None:
        """Start the pacing thread."""
        if self._puller is not None:
            self._underruns += self._puller.underruns
        self._puller = PacedPuller(self._format.sample_rate_hz,
                                   self._format.frames_for_ms(self._block_ms), self._discard,
                                   name="kos_audio-null-sink")
        self._puller.start(pull)

    def _discard(self, block: PlaybackBlock) -> None:
        self.frames_pulled += len(block.samples)
        self.audible_frames += block.audible_frames

    def check(self) -> None:
        """Never fails."""

    def interrupt(self) -> None:
        """Nothing held downstream."""

    def close(self) -> None:
        """Stop the thread; idempotent."""
        if self._puller is not None:
            self._puller.stop()

    def describe(self) -> str:
        """``null``."""
        return "null"
