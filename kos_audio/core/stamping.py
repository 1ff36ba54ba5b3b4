"""Sample-count time stamps: the time of frame ``n`` is ``t0 + n / rate``.

:class:`SampleClock` maps frame counts onto a clock; :class:`ChunkStamper` turns a source's
blocks into format-converted, exactly sized, sample-accurately stamped chunks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kos_audio.core.chunking import FrameChunker
from kos_audio.core.convert import StreamConverter
from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import CapturedBlock

NS_PER_S = 1_000_000_000


class SampleClock:
    """Maps frame counts of one continuous stream onto a clock.

    Stamps are computed from the frame count with integer arithmetic, never accumulated, so
    consecutive chunks of N frames differ by exactly ``N / rate`` (to the nanosecond) forever
    and a subscriber can detect any lost sample as a stamp jump. :meth:`anchor` starts a new
    timeline (first block, overflow, device restart). Not thread-safe.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._t0_ns: int | None = None
        self._frames = 0

    @property
    def anchored(self) -> bool:
        """True once :meth:`anchor` was called."""
        return self._t0_ns is not None

    @property
    def frames(self) -> int:
        """Frames stamped since the last anchor."""
        return self._frames

    def anchor(self, t0_ns: int) -> None:
        """Start a new timeline whose next frame is at ``t0_ns``."""
        self._t0_ns = t0_ns
        self._frames = 0

    def time_of(self, frame_index: int) -> int:
        """Clock time (ns) of frame ``frame_index`` counted from the anchor."""
        if self._t0_ns is None:
            raise RuntimeError("SampleClock.time_of() before anchor()")
        return self._t0_ns + frame_index * NS_PER_S // self.sample_rate_hz

    def take(self, frames: int) -> int:
        """Stamp (ns) of the next ``frames`` frames: the time of their first frame."""
        stamp = self.time_of(self._frames)
        self._frames += frames
        return stamp


#: A source clock that disagrees with the system clock by more than this (ns) is re-anchored.
#: Device clocks drift by tens of ppm (about 0.1-0.2 s an hour); capture-time jitter through
#: PulseAudio is a few tens of ms, so this threshold never fires on jitter alone.
MAX_DRIFT_NS = 200_000_000


@dataclass(frozen=True, slots=True)
class StampedChunk:
    """A chunk ready to publish: target-format PCM and the time of its first frame."""

    data: bytes
    frames: int
    stamp_ns: int


