"""An incremental WAV writer whose header stays valid while it writes.

Every :meth:`WavWriter.sync` writes the data first and then rewrites the RIFF and ``data``
sizes to cover exactly what is on disk, so the file is a complete, readable WAV (by the
standard library's :mod:`wave`, libsndfile, ffmpeg...) at every sync point: a process killed
with SIGKILL loses only what it wrote after the last sync. Bytes past the ``data`` size are
ignored by readers; :func:`repair_wav` extends the header over them afterwards.

Integer formats use ``WAVE_FORMAT_PCM`` with a 16-byte ``fmt`` chunk (the layout :mod:`wave`
reads, for any channel count and 8/16/24/32 bits; 8-bit WAV is unsigned, like ``U8``). ``F32LE``
uses ``WAVE_FORMAT_IEEE_FLOAT`` with a ``fact`` chunk: libsndfile and ffmpeg read it, Python's
:mod:`wave` does not read float WAV at all.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.recording.errors import RecordingError

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
#: RIFF sizes are 32-bit: the data chunk cannot grow past this (bytes).
MAX_DATA_BYTES = 0xFFFF_FFFF - 64


@dataclass(frozen=True, slots=True)
class _Layout:
    header: bytes  # the header with zero sizes
    data_offset: int  # where samples start
    fact_offset: int | None  # where the fact chunk's frame count is, for float


def _layout(fmt: AudioFormat) -> _Layout:
    sf = fmt.sample_format
    block_align = fmt.frame_bytes
    body = struct.pack("<HHIIHH", WAVE_FORMAT_IEEE_FLOAT if sf.is_float else WAVE_FORMAT_PCM,
                       fmt.channels, fmt.sample_rate_hz, fmt.bytes_per_second, block_align,
                       sf.bit_depth)
    if sf is SampleFormat.F32LE:
        fmt_chunk = b"fmt " + struct.pack("<I", 18) + body + struct.pack("<H", 0)
        fact = b"fact" + struct.pack("<II", 4, 0)
        head = b"RIFF\0\0\0\0WAVE" + fmt_chunk
        return _Layout(head + fact + b"data\0\0\0\0", len(head + fact) + 8, len(head) + 8)
    head = b"RIFF\0\0\0\0WAVE" + b"fmt " + struct.pack("<I", 16) + body
    return _Layout(head + b"data\0\0\0\0", len(head) + 8, None)


class WavWriter:
    """Writes PCM in ``fmt`` to the file open on descriptor ``fd`` (positioned at 0, empty).

    Writes are unbuffered ``write(2)`` calls, so after an OS error the bytes on disk are known
    exactly; the writer then cuts the file to whole frames and makes the header describe them
    before raising. Not thread-safe: one writer thread.

    Args:
        fd: a descriptor open for writing; owned (closed by :meth:`close`).
        fmt: the samples' format (any :class:`SampleFormat`).
        max_data_bytes: refuse to grow past this many sample bytes (the 4 GiB RIFF limit).

    Raises:
        RecordingError: the header cannot be written.

    """

    def __init__(self, fd: int, fmt: AudioFormat, *, max_data_bytes: int = MAX_DATA_BYTES) -> None:
        self.format = fmt
        self._fd = fd
        self._layout = _layout(fmt)
        self._max = max_data_bytes - max_data_bytes % fmt.frame_bytes
        self.data_bytes = 0
        self._synced = -1
        self._closed = False
        try:
            _write_all(fd, self._layout.header)
            _write_sizes(fd, self._layout, fmt, 0)  # a valid, empty WAV from the first moment
        except OSError as err:
            raise RecordingError(f"cannot write the WAV header: {err}") from err
        self._synced = 0

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self.data_bytes // self.format.frame_bytes

    def write(self, data: bytes) -> None:
        """Append whole frames.

        Raises:
            RecordingError: the size limit would be passed (nothing written), or the OS
                refused the write (disk full, I/O error, file size limit); the file then ends
                at the last whole frame that reached the disk and its header says so.

        """
        if len(data) % self.format.frame_bytes:
            raise RecordingError(f"{len(data)} bytes is not whole {self.format.describe()} frames")
        if self.data_bytes + len(data) > self._max:
            raise RecordingError(
                f"WAV size limit reached ({self._max} bytes of samples; RIFF sizes are 32-bit); "
                "record FLAC for longer recordings")
        try:
            _write_all(self._fd, data)
        except OSError as err:
            self._salvage()
            raise RecordingError(
                f"write failed after {self.frames} frames: {err}; the file ends there") from err
        self.data_bytes += len(data)

    def sync(self, *, durable: bool = True) -> None:
        """Make the header cover everything written so far.

        With ``durable``, also ``fdatasync``: survives power loss, not only SIGKILL.

        Raises:
            RecordingError: the OS refused to update the header.

        """
        if self._synced == self.data_bytes:
            return
        try:
            self._write_sizes(self.data_bytes)
            if durable:
                os.fdatasync(self._fd)
        except OSError as err:
            raise RecordingError(f"cannot update the WAV header: {err}") from err
        self._synced = self.data_bytes

    def close(self) -> None:
        """Pad to an even size (RIFF rule), write the final header and close the file.

        Raises:
            RecordingError: the final header could not be written (the last synced header
                remains valid).

        """
        if self._closed:
            return
        self._closed = True
        try:
            if self.data_bytes % 2:
                # A missing pad byte is tolerated by every reader; the sizes matter more.
                with contextlib.suppress(OSError):
                    _write_all(self._fd, b"\0")
            self._write_sizes(self.data_bytes)
            os.fsync(self._fd)
        except OSError as err:
            raise RecordingError(f"cannot finish the WAV header: {err}") from err
        finally:
            os.close(self._fd)

    def _write_sizes(self, data_bytes: int) -> None:
        _write_sizes(self._fd, self._layout, self.format, data_bytes)

    def _salvage(self) -> None:
        # Part of the failed write may have landed: keep the whole frames that did.
        try:
            on_disk = os.fstat(self._fd).st_size - self._layout.data_offset
            whole = max(0, on_disk - on_disk % self.format.frame_bytes)
            os.ftruncate(self._fd, self._layout.data_offset + whole)
            self.data_bytes = whole
            self._write_sizes(whole)
            self._synced = whole
        except OSError:
            pass  # the last synced header still describes valid data


def _write_sizes(fd: int, layout: _Layout, fmt: AudioFormat, data_bytes: int) -> None:
    riff = layout.data_offset - 8 + data_bytes + data_bytes % 2
    os.pwrite(fd, struct.pack("<I", riff), 4)
    os.pwrite(fd, struct.pack("<I", data_bytes), layout.data_offset - 4)
    if layout.fact_offset is not None:
        os.pwrite(fd, struct.pack("<I", data_bytes // fmt.frame_bytes), layout.fact_offset)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def repair_wav(path: Path) -> int:
    """Extend the header of a :class:`WavWriter` file over every whole frame; the frame count.

    After a crash, that includes the bytes written since the last sync.

    Raises:
        RecordingError: the file is not a WAV this module wrote, or cannot be rewritten.

    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise RecordingError(f"cannot open {str(path)!r}: {err}") from err
    try:
        head = os.pread(fd, 64, 0)
        fmt, layout = _parse_header(head, path)
        size = os.fstat(fd).st_size
        data = min(size - layout.data_offset, MAX_DATA_BYTES)
        data -= data % fmt.frame_bytes
        os.ftruncate(fd, layout.data_offset + data)
        _write_sizes(fd, layout, fmt, data)
        os.fsync(fd)
        return data // fmt.frame_bytes
    except OSError as err:
        raise RecordingError(f"cannot repair {str(path)!r}: {err}") from err
    finally:
        os.close(fd)


