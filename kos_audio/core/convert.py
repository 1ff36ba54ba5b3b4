"""PCM conversions: bytes <-> float32 frames, channel remixing, and whole streams.

:class:`StreamConverter` chains them (decode, remix, resample, encode) for a continuous stream.

Float frames are ``float32`` arrays of shape ``(frames, channels)`` with full scale at +-1.0.
Conversions to integers saturate (clip) instead of wrapping around, so a loud mix distorts
instead of turning into full-scale noise.
"""

from __future__ import annotations

import array
from typing import Any, Union, cast

import numpy as np
import numpy.typing as npt

from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.resample import PolyphaseResampler, StreamResampler
from kos_audio.errors import AudioFormatError

#: float32 frames, shape ``(frames, channels)``.
Frames = npt.NDArray[np.float32]
#: A contiguous byte buffer: what rclpy hands over for ``uint8[]`` is an ``array.array('B')``.
Buffer = Union[bytes, bytearray, memoryview, "array.array[int]", npt.NDArray[np.uint8]]

# Full-scale divisor per integer format: sample / scale is in [-1, 1).
_SCALE = {
    SampleFormat.U8: 128.0,
    SampleFormat.S16LE: 32768.0,
    SampleFormat.S24LE: 8388608.0,
    SampleFormat.S32LE: 2147483648.0,
}
_INT_DTYPES: dict[SampleFormat, np.dtype[Any]] = {
    SampleFormat.S16LE: np.dtype("<i2"),
    SampleFormat.S32LE: np.dtype("<i4"),
}


def to_float(data: Buffer, fmt: AudioFormat) -> Frames:
    """Decode interleaved PCM bytes in ``fmt`` into float32 frames.

    Args:
        data: whole frames of ``fmt`` (any object with the buffer protocol; not copied until
            scaled).
        fmt: the encoding of ``data``.

    Returns:
        A new ``(frames, fmt.channels)`` float32 array.

    Raises:
        AudioFormatError: ``data`` is not a whole number of frames.

    """
    raw = np.frombuffer(data, dtype=np.uint8)
    fmt.frames_in(raw.size)  # validates the length
    sf = fmt.sample_format
    if sf is SampleFormat.F32LE:
        out = raw.view("<f4").astype(np.float32)  # astype copies: callers may keep the result
    elif sf is SampleFormat.U8:
        out = (raw.astype(np.float32) - 128.0) / np.float32(128.0)
    elif sf is SampleFormat.S24LE:
        trip = raw.reshape(-1, 3).astype(np.int32)
        # Put the 24 bits in the top of an int32, then shift back: an arithmetic shift
        # sign-extends, which is the whole trick of packed 24-bit.
        joined = (trip[:, 0] << 8) | (trip[:, 1] << 16) | (trip[:, 2] << 24)
        out = (joined >> 8).astype(np.float32) / np.float32(_SCALE[sf])
    else:
        ints = raw.view(_INT_DTYPES[sf])
        # float64 for S32 keeps the division exact before rounding to float32.
        out = (ints / _SCALE[sf]).astype(np.float32)
    return out.reshape(-1, fmt.channels)


def from_float(frames: npt.NDArray[np.floating], sample_format: SampleFormat) -> bytes:
    """Encode float frames as interleaved PCM bytes, saturating at full scale.

    NaN encodes as silence and +-Inf as full scale, so a broken producer cannot wrap around.

    Args:
        frames: ``(frames, channels)`` or ``(samples,)`` floats, full scale +-1.0.
        sample_format: the encoding to produce.

    """
    x = np.asarray(frames, dtype=np.float32)
    if sample_format is SampleFormat.F32LE:
        return np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0).astype("<f4").tobytes()
    scale = _SCALE[sample_format]
    scaled = np.nan_to_num(x.astype(np.float64) * scale, nan=0.0, posinf=scale, neginf=-scale)
    ints = np.clip(np.rint(scaled), -scale, scale - 1).astype(np.int32)
    if sample_format is SampleFormat.U8:
        return (ints + 128).astype(np.uint8).tobytes()
    if sample_format is SampleFormat.S24LE:
        le = ints.astype("<i4").reshape(-1, 1).view(np.uint8)  # 4 bytes each, little-endian
        return np.ascontiguousarray(le[:, :3]).tobytes()
    encoded: bytes = ints.astype(_INT_DTYPES[sample_format]).tobytes()
    return encoded


