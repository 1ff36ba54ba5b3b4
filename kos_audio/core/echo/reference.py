"""The played (reference) audio on a timeline, to be cut out aligned with microphone chunks.

The speaker publishes what it plays, stamped with the time its first sample leaves the
speaker; the microphone publishes what it hears, stamped with the time its first sample was
captured. Both on the same (ROS) clock, so the reference of a microphone chunk is simply the
played audio at the chunk's stamps: :meth:`ReferenceTimeline.take`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kos_audio.core.convert import Buffer, StreamConverter
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.stamping import NS_PER_S

#: Mono float32 samples.
Samples = npt.NDArray[np.float32]

#: A reference chunk whose stamp differs from where the previous one ended by more than this
#: (ns) starts a new segment (the speaker restarted, or lost audio). The speaker's stamps are
#: sample-exact, so this only absorbs nanosecond rounding.
CONTIGUITY_TOLERANCE_NS = 1_000_000


@dataclass
class _Segment:
    """One contiguous run of reference audio: sample ``i`` is at ``t0_ns + i / rate``."""

    t0_ns: int
    source: AudioFormat
    converter: StreamConverter
    in_frames: int = 0  # source frames added
    frames: int = 0  # converted frames appended to pieces
    pieces: deque[tuple[int, Samples]] = field(default_factory=deque)  # (first index, samples)

    def expected_ns(self) -> int:
        """Stamp the next source chunk of this segment should carry."""
        return self.t0_ns + self.in_frames * NS_PER_S // self.source.sample_rate_hz

    def append(self, samples: Samples) -> None:
        if len(samples):
            self.pieces.append((self.frames, samples))
            self.frames += len(samples)


class ReferenceTimeline:
    """Reference audio converted to the microphone's rate (mono float32), keyed by time.

    :meth:`add` stores played chunks; :meth:`take` returns the samples played at a microphone
    chunk's stamps (zeros where nothing was played). Sample ``i`` of a contiguous run of
    reference chunks starting at ``t0`` is at ``t0 + i / rate``; a microphone sample at time
    ``t`` gets the reference sample nearest to ``t``, so with equal rates the alignment is
    exact to the sample. Another rate is resampled with the steady polyphase resampler (no
    bursts; its output is aligned to the input's timeline).

    Memory is bounded: at most ``history_s`` of reference is kept, and what ended more than a
    second before the newest microphone chunk is dropped.

    Not thread-safe: one worker thread owns it.

    Args:
        sample_rate_hz: the microphone's rate; :meth:`take` returns samples at this rate.
        max_offset_ns: reference chunks stamped further than this from the microphone's time
            (the end of the newest chunk :meth:`take` was asked for) are refused and counted:
            a speaker on another clock (hours off) must not be mistaken for the echo.
        history_s: the most reference audio kept (s).

    """

    def __init__(self, sample_rate_hz: int, *, max_offset_ns: int = 2 * NS_PER_S,
                 history_s: float = 2.0) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.max_offset_ns = max_offset_ns
        self._max_frames = max(1, round(history_s * sample_rate_hz))
        self._target = AudioFormat(sample_rate_hz, 1, SampleFormat.F32LE)
        self._segments: deque[_Segment] = deque()
        self._stored = 0  # frames in every segment's pieces
        self._mic_ns: int | None = None
        #: Reference chunks stored.
        self.chunks_added = 0
        #: Reference chunks refused: stamped too far from the microphone's time.
        self.chunks_refused = 0
        #: Times the reference started a new contiguous run (the first one included).
        self.segments_started = 0
        #: Microphone frames :meth:`take` had no reference for (filled with zeros).
        self.frames_missing = 0
        #: Microphone frames :meth:`take` was asked for.
        self.frames_taken = 0
        #: Frames without reference in the latest :meth:`take`.
        self.last_missing = 0
        #: Offset (ns) of the newest reference chunk's stamp from the microphone's time, or
        #: None before both are known.
        self.last_offset_ns: int | None = None

    @property
    def covered_until_ns(self) -> int | None:
        """The time up to which :meth:`take` can return real reference samples, or None."""
        if not self._segments:
            return None
        seg = self._segments[-1]
        return seg.t0_ns + seg.frames * NS_PER_S // self.sample_rate_hz

    @property
    def source_format(self) -> AudioFormat | None:
        """Format of the newest reference chunk, or None before any."""
        return self._segments[-1].source if self._segments else None

    def add(self, data: Buffer, fmt: AudioFormat, stamp_ns: int) -> bool:
        """Store one played chunk (whole frames of ``fmt``) stamped ``stamp_ns``.

        A chunk that does not continue the current run (another format, or a stamp that is
        not where the previous chunk ended) starts a new run; a format change builds a new
        converter. Returns False (and counts it) when the chunk is refused because its stamp
        is more than ``max_offset_ns`` from the microphone's time.

        Raises:
            AudioFormatError: ``data`` is not a whole number of frames of ``fmt``.

        """
        frames = fmt.frames_in(np.frombuffer(data, np.uint8).size)
        if self._mic_ns is not None:
            self.last_offset_ns = stamp_ns - self._mic_ns
            if abs(self.last_offset_ns) > self.max_offset_ns:
                self.chunks_refused += 1
                return False
        seg = self._segments[-1] if self._segments else None
        if (seg is None or seg.source != fmt
                or abs(stamp_ns - seg.expected_ns()) > CONTIGUITY_TOLERANCE_NS):
            if seg is not None:
                self._append(seg, seg.converter.flush_frames()[:, 0])
            seg = _Segment(stamp_ns, fmt, StreamConverter(fmt, self._target, steady=True))
            self._segments.append(seg)
            self.segments_started += 1
        seg.in_frames += frames
        self._append(seg, seg.converter.to_frames(data)[:, 0])
        self.chunks_added += 1
        self._trim()
        return True

    def take(self, stamp_ns: int, frames: int) -> Samples:
        """The reference for ``frames`` microphone frames whose first is at ``stamp_ns``.

        Zeros where no reference covers the time; those frames are counted in
        :attr:`frames_missing` and :attr:`last_missing`. The chunk's end becomes the
        microphone's time for refusing far-off reference chunks.
        """
        out = np.zeros(frames, np.float32)
        covered = np.zeros(frames, bool)
        rate = self.sample_rate_hz
        for seg in self._segments:
            # Nearest reference sample to the microphone's first sample.
            first = _div_round((stamp_ns - seg.t0_ns) * rate, NS_PER_S)
            last = first + frames
            if last <= 0 or not seg.pieces or first >= seg.frames:
                continue
            for start, samples in seg.pieces:
                lo, hi = max(first, start), min(last, start + len(samples))
                if lo < hi:
                    out[lo - first:hi - first] = samples[lo - start:hi - start]
                    covered[lo - first:hi - first] = True
        missing = frames - int(np.count_nonzero(covered))
        self.last_missing = missing
        self.frames_missing += missing
        self.frames_taken += frames
        self._mic_ns = stamp_ns + frames * NS_PER_S // rate
        self._trim()
        return out

    def _append(self, seg: _Segment, samples: Samples) -> None:
        seg.append(np.ascontiguousarray(samples, np.float32))
        self._stored += len(samples)

    def clear(self) -> None:
        """Forget every stored chunk (counters stay)."""
        self._segments.clear()
        self._stored = 0

    def _trim(self) -> None:
        """Drop what is too old, and the oldest beyond ``history_s``."""
        horizon = None if self._mic_ns is None else self._mic_ns - NS_PER_S
        rate = self.sample_rate_hz
        while self._segments:
            seg = self._segments[0]
            while seg.pieces:
                start, samples = seg.pieces[0]
                end_ns = seg.t0_ns + (start + len(samples)) * NS_PER_S // rate
                too_old = horizon is not None and end_ns < horizon
                if not too_old and self._stored <= self._max_frames:
                    break
                seg.pieces.popleft()
                self._stored -= len(samples)
            if seg.pieces or len(self._segments) == 1:
                break
            self._segments.popleft()


def _div_round(num: int, den: int) -> int:
    """``num / den`` rounded to the nearest integer (halves up), in integers."""
    return (2 * num + den) // (2 * den)
