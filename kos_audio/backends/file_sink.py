"""An audio file as a sink (WAV, FLAC, OGG via libsndfile), written in real time."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import soundfile

from kos_audio.backends.paced_sink import PacedSink
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import PlaybackBlock
from kos_audio.errors import BackendError

#: What a file gets when the node requests no format: a typical device's.
NATIVE = AudioFormat(48000, 2, SampleFormat.S16LE)
#: libsndfile subtypes per sample format.
SUBTYPES = {
    SampleFormat.U8: "PCM_U8",
    SampleFormat.S16LE: "PCM_16",
    SampleFormat.S24LE: "PCM_24",
    SampleFormat.S32LE: "PCM_32",
    SampleFormat.F32LE: "FLOAT",
}


class FileSink(PacedSink):
    """Writes what a speaker would play into ``path``, silence included, in real time.

    A :class:`PacedPuller` thread pulls one block every ``block_ms`` of real time and writes
    it, so the file's timeline is the speaker's: interrupts, pauses and gaps land where they
    would be heard. The container follows the extension (``.wav``, ``.flac``, ``.ogg``). The
    file is created by the first :meth:`open`; a reopen after a failure appends. The header is
    complete once the sink is closed (node shut down).

    Args:
        path: the file to write.
        sample_rate_hz, channels: 0 = :data:`NATIVE`'s.
        sample_format: None = S16LE (Vorbis files are always encoded from float).
        block_ms: period of the pacing thread (ms).

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
        super().__init__(AudioFormat(sample_rate_hz or NATIVE.sample_rate_hz,
                                     channels or NATIVE.channels,
                                     sample_format or NATIVE.sample_format),
                         block_ms=block_ms, thread_name="kos_audio-file-sink")
        self._file: soundfile.SoundFile | None = None
        self._created = False
        self._lock = threading.Lock()  # close() may come from another thread mid-write
        self.frames_written = 0

    def open(self) -> AudioFormat:
        """Create the file (or reopen it to append).

        Raises:
            BackendError: the file cannot be created (missing directory, permissions,
                unsupported extension or format).

        """
        fmt = self._format
        is_ogg = self.path.suffix.lower() in (".ogg", ".oga")
        subtype = "VORBIS" if is_ogg else SUBTYPES[fmt.sample_format]
        try:
            if self._created:
                file = soundfile.SoundFile(str(self.path), "r+")
                file.seek(0, soundfile.SEEK_END)
            else:
                file = soundfile.SoundFile(str(self.path), "w", samplerate=fmt.sample_rate_hz,
                                           channels=fmt.channels, subtype=subtype)
        except (OSError, RuntimeError, TypeError, ValueError, soundfile.LibsndfileError) as err:
            raise BackendError(f"cannot write audio file {self.path}: {err}") from err
        self._created = True
        with self._lock:
            self._file = file
        return fmt

    def _consume(self, block: PlaybackBlock) -> None:
        # The pacing thread: a buffered write; libsndfile converts float to the subtype.
        with self._lock:
            if self._file is not None:
                self._file.write(block.samples)
                self.frames_written += len(block.samples)

    def close(self) -> None:
        """Stop the thread and close the file (completing its header); idempotent."""
        super().close()
        with self._lock:
            file, self._file = self._file, None
        if file is not None:
            # Nothing more can be done for a file that cannot be finished.
            with contextlib.suppress(OSError, RuntimeError, soundfile.LibsndfileError):
                file.close()

    def describe(self) -> str:
        """E.g. ``file /tmp/speaker.wav``."""
        return f"file {self.path}"
