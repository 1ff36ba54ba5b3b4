"""One recording: audio chunks in (any format, stamped), one safe, self-describing file out.

The time axis is sample-accurate: frame ``k`` of the file is at ``started_at + k / rate``.
Chunks are checked against the time their stamps say they start at; a later stamp means audio
went missing upstream (dropped messages, a paused source), and the gap is filled with silence
so the rest of the file stays aligned with the robot's clock. Each gap is counted in the
sidecar. Stamps that jump backwards, or forward by more than the fill limit (a clock reset,
garbage stamps), cannot be honoured by silence: the audio is kept, the time axis re-anchored
at the new stamp and the jump counted as a ``timeline reset``.

Compressed input (Opus) is decoded before it gets here; messages lost on the link are then
concealed by the decoder (plausible audio in place of the lost frames, not silence) and arrive
as the first :attr:`Chunk.concealed_frames` of the next chunk, stamped where the loss began.
They leave no gap on the time axis, so they are not counted as gaps (``gaps`` is audio absent
from the file, written as silence) but as ``concealed``: audio the file holds that nobody
said, an estimate of what was lost.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kos_audio.core.convert import StreamConverter, silence
from kos_audio.core.formats import AudioFormat
from kos_audio.core.recording.errors import RecordingError
from kos_audio.core.recording.naming import ClaimedFile
from kos_audio.core.recording.sidecar import iso8601, sha256_of, write_sidecar
from kos_audio.core.recording.writers import Container, FileWriter, open_writer
from kos_audio.core.stamping import NS_PER_S
from kos_audio.errors import KosAudioError

#: Gap silence is written in pieces of at most this many seconds (bounded memory).
_FILL_BLOCK_S = 1


class EndReason(enum.Enum):
    """Why a recording ended (the sidecar's ``end_reason``)."""

    STOPPED = "stopped"
    MAX_DURATION = "max_duration"
    ERROR = "error"
    SHUTDOWN = "shutdown"
    RECOVERED = "recovered"


@dataclass(frozen=True, slots=True)
class GapPolicy:
    """How stamps are turned into a time axis.

    Attributes:
        tolerance_ns: a stamp later than expected by at most this much is jitter, not a gap
            (kos_audio's mic_node stamps are exact; other publishers stamp on receipt).
        max_fill_s: a forward jump longer than this is a timeline reset, not filled
            (guards the disk against garbage stamps). 0 disables filling.

    """

    tolerance_ns: int = 2_000_000
    max_fill_s: float = 60.0


@dataclass(frozen=True, slots=True)
class RecordingOptions:
    """What a recording is, besides its file and input format.

    Attributes:
        container: wav, flac or ogg.
        source_topic: for the sidecar.
        max_duration_s: the recording ends by itself at exactly this length; 0 = no limit.
        gaps: see :class:`GapPolicy`.
        sync_period_s: the file is made crash-readable at least this often (monotonic clock).
        extra: more sidecar keys (e.g. the bag a file was converted from).

    """

    container: Container = Container.WAV
    source_topic: str = ""
    max_duration_s: float = 0.0
    gaps: GapPolicy = field(default_factory=GapPolicy)
    sync_period_s: float = 1.0
    extra: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """Received audio: whole frames of ``format`` whose first frame is at ``stamp_ns``.

    ``stamped`` false means ``stamp_ns`` is only an estimate (receive time of unstamped
    ``audio``): it places the recording on the clock but is never used to find gaps.
    ``concealed_frames``: the first frames of ``data`` stand in for lost messages (decoder
    concealment; see the module docstring). ``coding``: what the topic carried before it was
    decoded to ``format`` (``wave``: raw PCM; ``opus``, ``mp3``).
    """

    data: bytes
    format: AudioFormat
    stamp_ns: int
    stamped: bool = True
    concealed_frames: int = 0
    coding: str = "wave"

    @property
    def frames(self) -> int:
        """Frames in the chunk (raises AudioFormatError if not whole)."""
        return self.format.frames_in(len(self.data))

    @property
    def duration_ns(self) -> int:
        """Duration of the chunk (ns)."""
        return self.frames * NS_PER_S // self.format.sample_rate_hz


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """A finished recording: where it is and what the sidecar says."""

    path: Path
    sidecar_path: Path
    end_reason: EndReason
    error: str | None
    sidecar: dict[str, Any]

    @property
    def duration_s(self) -> float:
        """Length of the file (s)."""
        return float(self.sidecar["duration_s"])


class Recording:
    """Writes one file. Not thread-safe: the owner's writer thread calls everything.

    Args:
        claimed: the new file (its descriptor is owned from now on).
        source_format: the input format at start; fixes the file's format for good
            (:meth:`Container.file_format`); later input in other formats is converted.
        options: container, limits, sidecar details.
        pre_roll_s: for the sidecar: how much of the audio precedes the start request.
        clock: monotonic seconds, for the sync period.

    Raises:
        RecordingError: the file or its first sidecar cannot be written (the file is closed).

    """

    def __init__(
        self,
        claimed: ClaimedFile,
        source_format: AudioFormat,
        options: RecordingOptions,
        *,
        pre_roll_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = claimed.path
        self.sidecar_path = claimed.sidecar_path
        self._mode = claimed.mode
        self.options = options
        self.format = options.container.file_format(source_format)
        self.pre_roll_s = pre_roll_s
        self._clock = clock
        rate = self.format.sample_rate_hz
        self._max_frames = round(options.max_duration_s * rate) if options.max_duration_s else 0
        self._max_fill_ns = int(options.gaps.max_fill_s * NS_PER_S)
        self._sink: FileWriter = open_writer(claimed.fd, options.container, self.format)
        self._converter: StreamConverter | None = None
        self.frames = 0  # frames in the file
        self._first_ns: int | None = None  # stamp of the file's first frame
        self._t0_ns = 0  # clock time of file frame 0 (moves on a timeline reset)
        self._seg_t0_ns = 0  # input segment: stamp of its first frame...
        self._seg_frames = 0  # ...and frames since, at the input rate
        self._stamped = True
        self.gaps = 0
        self.missing_frames = 0
        self.timeline_resets = 0
        self.concealments = 0  # chunks that began with concealed frames (lost-message runs)
        self.concealed_ns = 0  # their concealed audio
        self.dropped_chunks = 0  # counted by the owner (queue overflow)
        self.source_formats: list[str] = []
        self.source_codings: list[str] = []
        self.ended: EndReason | None = None
        self.error: str | None = None
        self._last_sync = clock()
        try:
            write_sidecar(self.sidecar_path, self._describe(complete=False), mode=self._mode)
        except RecordingError:
            self._abandon()
            raise

    @property
    def duration_s(self) -> float:
        """Length written so far (s)."""
        return self.frames / self.format.sample_rate_hz

    def push(self, chunk: Chunk) -> bool:
        """Add a chunk; False once the recording has ended (then call :meth:`finish`).

        It ends by itself at the duration limit or on a write error (see :attr:`error`).

        Raises:
            AudioFormatError: the chunk is not whole frames of its format (nothing written).

        """
        if self.ended is not None:
            return False
        in_frames = chunk.frames
        format_changed = self._converter is not None and self._converter.source != chunk.format
        try:
            self._place(chunk)
            if format_changed:
                self._new_segment(chunk.stamp_ns)  # the expected times now run at a new rate
            self._seg_frames += in_frames
            if chunk.coding not in self.source_codings:
                self.source_codings.append(chunk.coding)
            if chunk.concealed_frames:
                self.concealments += 1
                self.concealed_ns += (chunk.concealed_frames * NS_PER_S
                                      // chunk.format.sample_rate_hz)
            self._write(self._converter_for(chunk.format).process(chunk.data))
            self.tick()
        except RecordingError as err:
            self._end(EndReason.ERROR, str(err))
        except KosAudioError as err:  # conversion refused the data
            self._end(EndReason.ERROR, f"cannot convert {chunk.format.describe()}: {err}")
        return self.ended is None

    def tick(self) -> None:
        """Sync the file if the sync period has passed (call when idle too).

        A failed sync ends the recording with the error (check :attr:`ended`).
        """
        now = self._clock()
        if self.ended is not None or now - self._last_sync < self.options.sync_period_s:
            return
        self._last_sync = now
        try:
            self._sink.sync()
            # The progress so far, for recovery after a crash.
            write_sidecar(self.sidecar_path, self._describe(complete=False), mode=self._mode)
        except RecordingError as err:
            self._end(EndReason.ERROR, str(err))

    def finish(self, reason: EndReason = EndReason.STOPPED) -> RecordingSummary:
        """End the recording (if not ended yet), close the file, write the final sidecar.

        Never raises for I/O problems: they are reported in the summary's ``error`` (and the
        sidecar's, when it can still be written).
        """
        if self.ended is None:
            self._end(reason)
            if self._converter is not None:
                try:
                    self._write(self._converter.flush(), final=True)
                except RecordingError as err:
                    self._end(EndReason.ERROR, str(err))
        try:
            self._sink.close()
        except RecordingError as err:
            self._end(EndReason.ERROR, str(err))
        content = self._describe(complete=True)
        try:
            content["sha256"] = sha256_of(self.path)
        except OSError as err:
            content["sha256"] = None
            self._end(EndReason.ERROR, f"cannot hash {str(self.path)!r}: {err}")
            content.update(end_reason=EndReason.ERROR.value, error=self.error)
        sidecar_error = None
        try:
            write_sidecar(self.sidecar_path, content, mode=self._mode)
        except RecordingError as err:
            sidecar_error = str(err)
        assert self.ended is not None
        return RecordingSummary(self.path, self.sidecar_path, self.ended,
                                self.error or sidecar_error, content)

    # -- time axis ---------------------------------------------------------------------
    def _place(self, chunk: Chunk) -> None:
        """Check ``chunk``'s stamp against the time axis; fill or re-anchor as needed."""
        if self._first_ns is None:
            self._first_ns = self._t0_ns = chunk.stamp_ns
            self._stamped = chunk.stamped
            self._new_segment(chunk.stamp_ns)
            return
        if not (chunk.stamped and self._stamped):
            return
        rate_in = self._segment_rate()
        expected = self._seg_t0_ns + self._seg_frames * NS_PER_S // rate_in
        jump = chunk.stamp_ns - expected
        tolerance = self.options.gaps.tolerance_ns
        if -tolerance <= jump <= tolerance:
            return
        self._drain_converter()
        if 0 < jump <= self._max_fill_ns:
            # Rounded: stamps are floor(n * 1e9 / rate), so flooring back could lose a frame.
            target = ((chunk.stamp_ns - self._t0_ns) * self.format.sample_rate_hz
                      + NS_PER_S // 2) // NS_PER_S
            fill = target - self.frames
            if fill > 0:
                self.gaps += 1
                self.missing_frames += self._fill(fill)
        else:
            # Backwards, or too far ahead: keep the audio, move the axis to the new stamp.
            self.timeline_resets += 1
            self._t0_ns = chunk.stamp_ns - self.frames * NS_PER_S // self.format.sample_rate_hz
        self._new_segment(chunk.stamp_ns)

    def _new_segment(self, stamp_ns: int) -> None:
        self._seg_t0_ns = stamp_ns
        self._seg_frames = 0

    def _segment_rate(self) -> int:
        assert self._converter is not None
        return self._converter.source.sample_rate_hz

    def _converter_for(self, fmt: AudioFormat) -> StreamConverter:
        converter = self._converter
        if converter is None or converter.source != fmt:
            if converter is not None:
                self._write(converter.flush())
            converter = self._converter = StreamConverter(fmt, self.format)
            if fmt.describe() not in self.source_formats:
                self.source_formats.append(fmt.describe())
        return converter

    def _drain_converter(self) -> None:
        # The resampler holds a few ms of the audio before the jump: write it first.
        if self._converter is not None and not self._converter.passthrough:
            self._write(self._converter.flush())

    def _fill(self, frames: int) -> int:
        """Write ``frames`` of silence (fewer if the recording ends); the frames written."""
        block = self.format.sample_rate_hz * _FILL_BLOCK_S
        before = self.frames
        while self.frames - before < frames and self.ended is None:
            self._write(silence(self.format, min(block, frames - (self.frames - before))))
        return self.frames - before

    # -- file --------------------------------------------------------------------------
    def _write(self, data: bytes, *, final: bool = False) -> None:
        if not data or (self.ended is not None and not final):
            return
        frames = len(data) // self.format.frame_bytes
        if self._max_frames:
            room = self._max_frames - self.frames
            if room <= 0:
                self._end(EndReason.MAX_DURATION)
                return
            if frames >= room:
                self._sink_write(data[: room * self.format.frame_bytes], room)
                self._end(EndReason.MAX_DURATION)
                return
        self._sink_write(data, frames)

    def _sink_write(self, data: bytes, frames: int) -> None:
        try:
            self._sink.write(data)
        except RecordingError:
            self.frames = self._sink.frames  # part of the write may have reached the disk
            raise
        self.frames += frames

    def _end(self, reason: EndReason, error: str | None = None) -> None:
        # The first reason wins, except that an error always shows (the first error).
        if error is not None and self.error is None:
            self.ended, self.error = EndReason.ERROR, error
        elif self.ended is None:
            self.ended = reason

    def _abandon(self) -> None:
        with contextlib.suppress(RecordingError):
            self._sink.close()

    def _describe(self, *, complete: bool) -> dict[str, Any]:
        rate = self.format.sample_rate_hz
        start = self._first_ns
        end = None if start is None else self._t0_ns + self.frames * NS_PER_S // rate
        return {
            "complete": complete,
            "path": str(self.path),
            "format": self.options.container.value,
            "subtype": self.options.container.subtype(self.format),
            "sample_rate": rate,
            "channels": self.format.channels,
            "sample_format": self.format.sample_format.value,
            "started_at": None if start is None else iso8601(start),
            "ended_at": None if end is None else iso8601(end),
            "started_at_ns": start,
            "ended_at_ns": end,
            "duration_s": self.frames / rate,
            "samples": self.frames,
            "gaps": {"count": self.gaps, "missing_s": self.missing_frames / rate},
            "timeline_resets": {"count": self.timeline_resets},
            "concealed": {"count": self.concealments, "concealed_s": self.concealed_ns / NS_PER_S},
            "stamped": self._stamped,
            "pre_roll_s": self.pre_roll_s,
            "source_topic": self.options.source_topic,
            "source_formats": list(self.source_formats),
            "source_codings": list(self.source_codings),
            "dropped_chunks": self.dropped_chunks,
            "end_reason": None if not complete or self.ended is None else self.ended.value,
            "error": self.error,
            **dict(self.options.extra),
            "sha256": None,
        }
