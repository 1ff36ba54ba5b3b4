"""File containers a recording (or the speaker's file sink) is written in, one interface.

``wav`` is written by :class:`~kos_audio.core.recording.wavfile.WavWriter` (header kept valid
while writing); ``flac`` and ``ogg`` (Vorbis) by libsndfile through ``soundfile``, which writes
them incrementally (a killed FLAC is decodable up to its last full frame, with an unknown
length until :func:`~kos_audio.core.recording.recovery.recover_incomplete` fixes it).
"""

from __future__ import annotations

import enum
import os
from typing import Protocol

import numpy as np

from kos_audio.core.convert import to_float
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.recording.errors import RecordingError
from kos_audio.core.recording.wavfile import WavWriter


class Container(enum.Enum):
    """A recording's file type; the value is the ``format`` parameter and the extension."""

    WAV = "wav"
    FLAC = "flac"
    OGG = "ogg"

    @classmethod
    def parse(cls, text: str) -> Container:
        """The container named ``text`` (case-insensitive).

        Raises:
            RecordingError: unknown name.

        """
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise RecordingError(
                f"unknown recording format {text!r}; choose one of "
                f"{', '.join(c.value for c in cls)}") from None

    def file_format(self, source: AudioFormat) -> AudioFormat:
        """The PCM format a recording of ``source`` audio is kept in.

        WAV keeps every format as is. FLAC holds 8-24 bit integers: 32-bit sources are stored
        as ``S24LE`` and ``U8`` as signed 8 bit. OGG Vorbis is lossy; the returned format is
        the PCM the encoder is fed (the source's own).
        """
        if self is Container.FLAC and source.sample_format in (SampleFormat.S32LE,
                                                               SampleFormat.F32LE):
            return AudioFormat(source.sample_rate_hz, source.channels, SampleFormat.S24LE)
        return source

    def subtype(self, fmt: AudioFormat) -> str:
        """The libsndfile subtype name of the file (``PCM_16``, ``FLOAT``, ``VORBIS``...)."""
        if self is Container.OGG:
            return "VORBIS"
        if fmt.sample_format is SampleFormat.F32LE:
            return "FLOAT"
        if fmt.sample_format is SampleFormat.U8:
            return "PCM_U8" if self is Container.WAV else "PCM_S8"
        return f"PCM_{fmt.sample_format.bit_depth}"


class FileWriter(Protocol):
    """Where a recording's samples go.

    One writer thread; every method may raise :class:`RecordingError`, after which the file
    holds what was written before.
    """

    @property
    def frames(self) -> int:
        """Frames accepted so far."""
        ...

    def write(self, data: bytes) -> None:
        """Append whole frames in the sink's format."""
        ...

    def sync(self) -> None:
        """Make what was written readable after a crash (as far as the container allows)."""
        ...

    def close(self) -> None:
        """Finish the file (final header) and close it."""
        ...


class SoundFileWriter:
    """FLAC or OGG Vorbis through libsndfile, on an already created descriptor (owned).

    Samples are handed to libsndfile as integers of the file's width (or float32 for Vorbis),
    so no libsndfile scaling touches integer PCM: a FLAC file holds exactly the PCM values.

    Raises:
        RecordingError: libsndfile cannot open the file for writing.

    """

    def __init__(self, fd: int, container: Container, fmt: AudioFormat) -> None:
        import soundfile

        self.format = fmt
        self._container = container
        self._frames = 0
        try:
            self._file = soundfile.SoundFile(
                fd, "w", samplerate=fmt.sample_rate_hz, channels=fmt.channels,
                format=container.name, subtype=container.subtype(fmt), closefd=True)
        except (RuntimeError, ValueError, TypeError) as err:
            os.close(fd)
            raise RecordingError(f"cannot write {container.value} as {fmt.describe()}: "
                                 f"{err}") from err

    @property
    def frames(self) -> int:
        """Frames accepted so far (libsndfile may still buffer up to a codec frame)."""
        return self._frames

    def write(self, data: bytes) -> None:
        """Append whole frames in :attr:`format`."""
        buffer, dtype = self._encode(data)
        try:
            self._file.buffer_write(buffer, dtype=dtype)
        except (RuntimeError, OSError) as err:
            raise RecordingError(f"write failed after {self._frames} frames: {err}") from err
        self._frames += len(data) // self.format.frame_bytes

    def _encode(self, data: bytes) -> tuple[bytes, str]:
        sf = self.format.sample_format
        if self._container is Container.OGG:
            return to_float(data, self.format).tobytes(), "float32"
        if sf is SampleFormat.S16LE:
            return data, "int16"
        raw = np.frombuffer(data, np.uint8)
        if sf is SampleFormat.U8:
            # Signed and left-justified in 16 bits: libsndfile keeps the top 8 bits for PCM_S8.
            return ((raw.astype(np.int16) - 128) << 8).astype("<i2").tobytes(), "int16"
        # S24LE: put the 3 bytes at the top of an int32; libsndfile keeps the top 24 bits.
        trip = raw.reshape(-1, 3).astype(np.int32)
        joined = (trip[:, 0] << 8) | (trip[:, 1] << 16) | (trip[:, 2] << 24)
        return joined.astype("<i4").tobytes(), "int32"

    def sync(self) -> None:
        """Hand buffered pages to the OS and fsync (libsndfile ``sf_write_sync``)."""
        try:
            self._file.flush()
        except (RuntimeError, OSError) as err:
            raise RecordingError(f"cannot flush the {self._container.value} file: {err}") from err

    def close(self) -> None:
        """Finish the stream (final FLAC STREAMINFO with the length) and close the file."""
        try:
            self._file.close()
        except (RuntimeError, OSError) as err:
            raise RecordingError(f"cannot finish the {self._container.value} file: "
                                 f"{err}") from err


def open_writer(fd: int, container: Container, fmt: AudioFormat) -> FileWriter:
    """A sink writing ``fmt`` into the new file on ``fd`` (owned by the sink from now on).

    ``fmt`` is already the container's (:meth:`Container.file_format`).

    Raises:
        RecordingError: the file cannot be started.

    """
    if container is Container.WAV:
        try:
            return WavWriter(fd, fmt)
        except RecordingError:
            os.close(fd)
            raise
    return SoundFileWriter(fd, container, fmt)