def _parse_header(head: bytes, path: Path) -> tuple[AudioFormat, _Layout]:
    if len(head) < 44 or head[:4] != b"RIFF" or head[8:16] != b"WAVE" + b"fmt ":
        raise RecordingError(f"{str(path)!r} is not a WAV file written by kos_audio")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, 20)
    if tag == WAVE_FORMAT_IEEE_FLOAT and bits == 32:
        sample_format = SampleFormat.F32LE
    elif tag == WAVE_FORMAT_PCM:
        sample_format = SampleFormat.from_bit_depth(bits)
    else:
        raise RecordingError(f"{str(path)!r}: WAV format tag {tag} with {bits} bits is not ours")
    fmt = AudioFormat(rate, channels, sample_format)
    layout = _layout(fmt)
    known = layout.data_offset - 4  # everything before the data size
    if _with_zero_sizes(head[:known]) != layout.header[:known]:
        raise RecordingError(f"{str(path)!r} has a WAV header kos_audio did not write")
    return fmt, layout


def _with_zero_sizes(head: bytes) -> bytes:
    # Compare headers ignoring the RIFF size and the fact frame count.
    out = bytearray(head)
    out[4:8] = b"\0\0\0\0"
    if out[36:40] == b"fact":
        out[44:48] = b"\0\0\0\0"
    return bytes(out)
