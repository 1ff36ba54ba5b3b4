"""An audio file as a sink (WAV, FLAC, OGG Vorbis), written in real time and crash-readable.

The file is written by the recorder's writers
(:func:`kos_audio.core.recording.writers.open_writer`): one container/subtype table for the
recorder and the speaker, a WAV header kept valid while writing, and libsndfile's FLAC rules
(8-24 bit integers only).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from kos_audio.backends.paced_sink import PacedSink
from kos_audio.core.convert import from_float
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import PlaybackBlock
from kos_audio.core.recording.errors import RecordingError
from kos_audio.core.recording.wavfile import WavWriter
from kos_audio.core.recording.writers import Container, FileWriter, open_writer
from kos_audio.errors import BackendError

#: What a file gets when the node requests no format: a typical device's.
NATIVE = AudioFormat(48000, 2, SampleFormat.S16LE)
#: The container of each file extension (compared case-insensitively).
CONTAINERS = {
    ".wav": Container.WAV,
    ".flac": Container.FLAC,
    ".ogg": Container.OGG,
    ".oga": Container.OGG,
}
#: Seconds of audio between two syncs (WAV header rewritten, libsndfile flushed).
SYNC_INTERVAL_S = 1.0
#: Continuation files tried (``name.1.wav`` ... ) before a reopen gives up.
MAX_CONTINUATIONS = 1000

_OPEN_ERRORS = (OSError, RecordingError)


class FileSink(PacedSink):
    """Writes what a speaker would play into ``path``, silence included, in real time.

    A :class:`PacedPuller` thread pulls one block every ``block_ms`` of real time and writes
    it, so the file's timeline is the speaker's: interrupts, pauses and gaps land where they
    would be heard.

    The container follows the extension: ``.wav``, ``.flac``, ``.ogg``/``.oga`` (Vorbis); any
    other extension makes :meth:`open` fail. The file's PCM format is
    :meth:`Container.file_format` of the requested one (:attr:`format`): WAV keeps every
    sample format, FLAC stores ``S32LE``/``F32LE`` as ``S24LE`` (and ``U8`` as signed 8 bit),
    Vorbis is encoded from it. The engine's float blocks are converted with
    :func:`~kos_audio.core.convert.from_float`.

    Crash-readable: about once per second of audio the pacing thread syncs the writer, so
    a WAV's header always covers what was written up to the last sync (a killed node leaves a
    valid file that is at most ~1 s short; not fsynced, so a power loss may lose more); FLAC
    and Vorbis pages are handed to the OS (a killed FLAC decodes up to its last frame).
    :meth:`close` writes the final header.

    The first :meth:`open` creates ``path`` (replacing an existing file). A reopen after a
    failure (the playback loop calls :meth:`close` then :meth:`open`) never overwrites what
    was written: if the current file holds audio, the continuation goes to a new numbered file
    next to it, ``speaker.1.wav``, ``speaker.2.wav``... (created exclusively: an existing file
    is never replaced); :meth:`describe` names the file being written and the playback loop
    logs it when the sink opens. A file that got no audio yet is simply recreated.

    Args:
        path: the file to write.
        sample_rate_hz, channels: 0 = :data:`NATIVE`'s.
        sample_format: None = S16LE.
        block_ms: period of the pacing thread (ms).

    Raises:
        BackendError: ``path`` is empty.

    """

    def __init__(
        self,
        path: str,
        *,
        sample_rate_hz: int = 0,
        channels: int = 0,
        sample_format: SampleFormat | None = None,
        block_ms: float = 20.0,
    ) -> None:
        if not path:
            raise BackendError("sink 'file' needs the parameter file.path")
        self.path = Path(path).expanduser()
        requested = AudioFormat(sample_rate_hz or NATIVE.sample_rate_hz,
                                channels or NATIVE.channels,
                                sample_format or NATIVE.sample_format)
        #: None: the extension names no container (open() says so).
        self.container = CONTAINERS.get(self.path.suffix.lower())
        fmt = requested if self.container is None else self.container.file_format(requested)
        super().__init__(fmt, block_ms=block_ms, thread_name="kos_audio-file-sink")
        self._lock = threading.Lock()  # close() may come from another thread mid-write
        self._writer: FileWriter | None = None
        self._current: Path | None = None  # the file being (or last) written
        self._current_frames = 0  # frames written into it
        self._next_index = 1  # of the next continuation file
        self._sync_frames = max(1, round(SYNC_INTERVAL_S * fmt.sample_rate_hz))
        self._unsynced = 0  # frames written since the last sync
        self.frames_written = 0  # frames written, all files together

    @property
    def current_path(self) -> Path:
        """The file being written (``path`` or a continuation), or to be written next."""
        return self._current or self.path

    def open(self) -> AudioFormat:
        """Create the file (or a continuation next to it, after a failure).

        Raises:
            BackendError: the file cannot be created (missing directory, permissions,
                unknown extension, format the container cannot hold).

        """
        if self.container is None:
            raise BackendError(
                f"cannot write audio file {self.path}: unknown extension "
                f"{self.path.suffix or '(none)'!r}; use one of {', '.join(CONTAINERS)}")
        self.close()  # a leftover writer is finished first, never abandoned
        target, fd = self._create()
        try:
            writer = open_writer(fd, self.container, self._format)  # owns fd from here
        except RecordingError as err:
            with contextlib.suppress(OSError):
                target.unlink()  # an empty start: no litter from retries
            raise BackendError(f"cannot write audio file {target}: {err}") from err
        with self._lock:
            self._writer = writer
            self._current = target
            self._current_frames = 0
            self._unsynced = 0
        return self._format

    def _create(self) -> tuple[Path, int]:
        # The current file again while it holds no audio (or was never created), else the
        # next free continuation, created exclusively.
        if self._current is None or self._current_frames == 0:
            target = self.current_path
            try:
                return target, os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                       | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise BackendError(f"cannot write audio file {target}: {err}") from err
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for index in range(self._next_index, self._next_index + MAX_CONTINUATIONS):
            target = self.path.with_name(f"{self.path.stem}.{index}{self.path.suffix}")
            try:
                fd = os.open(target, flags, 0o644)
            except FileExistsError:
                continue
            except OSError as err:
                raise BackendError(f"cannot write audio file {target}: {err}") from err
            self._next_index = index + 1
            return target, fd
        raise BackendError(f"cannot write audio file {self.path}: {MAX_CONTINUATIONS} "
                           "continuation files after it exist already")

    def _consume(self, block: PlaybackBlock) -> None:
        # The pacing thread: one unbuffered write, a header update once a second. A
        # RecordingError stops the thread; check() reports it and the loop reopens.
        data = from_float(block.samples, self._format.sample_format)
        with self._lock:
            writer = self._writer
            if writer is None:
                return
            before = writer.frames
            try:
                writer.write(data)
            finally:
                # After a failed write the writer keeps the whole frames that reached the disk.
                done = writer.frames - before
                self._current_frames += done
                self.frames_written += done
                self._unsynced += done
            if self._unsynced >= self._sync_frames:
                self._unsynced = 0
                if isinstance(writer, WavWriter):
                    writer.sync(durable=False)  # survives a kill; no fdatasync stall here
                else:
                    writer.sync()

    def close(self) -> None:
        """Stop the thread and finish the file (final header); idempotent."""
        super().close()
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            # Nothing more can be done for a file that cannot be finished: its last synced
            # header stays valid.
            with contextlib.suppress(RecordingError):
                writer.close()

    def describe(self) -> str:
        """E.g. ``file /tmp/speaker.wav``, ``file /tmp/speaker.1.wav (continues ...)``."""
        current = self.current_path
        if current != self.path:
            return f"file {current} (continues {self.path})"
        return f"file {self.path}"
