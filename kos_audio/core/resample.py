"""Streaming sample-rate conversion with soxr that keeps its filter state across chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import soxr

if TYPE_CHECKING:  # convert imports this module
    from kos_audio.core.convert import Frames



class StreamResampler:
    """Resamples a stream chunk by chunk with no clicks or lost samples at chunk boundaries.

    soxr keeps the filter history between calls, so feeding a signal in pieces gives the same
    output (to float rounding) as feeding it whole. The output lags the input by the filter's
    delay (a few ms at ``HQ``); :meth:`flush` returns the tail at the end of a stream. The
    output is aligned so that output sample ``k`` is the input at time ``k / out_rate_hz``,
    which is what sample-count stamping needs.

    Not thread-safe: one stream, one thread.
    """

    def __init__(
        self, in_rate_hz: int, out_rate_hz: int, channels: int, *, quality: str = "HQ"
    ) -> None:
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self.channels = channels
        self._quality = quality
        self._stream: soxr.ResampleStream | None = None
        self.reset()

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and samples pass unchanged."""
        return self.in_rate_hz == self.out_rate_hz

    def process(self, frames: Frames) -> Frames:
        """Resample the next ``(frames, channels)`` float32 chunk.

        May return fewer frames than the ratio implies while the filter fills.
        """
        if self._stream is None:
            return frames
        out: Frames = self._stream.resample_chunk(np.ascontiguousarray(frames, np.float32))
        return out

    def flush(self) -> Frames:
        """Return what the filter still holds (end of stream) and start a fresh stream."""
        if self._stream is None:
            return np.zeros((0, self.channels), np.float32)
        tail: Frames = self._stream.resample_chunk(np.zeros((0, self.channels), np.float32),
                                                   last=True)
        self.reset()
        return tail

    def reset(self) -> None:
        """Drop the filter state (after a discontinuity the old history is meaningless)."""
        self._stream = (
            None
            if self.passthrough
            else soxr.ResampleStream(
                self.in_rate_hz, self.out_rate_hz, self.channels, dtype="float32",
                quality=self._quality,
            )
        )
