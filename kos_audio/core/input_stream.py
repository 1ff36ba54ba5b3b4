"""The playback engine's input side: one producer's PCM stream turned into output frames.

:class:`InputStream` repairs what can be repaired (a trailing partial frame, NaN/Inf samples)
and converts the rest to the output's rate and channels with a
:class:`~kos_audio.core.convert.StreamConverter`. :class:`InterruptFence` decides which chunks
belong to an interrupted utterance and are dropped; :class:`EnqueueResult` tells the producer
what became of its chunk.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kos_audio.core.convert import (
    Buffer,
    Frames,
    StreamConverter,
    count_non_finite,
    remix,
)
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.stamping import NS_PER_S


class DropReason(enum.Enum):
    """Why audio was dropped instead of played."""

    OVERFLOW = "overflow"  # the queue exceeded max_queue_s; the oldest audio went
    INTERRUPT = "interrupt"  # queued when an interrupt came
    LATE = "late"  # a chunk of an interrupted utterance arriving after the interrupt
    INVALID = "invalid"  # undecodable: unknown or absurd format


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What happened to one chunk handed to the playback engine.

    Attributes:
        frames: sink-rate frames added to the queue (0 while the resampler fills).
        dropped: set when the whole chunk was refused.
        repaired: the chunk was played after a repair (trailing partial frame cut, NaN/Inf
            replaced).
        overflow_frames: oldest queued frames dropped to make room (``max_queue_s``).
        message: one line for the log when dropped or repaired, else "".

    """

    frames: int = 0
    dropped: DropReason | None = None
    repaired: bool = False
    overflow_frames: int = 0
    message: str = ""


class Converted(NamedTuple):
    """One chunk after :meth:`InputStream.convert`."""

    #: ``(n, output channels)`` float32 at the output rate; ``n`` may be 0 while the
    #: resampler fills.
    frames: Frames
    #: The repairs made, one line for the log ("" if none).
    repair: str
    #: NaN/Inf samples replaced (NaN -> 0, +-Inf -> full scale).
    non_finite: int


class InputStream:
    """Repairs and converts one producer's stream to the output's rate and channels.

    The conversion keeps its resampler state across chunks (no clicks at chunk boundaries).
    It resamples with :class:`~kos_audio.core.resample.PolyphaseResampler`: each chunk comes
    out whole but for a constant 1.5 ms (soxr would hold back two or three chunks and release
    them at once, and the queue would run dry in between); :meth:`flush` releases that tail
    at the end of a stream. A
    format change flushes the old stream first, so no sample is lost. The resampler runs on
    the smaller of the two channel counts (mono speech to a stereo device costs one resampler
    channel, not two) and the result is remixed to the output's channels.

    Not thread-safe: the engine calls it under its conversion lock (producer and housekeeping
    threads), never from the sink's real-time thread.

    Args:
        output: the format frames are delivered in (its rate and channels count).

    """

    def __init__(self, output: AudioFormat) -> None:
        self.output = output
        #: The format of the chunks being converted (None before the first chunk).
        self.format: AudioFormat | None = None
        self._converter: StreamConverter | None = None
        self._resampling = False
        self._upmix = False  # the converter delivers fewer channels than the output has
        #: The resampler holds frames not yet returned (:meth:`flush` releases them).
        self.pending = False
        #: ``time.monotonic()`` of the last chunk (s).
        self.last_input = 0.0

    def convert(self, data: Buffer, fmt: AudioFormat) -> Converted:
        """The chunk as output frames, after repairing it.

        Args:
            data: interleaved PCM in ``fmt`` (any buffer; not modified).
            fmt: its format; a change from the previous chunk's ends the old stream.

        Raises:
            AudioFormatError: the chunk cannot be decoded at all.

        """
        raw = np.frombuffer(data, np.uint8)
        repairs = []
        rest = raw.size % fmt.frame_bytes
        if rest:
            repairs.append(
                f"{raw.size} bytes is not a whole number of {fmt.frame_bytes}-byte frames "
                f"({fmt.describe()}); dropped the trailing {rest} bytes")
            raw = raw[: raw.size - rest]
        bad = 0
        if fmt.sample_format is SampleFormat.F32LE:
            # Repaired before resampling: one NaN would smear over the filter's length.
            samples = raw.view("<f4")
            bad = count_non_finite(samples)
            if bad:
                repairs.append(f"{bad} NaN/Inf samples replaced (NaN -> 0, Inf -> full scale)")
                raw = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0).view(np.uint8)
        head = self._switch(fmt) if fmt != self.format else None
        assert self._converter is not None
        out = self._converter.to_frames(raw)
        if self._upmix:
            out = remix(out, self.output.channels)
        if self._resampling and len(raw):
            self.pending = True
        if head is not None and len(head):
            out = np.concatenate((head, out))
        self.last_input = time.monotonic()
        return Converted(out, "; ".join(repairs), bad)

    def flush(self) -> Frames:
        """End of stream: the resampler's held-back tail as output frames (maybe none)."""
        self.pending = False
        if self._converter is None:
            return np.zeros((0, self.output.channels), np.float32)
        return remix(self._converter.flush_frames(), self.output.channels)

    def reset(self) -> None:
        """Forget the stream (interrupt): what the resampler holds is discarded."""
        self.pending = False
        if self._converter is not None:
            self._converter.reset()

    def _switch(self, fmt: AudioFormat) -> Frames | None:
        tail = self.flush() if self.format is not None else None
        self.format = fmt
        self._resampling = fmt.sample_rate_hz != self.output.sample_rate_hz
        # Decode, downmix if the output has fewer channels, resample: the converter's job.
        # Upmixing waits until after the resampler.
        stage = AudioFormat(self.output.sample_rate_hz, min(fmt.channels, self.output.channels),
                            SampleFormat.F32LE)
        self._converter = StreamConverter(fmt, stage, steady=True)
        self._upmix = stage.channels < self.output.channels
        return tail


class InterruptFence:
    """Which speech chunks are late parts of an interrupted utterance.

    After :meth:`interrupt` at ``t``: a chunk stamped before ``t`` is late at any time; an
    unstamped chunk is late while it arrives within ``fence_s`` of ``t``. Times in ns on the
    clock the caller uses for both. Not thread-safe: the engine calls it under its lock.

    Args:
        fence_s: how long (s) unstamped chunks are taken for late ones.

    """

    def __init__(self, fence_s: float) -> None:
        self.fence_s = fence_s
        self._interrupted_ns: int | None = None
        self._until_ns = 0

    def interrupt(self, now_ns: int) -> None:
        """Fence off chunks of the utterance interrupted at ``now_ns``."""
        self._interrupted_ns = now_ns
        self._until_ns = now_ns + round(self.fence_s * NS_PER_S)

    def late(self, now_ns: int, stamp_ns: int | None) -> str:
        """Why a chunk arriving at ``now_ns``, stamped ``stamp_ns`` (None: unstamped), is late.

        Returns:
            "" if it is not late, else the reason (for the log).

        """
        if self._interrupted_ns is None:
            return ""
        if stamp_ns is not None:
            return "stamped before the last interrupt" if stamp_ns < self._interrupted_ns else ""
        if now_ns < self._until_ns:
            return f"arrived within {self.fence_s:g} s of the last interrupt"
        return ""
