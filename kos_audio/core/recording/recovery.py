"""Finishing recordings that a crash (SIGKILL, power loss) left incomplete.

A recording's sidecar says ``"complete": false`` until the recording ends, and the recorder
holds an exclusive ``flock`` on the audio file while writing it, released by the kernel when
the process dies. :func:`recover_incomplete` finds such sidecars whose audio file nobody holds
and finishes them in place: a WAV header is extended over every whole frame on disk (so
nothing after the last sync is lost), a FLAC's unknown length is set to the frames that decode,
an OGG is counted; the sidecar becomes ``complete`` with ``end_reason: recovered``. Files are
only ever touched by name inside the given directory; symlinks are ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import Any

from kos_audio.core.recording.errors import RecordingError
from kos_audio.core.recording.naming import SIDECAR_SUFFIX
from kos_audio.core.recording.sidecar import iso8601, read_sidecar, sha256_of, write_sidecar
from kos_audio.core.recording.wavfile import repair_wav
from kos_audio.core.recording.writers import Container
from kos_audio.core.stamping import NS_PER_S

#: Frames decoded per read while counting a FLAC/OGG: libsndfile's FLAC frame size, so the
#: read that meets the torn end loses nothing that decodes (a failed read returns no frames).
_READ_FRAMES = 4096


def recover_incomplete(directory: Path) -> list[str]:
    """Finish every incomplete recording in ``directory``; one log line per file.

    Never raises: a file that cannot be recovered is reported in its line and left as is.
    """
    lines = []
    try:
        sidecars = sorted(directory.glob(f"*{SIDECAR_SUFFIX}"))
    except OSError as err:
        return [f"cannot scan {directory} for incomplete recordings: {err}"]
    for sidecar in sidecars:
        try:
            if not stat.S_ISREG(os.lstat(sidecar).st_mode):
                continue
            content = read_sidecar(sidecar)
        except (OSError, RecordingError):
            continue  # not ours
        if content.get("complete") is not False:
            continue
        try:
            line = _recover(directory, sidecar, content)
        except RecordingError as err:
            line = f"could not recover {sidecar}: {err}"
        if line:
            lines.append(line)
    return lines


def _recover(directory: Path, sidecar: Path, content: dict[str, Any]) -> str | None:
    audio = directory / Path(str(content.get("path", ""))).name  # never outside directory
    try:
        fd = os.open(audio, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise RecordingError(f"its audio file {audio} cannot be opened: {err}") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live recorder is writing it
        frames = _repair(audio, Container.parse(str(content.get("format", ""))))
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    rate = int(content["sample_rate"])
    start = content.get("started_at_ns")
    end = None if start is None else int(start) + frames * NS_PER_S // rate
    try:
        digest = sha256_of(audio)
    except OSError as err:
        raise RecordingError(f"cannot hash {audio}: {err}") from err
    content = {k: v for k, v in content.items() if k != "schema"}
    content.update(
        complete=True, samples=frames, duration_s=frames / rate, end_reason="recovered",
        ended_at=None if end is None else iso8601(end), ended_at_ns=end, sha256=digest,
        error="the recorder stopped without finishing this file (crash or kill); it was "
              "recovered from what reached the disk; gap counts cover until the last sync")
    try:
        mode = stat.S_IMODE(os.lstat(sidecar).st_mode)  # keep what the recorder chose
    except OSError:
        mode = 0o600
    write_sidecar(sidecar, content, mode=mode)
    return f"recovered {audio} left incomplete by a crash: {frames / rate:.3f} s"


def _repair(audio: Path, container: Container) -> int:
    if container is Container.WAV:
        return repair_wav(audio)
    frames = _decodable_frames(audio)
    if container is Container.FLAC:
        _set_flac_length(audio, frames)
    return frames


def _decodable_frames(path: Path) -> int:
    import soundfile

    frames = 0
    try:
        with soundfile.SoundFile(path) as file:
            while True:
                block = file.read(_READ_FRAMES, dtype="int16")
                if not len(block):
                    break
                frames += len(block)
    except (RuntimeError, OSError):
        pass  # the truncated last frame: everything before it counts
    return frames


def _set_flac_length(path: Path, frames: int) -> None:
    # STREAMINFO is the first metadata block; its 36-bit total sample count ends at byte 26.
    try:
        with open(path, "r+b") as file:
            head = bytearray(file.read(26))
            if head[:4] != b"fLaC" or head[4] & 0x7F != 0:
                raise RecordingError(f"{path} does not start with a FLAC STREAMINFO block")
            packed = int.from_bytes(head[18:26], "big")
            packed = (packed & ~((1 << 36) - 1)) | min(frames, (1 << 36) - 1)
            file.seek(18)
            file.write(packed.to_bytes(8, "big"))
            file.flush()
            os.fsync(file.fileno())
    except OSError as err:
        raise RecordingError(f"cannot fix the FLAC length of {path}: {err}") from err
