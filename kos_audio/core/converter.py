"""One streaming conversion from any PCM format to another: decode, remix, resample, encode."""

from __future__ import annotations

import numpy as np

from kos_audio.core.convert import Buffer, Frames, from_float, remix, to_float
from kos_audio.core.formats import AudioFormat
from kos_audio.core.resample import StreamResampler


class StreamConverter:
    """Converts a continuous PCM stream from ``source`` to ``target`` format.

    Identical formats pass bytes through untouched (no decode). Otherwise frames are decoded to
    float32, remixed (see :func:`kos_audio.core.convert.remix`), resampled with state kept across
    chunks, and encoded with saturation. Not thread-safe: one stream, one thread.
    """

    def __init__(self, source: AudioFormat, target: AudioFormat) -> None:
        self.source = source
        self.target = target
        self._resampler = StreamResampler(source.sample_rate_hz, target.sample_rate_hz,
                                          target.channels)

    @property
    def passthrough(self) -> bool:
        """True when no conversion happens at all."""
        return self.source == self.target

    def to_frames(self, data: Buffer) -> Frames:
        """Convert to float32 frames in the target's rate and channels (not encoded)."""
        frames = remix(to_float(data, self.source), self.target.channels)
        return self._resampler.process(frames)

    def process(self, data: Buffer) -> bytes:
        """Convert the next chunk (whole source frames) to target PCM bytes.

        Raises:
            AudioFormatError: ``data`` is not a whole number of source frames.

        """
        if self.passthrough:
            self.source.frames_in(np.frombuffer(data, np.uint8).size)
            return bytes(data)
        return from_float(self.to_frames(data), self.target.sample_format)

    def flush(self) -> bytes:
        """End of stream: the resampler's tail as target bytes; the converter starts afresh."""
        tail = self._resampler.flush()
        return from_float(tail, self.target.sample_format) if len(tail) else b""

    def reset(self) -> None:
        """Forget the stream's history (after a discontinuity)."""
        self._resampler.reset()


def silence(fmt: AudioFormat, frames: int) -> bytes:
    """``frames`` frames of digital silence in ``fmt`` (U8's zero level is 128)."""
    return from_float(np.zeros((frames, fmt.channels), np.float32), fmt.sample_format)
