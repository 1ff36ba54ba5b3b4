"""An audio file played as a microphone, paced to real time (WAV, FLAC, OGG via libsndfile)."""

from __future__ import annotations

import threading
from pathlib import Path

import soundfile

from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import AudioSource, CapturedBlock
from kos_audio.core.pacing import RealTimePacer
from kos_audio.errors import BackendError, SourceFinished

# Integer files are read as integers so their samples reach the topic bit-exact when the
# node's format matches; everything else is decoded to float32.
_READ_AS = {"PCM_16": SampleFormat.S16LE, "PCM_32": SampleFormat.S32LE}
_DTYPE = {SampleFormat.S16LE: "int16", SampleFormat.S32LE: "int32", SampleFormat.F32LE: "float32"}


class FileSource(AudioSource):
    """Reads ``path`` in blocks of ``block_ms`` and releases them in real time.

    With ``loop`` the file restarts at its end on the same timeline (no gap in the stamps);
    without it, :meth:`read` raises :class:`SourceFinished` after the last block.
    """

    def __init__(self, path: str, *, loop: bool, block_ms: float) -> None:
        self.path = Path(path).expanduser()
        self.loop = loop
        self._block_ms = block_ms
        self._file: soundfile.SoundFile | None = None
        self._format: AudioFormat | None = None
        self._pacer: RealTimePacer | None = None
        self._frame = 0
        self._lock = threading.Lock()  # close() may come from another thread mid-read

    @property
    def format(self) -> AudioFormat:
        """The file's rate and channels; S16LE/S32LE for such files, else F32LE."""
        if self._format is None:
            raise BackendError(f"{self.describe()} is not open")
        return self._format

    def open(self) -> None:
        """Open the file and start its timeline now.

        Raises:
            BackendError: missing, unreadable or not an audio file.

        """
        if not str(self.path):
            raise BackendError("source 'file' needs the parameter file.path")
        try:
            self._file = soundfile.SoundFile(str(self.path))
        except (OSError, RuntimeError, soundfile.LibsndfileError) as err:
            raise BackendError(f"cannot open audio file {self.path}: {err}") from err
        sf = _READ_AS.get(self._file.subtype, SampleFormat.F32LE)
        self._format = AudioFormat(self._file.samplerate, self._file.channels, sf)
        self._pacer = RealTimePacer(self._file.samplerate)
        self._frame = 0

    def read(self, timeout_s: float) -> CapturedBlock | None:
        """The next block once real time has reached its end."""
        if self._file is None or self._pacer is None or self._format is None:
            raise BackendError(f"{self.describe()} is not open")
        block = self._format.frames_for_ms(self._block_ms)
        if not self._pacer.wait_until(self._frame + block, timeout_s):
            return None
        with self._lock:
            if self._file is None:
                return None
            data = self._read_block(self._file, block)
        if not data:
            raise SourceFinished(f"end of {self.path}")
        captured = CapturedBlock(data, capture_time_ns=self._pacer.wall_time_ns(self._frame))
        self._frame += len(data) // self._format.frame_bytes
        return captured

    def _read_block(self, file: soundfile.SoundFile, frames: int) -> bytes:
        assert self._format is not None
        dtype = _DTYPE[self._format.sample_format]
        data = bytes(file.buffer_read(frames, dtype=dtype))
        short = frames - len(data) // self._format.frame_bytes
        if short and self.loop:
            file.seek(0)
            data += bytes(file.buffer_read(short, dtype=dtype))
        return data

    def close(self) -> None:
        """Close the file; wakes a pending read."""
        if self._pacer is not None:
            self._pacer.cancel()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def describe(self) -> str:
        """E.g. ``file /data/hello.wav (loop)``."""
        return f"file {self.path}{' (loop)' if self.loop else ''}"