def encode_into(frames: Frames, sample_format: SampleFormat, out: Any) -> None:
    """Encode float frames into ``out``, a writable buffer of exactly their encoded size.

    For a sink's real-time thread: writes straight into the device's buffer, with no bytes
    object in between. Saturates at full scale like :func:`from_float`, but expects finite
    samples (the playback engine's mix always is; NaN's encoding is undefined here).

    Raises:
        ValueError: ``out`` has another size than the encoded frames.

    """
    target = np.frombuffer(out, np.uint8)
    dtype = _INT_DTYPES.get(sample_format)
    if sample_format is SampleFormat.F32LE:
        np.copyto(target.view("<f4").reshape(frames.shape), frames)
    elif dtype is not None:
        scale = _SCALE[sample_format]
        # float32 holds every 16-bit value exactly; S32 needs float64.
        work = np.multiply(frames, scale, dtype=np.float32 if dtype.itemsize == 2 else np.float64)
        np.clip(work, -scale, scale - 1, out=work)
        np.rint(work, out=work)
        np.copyto(target.view(dtype).reshape(frames.shape), work, casting="unsafe")
    else:
        target[:] = np.frombuffer(from_float(frames, sample_format), np.uint8)


def count_non_finite(frames: Frames) -> int:
    """Number of NaN or +-Inf samples (a float producer bug worth counting)."""
    return int(frames.size - np.count_nonzero(np.isfinite(frames)))


def remix(frames: Frames, channels: int) -> Frames:
    """Change the channel count.

    - same count: returned as is;
    - to mono: the average of all channels;
    - from mono: the one channel copied to every output channel;
    - N to M otherwise: channel ``i`` of the output is input channel ``i % N``
      (fewer channels keeps the first ones).

    Raises:
        AudioFormatError: ``channels`` < 1.

    """
    have = frames.shape[1]
    if channels < 1:
        raise AudioFormatError(f"cannot remix to {channels} channels")
    if have == channels:
        return frames
    if channels == 1:
        return cast(Frames, frames.mean(axis=1, keepdims=True, dtype=np.float32))
    if have == 1:
        return np.repeat(frames, channels, axis=1)
    return frames[:, np.arange(channels) % have]


class StreamConverter:
    """Converts a continuous PCM stream from ``source`` to ``target`` format.

    Identical formats pass bytes through untouched (no decode). Otherwise frames are decoded to
    float32, remixed (see :func:`remix`), resampled with state kept across
    chunks, and encoded with saturation. Not thread-safe: one stream, one thread.

    Args:
        source: the stream's format.
        target: the format to deliver.
        steady: resample with :class:`~kos_audio.core.resample.PolyphaseResampler`, whose
            output keeps pace with the input chunk by chunk (for playback queues), instead of
            soxr's, which returns its output in 40-60 ms bursts. Uncommon rate pairs it does
            not support (:meth:`~kos_audio.core.resample.PolyphaseResampler.supports`) still
            use soxr.

    """

    def __init__(self, source: AudioFormat, target: AudioFormat, *, steady: bool = False
                 ) -> None:
        self.source = source
        self.target = target
        rates = (source.sample_rate_hz, target.sample_rate_hz, target.channels)
        self._resampler: StreamResampler | PolyphaseResampler = (
            PolyphaseResampler(*rates)
            if steady and PolyphaseResampler.supports(*rates[:2]) else StreamResampler(*rates))

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

    def flush_frames(self) -> Frames:
        """End of stream: the resampler's tail, float frames in the target's rate/channels.

        Not encoded (see :meth:`flush` for bytes); the converter starts afresh.
        """
        return self._resampler.flush()

    def flush(self) -> bytes:
        """End of stream: the resampler's tail as target bytes; the converter starts afresh."""
        tail = self.flush_frames()
        return from_float(tail, self.target.sample_format) if len(tail) else b""

    def reset(self) -> None:
        """Forget the stream's history (after a discontinuity)."""
        self._resampler.reset()


def silence(fmt: AudioFormat, frames: int) -> bytes:
    """``frames`` frames of digital silence in ``fmt`` (U8's zero level is 128)."""
    return from_float(np.zeros((frames, fmt.channels), np.float32), fmt.sample_format)
