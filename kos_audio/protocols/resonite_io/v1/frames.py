"""Audio <-> Resonite IO frames: the fixed wire formats, framing and real-time pacing.

Microphone (client -> Resonite): 48 kHz mono float32 little-endian. Speaker (Resonite ->
client): 48 kHz stereo interleaved float32 little-endian, ``sample_count`` per channel. Data
stays in bytes / numpy (``np.frombuffer`` views, ``tobytes()``), never Python lists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Union

import numpy as np
import numpy.typing as npt

from kos_audio.errors import AudioFormatError
from kos_audio.protocols.resonite_io.v1._messages import AudioFrame, MicrophoneAudioFrame

__all__ = [
    "MICROPHONE_CHANNELS",
    "SAMPLE_RATE_HZ",
    "SPEAKER_CHANNELS",
    "decode_microphone_frame",
    "decode_speaker_frame",
    "make_microphone_frame",
    "microphone_frames",
]

SAMPLE_RATE_HZ = 48_000
"""The only rate Resonite IO speaks, both directions."""
MICROPHONE_CHANNELS = 1
SPEAKER_CHANNELS = 2
_FLOAT32_LE = np.dtype("<f4")

Samples = Union[npt.NDArray[np.float32], bytes]
"""Mono float32 samples as an array (any float dtype is converted) or raw ``<f4`` bytes."""


def _mono_bytes(samples: Samples) -> bytes:
    if isinstance(samples, (bytes, bytearray, memoryview)):
        data = bytes(samples)
        if len(data) % 4:
            raise AudioFormatError(f"{len(data)} bytes is not a whole number of float32 samples")
        return data
    array = np.asarray(samples)
    if array.ndim != 1:
        raise AudioFormatError(
            f"microphone audio is mono: expected 1-D samples, got {array.shape}"
        )
    return array.astype(_FLOAT32_LE, copy=False).tobytes()


def make_microphone_frame(
    frame_id: int, samples: Samples, *, unix_nanos: int | None = None
) -> MicrophoneAudioFrame:
    """One ``MicrophoneAudioFrame`` with ``sample_count`` derived from the data.

    Args:
        frame_id: 0 for the first frame of a stream, then +1 per frame.
        samples: Mono 48 kHz samples (float32 array or ``<f4`` bytes).
        unix_nanos: Capture time (wall clock, ns since the epoch); default now.

    Raises:
        AudioFormatError: not mono, or bytes that are not whole float32 samples.

    """
    data = _mono_bytes(samples)
    return MicrophoneAudioFrame(
        frame_id=frame_id,
        unix_nanos=time.time_ns() if unix_nanos is None else unix_nanos,
        sample_count=len(data) // 4,
        samples=data,
    )


def microphone_frames(
    blocks: Iterable[Samples],
    *,
    paced: bool = True,
    lead_s: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[MicrophoneAudioFrame]:
    """Number ``blocks`` as frames 0, 1, 2, ... and, if ``paced``, release them in real time.

    The Resonite server never pushes back (it drops the oldest audio past 2 s of backlog), so a
    stream must not run ahead of 48 kHz. With ``paced`` the frame holding sample ``k`` is
    released no earlier than ``start + k / 48000 - lead_s``; ``lead_s`` keeps a little audio
    queued on the server so a late wake-up does not starve playback.

    Runs in the thread that iterates it (grpcio's request-consuming thread for a stream).

    Raises:
        AudioFormatError: from :func:`make_microphone_frame`.

    """
    start: float | None = None
    position = 0
    for frame_id, block in enumerate(blocks):
        frame = make_microphone_frame(frame_id, block)
        if paced:
            now = clock()
            if start is None:
                start = now
            delay = start + position / SAMPLE_RATE_HZ - lead_s - now
            if delay > 0:
                sleep(delay)
            # Stamp when the frame is released, not when the block was built.
            frame.unix_nanos = time.time_ns()
        position += frame.sample_count
        yield frame


def decode_microphone_frame(frame: MicrophoneAudioFrame) -> npt.NDArray[np.float32]:
    """The frame's mono samples as a read-only float32 view of its bytes.

    The length comes from the bytes, as the server does it; ``sample_count`` is not trusted.

    Raises:
        AudioFormatError: the byte length is not a multiple of 4.

    """
    data = frame.samples
    if len(data) % 4:
        raise AudioFormatError(f"microphone frame of {len(data)} bytes: not whole float32")
    return np.frombuffer(data, dtype=_FLOAT32_LE).astype(np.float32, copy=False)


def decode_speaker_frame(frame: AudioFrame) -> npt.NDArray[np.float32]:
    """The frame's stereo samples, shape ``(n, 2)`` float32 (a read-only view of the bytes).

    Raises:
        AudioFormatError: the byte length is not whole stereo float32 samples, or disagrees
            with ``sample_count``.

    """
    data = frame.samples
    per_sample = 4 * SPEAKER_CHANNELS
    if len(data) % per_sample:
        raise AudioFormatError(f"speaker frame of {len(data)} bytes: not whole stereo float32")
    count = len(data) // per_sample
    if frame.sample_count != count:
        raise AudioFormatError(
            f"speaker frame {frame.frame_id}: sample_count {frame.sample_count} but "
            f"{count} samples of data"
        )
    array = np.frombuffer(data, dtype=_FLOAT32_LE).astype(np.float32, copy=False)
    return array.reshape(count, SPEAKER_CHANNELS)
