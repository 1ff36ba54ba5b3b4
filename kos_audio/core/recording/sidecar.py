"""The JSON sidecar that makes a recording self-describing.

Written beside ``<name>.<ext>`` as ``<name>.json``: once when the recording starts (``complete``
false, so a crashed recording is recognisable and describes itself) and replaced atomically
(write a temporary file, ``rename``) when it ends. Keys (schema ``kos_audio.recording/1``):

- ``path``: absolute path of the audio file; ``format``: wav / flac / ogg; ``subtype``: the
  libsndfile subtype (PCM_16, FLOAT, VORBIS...);
- ``sample_rate`` (Hz), ``channels``, ``sample_format``: the PCM format of the samples (S16LE...;
  for Vorbis, what the encoder was fed);
- ``started_at`` / ``ended_at``: ISO 8601 UTC on the ROS clock (the first sample / just after
  the last), and ``started_at_ns`` / ``ended_at_ns`` exact;
- ``duration_s``; ``samples``: frames (samples per channel);
- ``gaps``: {``count``, ``missing_s``}: stamp gaps filled with silence; ``timeline_resets``:
  {``count``}: stamp jumps that could not be filled (backwards, or over the fill limit);
  ``concealed``: {``count``, ``concealed_s``}: messages lost upstream of a compressed (Opus)
  stream, written as the decoder's concealment instead of silence: no hole in the file, yet
  lost (a loss is either a gap or concealed, never both);
- ``stamped``: false when the input had no stamps (times are receive times, gaps unknown);
- ``pre_roll_s``; ``source_topic``; ``source_formats``: every input format seen (decoded
  PCM); ``source_codings``: every ``coding_format`` seen (``wave``, ``opus``, ``mp3``);
  ``dropped_chunks``: lost to a full writer queue (they show up as gaps);
- ``end_reason``: stopped / max_duration / error / shutdown / recovered; ``error``;
- ``sha256``: of the audio file; ``complete``.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kos_audio.core.recording.errors import RecordingError
from kos_audio.core.stamping import NS_PER_S

SCHEMA = "kos_audio.recording/1"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso8601(time_ns: int) -> str:
    """``time_ns`` (ns since the epoch) as ISO 8601 UTC with microseconds.

    E.g. ``2025-01-02T03:04:05.678901Z``; :func:`parse_iso8601` reads it back.
    """
    sec, ns = divmod(time_ns, NS_PER_S)
    when = datetime.fromtimestamp(sec, tz=timezone.utc)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{ns // 1000:06d}Z"


def parse_iso8601(text: str) -> int:
    """The time (ns since the epoch, exact to the microsecond) of a sidecar's ISO 8601 text.

    Reads what :func:`iso8601` writes, with its trailing ``Z``, on every Python
    (``datetime.fromisoformat`` reads ``Z`` only from 3.11), and explicit UTC offsets.

    Raises:
        ValueError: not an ISO 8601 date and time with a UTC offset or ``Z``.

    """
    iso = f"{text[:-1]}+00:00" if text.endswith(("Z", "z")) else text
    when = datetime.fromisoformat(iso)
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: not a sidecar time")
    since = when - _EPOCH
    return (since.days * 86_400 + since.seconds) * NS_PER_S + since.microseconds * 1000


def sha256_of(path: Path, *, block_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path``.

    Raises:
        OSError: it cannot be read.

    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


def write_sidecar(path: Path, content: dict[str, Any], *, mode: int = 0o600) -> None:
    """Write ``content`` as the sidecar ``path``, atomically (never a half-written JSON).

    The temporary file is created exclusively beside it, so nothing else is overwritten, with
    exactly the permission bits ``mode`` (set before anything is written; the default is
    owner-only, like the recording: see :class:`~kos_audio.core.recording.naming.FileAccess`).

    Raises:
        RecordingError: the directory refused the write.

    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps({"schema": SCHEMA, **content}, indent=2, sort_keys=False) + "\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode & 0o700)
        try:
            os.fchmod(fd, mode)  # exactly, whatever the umask; the file is still empty
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as err:
        raise RecordingError(f"cannot write the sidecar {str(path)!r}: {err}") from err


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar at ``path``.

    Raises:
        RecordingError: it is missing, unreadable or not a kos_audio sidecar.

    """
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RecordingError(f"cannot read the sidecar {str(path)!r}: {err}") from err
    if not isinstance(content, dict) or content.get("schema") != SCHEMA:
        raise RecordingError(f"{str(path)!r} is not a kos_audio recording sidecar")
    return content
