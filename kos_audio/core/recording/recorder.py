"""The recorder: a writer thread that owns the pre-roll and the current recording.

Producers (a ROS subscription callback, a bag reader) call :meth:`Recorder.push`, which only
enqueues and never blocks; :meth:`Recorder.start` and :meth:`Recorder.stop` go through the
same queue, so a recording starts and ends exactly between two chunks, in arrival order. File
creation, writes, syncs, hashing and sidecars all happen on the writer thread: a slow or stalled
disk never blocks the caller (beyond the reply timeout of start/stop) and never drops audio
until the queue's bound (``max_queue_s`` of audio) is reached; then chunks are dropped and
counted, and the stamps make the loss a filled, recorded gap.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

from kos_audio.core.formats import AudioFormat
from kos_audio.core.recording.errors import RecordingError
from kos_audio.core.recording.naming import (
    PRIVATE,
    FileAccess,
    claim_new_file,
    prepare_output_dir,
    utc_stamp,
    validate_prefix,
)
from kos_audio.core.recording.preroll import PreRoll
from kos_audio.core.recording.recording import (
    Chunk,
    EndReason,
    GapPolicy,
    Recording,
    RecordingOptions,
    RecordingSummary,
)
from kos_audio.core.recording.writers import Container
from kos_audio.core.stamping import NS_PER_S
from kos_audio.errors import AudioFormatError

T = TypeVar("T")
#: ``(kind, message)`` from the writer thread when a recording ended by itself: ``"ended"``
#: (max duration) or ``"failed"`` (an error). Must be quick and thread-safe (a logger call).
RecorderEvent = Callable[[str, str], None]


class RecorderState(enum.Enum):
    """What the recorder is doing."""

    IDLE = "idle"
    RECORDING = "recording"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """Fixed for the recorder's life.

    Attributes:
        output_dir: where recordings go (created on each start if missing).
        source_topic: for the sidecars.
        pre_roll_s: audio from before a start request included in the recording (s).
        gaps: see :class:`GapPolicy`.
        sync_period_s: the file is made crash-readable this often (s).
        max_queue_s: audio the writer may fall behind before chunks are dropped (s).
        access: permission bits of recordings, sidecars and a created ``output_dir``.

    """

    output_dir: Path
    source_topic: str = ""
    pre_roll_s: float = 0.0
    gaps: GapPolicy = field(default_factory=GapPolicy)
    sync_period_s: float = 1.0
    max_queue_s: float = 10.0
    access: FileAccess = PRIVATE


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What one recording should be (may differ per recording)."""

    prefix: str = "recording"
    container: Container = Container.WAV
    max_duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RecorderStatus:
    """A snapshot for diagnostics (any thread)."""

    state: RecorderState = RecorderState.IDLE
    path: Path | None = None
    duration_s: float = 0.0
    gaps: int = 0
    missing_s: float = 0.0
    concealed_s: float = 0.0
    recordings: int = 0
    dropped_chunks: int = 0
    queued_s: float = 0.0
    last_error: str = ""
    last_summary: RecordingSummary | None = None


_Command = tuple[Callable[[], Any], "Future[Any]"]
_Item = Union[Chunk, _Command, None]  # None: close the recorder