class ChunkStamper:
    """Source blocks in, stamped target-format chunks of ``chunk_frames`` out.

    The stamp of a chunk is the clock time of its first frame: ``t0 + n / rate`` where ``t0`` is
    the capture time of the first frame after the latest anchor and ``n`` counts target frames
    since then. Anchors happen at the first block, at every block flagged as a discontinuity,
    and when the source clock has drifted more than :data:`MAX_DRIFT_NS` from the system clock.
    Before a new anchor, what is pending is flushed as a short final chunk of the old timeline,
    so no frame is lost by re-anchoring. Not thread-safe: the capture thread owns it.

    A block's capture time is only known as "no earlier than": it is read when the block is
    handed over, and every scheduling delay makes it later. So a new timeline is not anchored
    on its first block alone: for ``settle_s`` of audio the chunks are held back, and ``t0`` is
    the earliest of the blocks' estimates (each block's capture time minus the frames before
    it). Measured through PulseAudio, the first block of a stream open was up to 40 ms late;
    the minimum over 200 ms moved by under a millisecond between opens.

    Args:
        source: format of incoming blocks.
        target: format of outgoing chunks.
        chunk_frames: frames per outgoing chunk (target rate).
        clock_offset_ns: returns (ROS time - system time) in ns, read at each anchor so
            stamps are on the ROS clock.
        settle_s: audio (s) held back after each anchor while ``t0`` is estimated; 0 anchors
            on the first block (for sources whose capture times are exact).

    """

    def __init__(
        self,
        source: AudioFormat,
        target: AudioFormat,
        chunk_frames: int,
        *,
        clock_offset_ns: Callable[[], int] = lambda: 0,
        settle_s: float = 0.0,
    ) -> None:
        self.source = source
        self.target = target
        self._converter = StreamConverter(source, target)
        self._chunker = FrameChunker(chunk_frames)
        self._clock = SampleClock(target.sample_rate_hz)
        self._clock_offset_ns = clock_offset_ns
        self._in_t0_ns = 0  # system time of the first source frame since the anchor
        self._in_frames = 0  # source frames since the anchor
        self._settle_frames = round(settle_s * source.sample_rate_hz)
        self._settling = False  # t0 is being estimated; chunks wait in _held
        self._held: list[npt.NDArray[np.generic]] = []
        self.reanchors = 0
        self.drift_ns = 0

    def push(self, block: CapturedBlock) -> list[StampedChunk]:
        """Convert, chunk and stamp one block; return the chunks completed, oldest first.

        Raises:
            AudioFormatError: the block is not a whole number of source frames.

        """
        frames_in = self.source.frames_in(len(block.data))
        capture_ns = block.capture_time_ns
        if capture_ns is None:
            # Unknown capture time: assume the block just finished arriving.
            capture_ns = time.time_ns() - frames_in * NS_PER_S // self.source.sample_rate_hz
        out: list[StampedChunk] = []
        timeline = self._clock.anchored or self._settling
        since_t0_ns = self._in_frames * NS_PER_S // self.source.sample_rate_hz
        if self._settling and not block.discontinuity:
            self._in_t0_ns = min(self._in_t0_ns, capture_ns - since_t0_ns)
        elif timeline and not block.discontinuity and block.capture_time_ns is not None:
            self.drift_ns = capture_ns - (self._in_t0_ns + since_t0_ns)
        if not timeline or block.discontinuity or abs(self.drift_ns) > MAX_DRIFT_NS:
            if timeline:
                self.reanchors += 1
                out.extend(self.flush())
            self._in_t0_ns = capture_ns
            self._in_frames = 0
            self.drift_ns = 0
            self._settling = True
        self._in_frames += frames_in
        self._emit(self._converter.process(block.data), out)
        if self._settling and self._in_frames >= self._settle_frames:
            self._settle(out)
        return out

    def _settle(self, out: list[StampedChunk]) -> None:
        """Anchor the timeline at the earliest estimate and stamp the chunks held back."""
        self._settling = False
        self._clock.anchor(self._in_t0_ns + self._clock_offset_ns())
        held, self._held = self._held, []
        out.extend(self._stamp(chunk) for chunk in held)

    def follow(self, source: AudioFormat) -> list[StampedChunk]:
        """Take blocks in ``source`` format from now on (a source reopened in another format).

        Ends the current timeline as a discontinuity would: its last chunks are returned, the
        next block anchors a new one, and it counts as one re-anchor. Returns ``[]`` and
        changes nothing when ``source`` is the current format.
        """
        if source == self.source:
            return []
        out: list[StampedChunk] = []
        if self._clock.anchored or self._settling:
            out = self.flush()
            self.reanchors += 1
        self.source = source
        self._converter = StreamConverter(source, self.target)
        self._clock = SampleClock(self.target.sample_rate_hz)  # anchored by the next push
        return out

    def flush(self) -> list[StampedChunk]:
        """End the current timeline: return the resampler tail and the partial chunk."""
        out: list[StampedChunk] = []
        self._emit(self._converter.flush(), out)
        rest = self._chunker.flush()
        if rest is not None:
            if self._settling:
                self._held.append(rest)
            else:
                out.append(self._stamp(rest))
        if self._settling:
            self._settle(out)
        self._converter.reset()
        return out

    def _emit(self, data: bytes, out: list[StampedChunk]) -> None:
        if not data:
            return
        raw = np.frombuffer(data, np.uint8).reshape(-1, self.target.frame_bytes)
        if self._settling:
            self._held.extend(self._chunker.push(raw))
        else:
            out.extend(self._stamp(chunk) for chunk in self._chunker.push(raw))

    def _stamp(self, chunk: npt.NDArray[np.generic]) -> StampedChunk:
        frames = len(chunk)
        return StampedChunk(chunk.tobytes(), frames, self._clock.take(frames))
