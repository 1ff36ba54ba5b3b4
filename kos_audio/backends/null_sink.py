"""A sink that discards audio at real-time pace: for benchmarks and robots without a speaker."""

from __future__ import annotations

from kos_audio.backends.paced_sink import PacedSink
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import PlaybackBlock

#: What the null sink plays when the node requests no format.
NATIVE = AudioFormat(48000, 2, SampleFormat.F32LE)


class NullSink(PacedSink):
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
        super().__init__(AudioFormat(sample_rate_hz or NATIVE.sample_rate_hz,
                                     channels or NATIVE.channels,
                                     sample_format or NATIVE.sample_format),
                         block_ms=block_ms, thread_name="kos_audio-null-sink")
        self.frames_pulled = 0
        self.audible_frames = 0

    def open(self) -> AudioFormat:
        """Nothing to acquire."""
        return self._format

    def _consume(self, block: PlaybackBlock) -> None:
        self.frames_pulled += len(block.samples)
        self.audible_frames += block.audible_frames

    def describe(self) -> str:
        """``null``."""
        return "null"