class Recorder:
    """See the module docstring. Start it with :meth:`open`, end it with :meth:`close`.

    Args:
        config: fixed settings.
        on_event: told (from the writer thread) when a recording ends by itself.
        clock: monotonic seconds, for syncs.

    """

    def __init__(self, config: RecorderConfig, *, on_event: RecorderEvent = lambda k, m: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._on_event = on_event
        self._clock = clock
        self._cond = threading.Condition()
        self._items: deque[_Item] = deque()
        self._queued_ns = 0
        self._max_queue_ns = round(config.max_queue_s * NS_PER_S)
        self._dropped = 0  # chunks dropped since the writer last looked (under _cond)
        self._dropped_total = 0
        self._preroll = PreRoll(config.pre_roll_s)
        self._recording: Recording | None = None
        self._last: RecordingSummary | None = None
        self._unacknowledged: RecordingSummary | None = None  # ended by itself, not yet stopped
        self._recordings = 0
        self._last_error = ""
        self._status = RecorderStatus()
        self._thread: threading.Thread | None = None

    # -- any thread ----------------------------------------------------------------------
    def open(self) -> Recorder:
        """Start the writer thread (returns self)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kos_audio-recorder",
                                            daemon=True)
            self._thread.start()
        return self

    @property
    def status(self) -> RecorderStatus:
        """The latest snapshot (updated by the writer after every chunk and command)."""
        return self._status

    def push(self, chunk: Chunk) -> bool:
        """Enqueue a chunk; never blocks. False if it was dropped (queue full).

        Raises:
            AudioFormatError: the chunk is not whole frames (nothing enqueued).

        """
        duration_ns = chunk.duration_ns
        with self._cond:
            if self._queued_ns + duration_ns > self._max_queue_ns:
                self._dropped += 1
                return False
            self._items.append(chunk)
            self._queued_ns += duration_ns
            self._cond.notify()
        return True

    def start(self, request: StartRequest, fmt: AudioFormat | None, *, now_ns: int,
              timeout_s: float = 10.0) -> Path:
        """Start a recording; the absolute path of the new file.

        The file is named ``<prefix>_<UTC now_ns>.<ext>``; its format is fixed from ``fmt``
        (the current input format).

        Raises:
            RecordingError: already recording, bad prefix, no input format known yet, the
                directory or file cannot be created, or the writer did not answer in time.

        """
        validate_prefix(request.prefix)
        if fmt is None:
            raise RecordingError("no audio format known yet (no audio_info received); "
                                 "cannot fix the recording's format")
        return self._call(lambda: self._start(request, fmt, now_ns), timeout_s)

    def stop(self, *, timeout_s: float = 30.0) -> RecordingSummary:
        """Finish the current recording: close the file, hash it, write the sidecar.

        Raises:
            RecordingError: not recording (the message says how the last one ended if it ended
                by itself), or the writer did not answer in time.

        """
        return self._call(self._stop, timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish any recording (end reason ``shutdown``) and end the writer thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with self._cond:
            self._items.append(None)
            self._cond.notify()
        thread.join(timeout_s)

    def _call(self, fn: Callable[[], T], timeout_s: float) -> T:
        if self._thread is None:
            raise RecordingError("the recorder is closed")
        future: Future[T] = Future()
        with self._cond:
            self._items.append((fn, future))
            self._cond.notify()
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            if future.cancel():  # not started yet: it never will
                raise RecordingError(f"the writer thread did not answer within {timeout_s:g} s "
                                     "(disk stalled?)") from None
            return future.result()  # it is running: its result is the truth

    # -- writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._items:
                    self._cond.wait(self.config.sync_period_s / 2)
                idle = not self._items
                item = None if idle else self._items.popleft()
                if isinstance(item, Chunk):
                    self._queued_ns -= item.duration_ns
                dropped, self._dropped = self._dropped, 0
            if dropped:
                self._dropped_total += dropped
                if self._recording is not None:
                    self._recording.dropped_chunks += dropped
            if idle:
                if self._recording is not None:
                    self._recording.tick()
                    self._check_ended()
            elif item is None:
                self._finish(EndReason.SHUTDOWN)
                self._publish_status(RecorderState.CLOSED)
                return
            elif isinstance(item, Chunk):
                self._on_chunk(item)
            else:
                fn, future = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except Exception as err:  # handed to the caller
                        future.set_exception(err)
            self._publish_status()

    def _on_chunk(self, chunk: Chunk) -> None:
        recording = self._recording
        if recording is None:
            self._preroll.push(chunk)
            return
        try:
            recording.push(chunk)
        except AudioFormatError as err:
            self._last_error = f"chunk refused: {err}"
        self._check_ended()

    def _check_ended(self) -> None:
        recording = self._recording
        if recording is None or recording.ended is None:
            return
        summary = self._finish(recording.ended)
        if summary is not None:
            self._unacknowledged = summary
            how = (f"error: {summary.error}" if summary.error
                   else f"{summary.end_reason.value} ({summary.duration_s:.3f} s)")
            self._on_event("failed" if summary.error else "ended",
                           f"recording {summary.path} ended by itself: {how}")

    def _start(self, request: StartRequest, fmt: AudioFormat, now_ns: int) -> Path:
        if self._recording is not None:
            raise RecordingError(f"already recording to {self._recording.path}")
        access = self.config.access
        directory = prepare_output_dir(self.config.output_dir, dir_mode=access.dir_mode)
        stem = f"{request.prefix}_{utc_stamp(now_ns)}"
        claimed = claim_new_file(directory, stem, request.container.value,
                                 mode=access.file_mode)
        pre = self._preroll.take()
        options = RecordingOptions(
            container=request.container, source_topic=self.config.source_topic,
            max_duration_s=request.max_duration_s, gaps=self.config.gaps,
            sync_period_s=self.config.sync_period_s)
        try:
            recording = Recording(claimed, fmt, options, clock=self._clock,
                                  pre_roll_s=sum(c.duration_ns for c in pre) / NS_PER_S)
        except RecordingError as err:
            self._last_error = str(err)
            claimed.path.unlink(missing_ok=True)  # ours, empty: do not leave debris
            raise
        self._recording = recording
        self._recordings += 1
        self._unacknowledged = None
        for chunk in pre:
            recording.push(chunk)
        self._check_ended()
        return claimed.path

    def _stop(self) -> RecordingSummary:
        if self._recording is None:
            last, self._unacknowledged = self._unacknowledged, None
            if last is not None:
                how = f"error: {last.error}" if last.error else last.end_reason.value
                raise RecordingError(f"not recording; the last recording {last.path} ended by "
                                     f"itself ({how})")
            raise RecordingError("not recording")
        summary = self._finish(EndReason.STOPPED)
        assert summary is not None
        return summary

    def _finish(self, reason: EndReason) -> RecordingSummary | None:
        recording, self._recording = self._recording, None
        if recording is None:
            return None
        summary = recording.finish(reason)
        self._last = summary
        if summary.error:
            self._last_error = summary.error
        return summary

    def _publish_status(self, state: RecorderState | None = None) -> None:
        rec = self._recording
        self._status = RecorderStatus(
            state=state or (RecorderState.RECORDING if rec else RecorderState.IDLE),
            path=rec.path if rec else None,
            duration_s=rec.duration_s if rec else 0.0,
            gaps=rec.gaps if rec else 0,
            missing_s=rec.missing_frames / rec.format.sample_rate_hz if rec else 0.0,
            concealed_s=rec.concealed_ns / NS_PER_S if rec else 0.0,
            recordings=self._recordings,
            dropped_chunks=self._dropped_total,
            queued_s=self._queued_ns / NS_PER_S,
            last_error=self._last_error,
            last_summary=self._last,
        )
