"""Safe names for recordings: never outside the output directory, never over an existing file.

A recording is named ``<prefix>_<UTC time>.<ext>`` (``_1``, ``_2``... appended when taken). The
prefix is a plain name (letters, digits, ``.``, ``_``, ``-``; no separators, no leading dot), so no
``..`` component or absolute path can be formed from it. The file is created relative to a
descriptor of the output directory with ``O_CREAT | O_EXCL | O_NOFOLLOW``: an existing file, or a
symlink planted at the chosen name (even a dangling one), makes the creation fail and the next
suffix is tried, so nothing is ever overwritten or written through a link.

Voices are personal data: files are created readable by their owner only (``0600``) and a
created output directory is ``0700`` (:data:`PRIVATE`); :data:`GROUP_READABLE` (``0640`` /
``0750``) lets the owner's group read them. The mode is set on the new, still empty file
(``fchmod`` on its descriptor, so the umask cannot widen or narrow it) before any byte is
written; an existing directory is never changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kos_audio.core.recording.errors import RecordingError
from kos_audio.core.stamping import NS_PER_S

#: A prefix: 1-100 characters, the first a letter or digit.
PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: Names taken before giving up (a directory full of same-second recordings is a bug).
MAX_SUFFIX = 1000
#: Extension of the sidecar written beside each recording.
SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True, slots=True)
class FileAccess:
    """Permission bits of what a recorder creates.

    Attributes:
        file_mode: recordings and sidecars (e.g. ``0o600``).
        dir_mode: an output directory the recorder creates (an existing one is left alone).

    """

    file_mode: int = 0o600
    dir_mode: int = 0o700

    @classmethod
    def of(cls, *, group_readable: bool) -> FileAccess:
        """:data:`GROUP_READABLE` or :data:`PRIVATE`."""
        return GROUP_READABLE if group_readable else PRIVATE

    def describe(self) -> str:
        """E.g. ``files 0600, new directories 0700``."""
        return f"files {self.file_mode:04o}, new directories {self.dir_mode:04o}"


#: Owner only: the default (recordings of voices are personal data).
PRIVATE = FileAccess(0o600, 0o700)
#: Owner read/write, group read (teams sharing recordings through a group).
GROUP_READABLE = FileAccess(0o640, 0o750)


def validate_prefix(prefix: str) -> str:
    """``prefix`` if it is a safe file-name prefix.

    Raises:
        RecordingError: it is empty, too long, starts with ``.``/``-``/``_``, or holds a path
            separator or any other character outside ``[A-Za-z0-9._-]``.

    """
    if not PREFIX_RE.fullmatch(prefix):
        raise RecordingError(
            f"prefix {prefix!r} is not a plain file name: use 1-100 of A-Z a-z 0-9 . _ - "
            "starting with a letter or digit (no '/', no '..', no absolute paths)"
        )
    return prefix


def utc_stamp(time_ns: int) -> str:
    """``time_ns`` (ns since the epoch) as a file-name friendly UTC time, to the millisecond.

    E.g. ``20250102T030405.678Z``: sorts chronologically, no ``:`` (invalid on some systems).
    """
    sec, ns = divmod(time_ns, NS_PER_S)
    when = datetime.fromtimestamp(sec, tz=timezone.utc)
    return f"{when:%Y%m%dT%H%M%S}.{ns // 1_000_000:03d}Z"


def prepare_output_dir(path: str | os.PathLike[str], *, dir_mode: int = PRIVATE.dir_mode
                       ) -> Path:
    """The absolute, symlink-resolved output directory, created (with parents) if missing.

    A directory created here gets exactly ``dir_mode`` (missing parents get the umask's
    default); an existing one keeps its mode.

    Raises:
        RecordingError: it cannot be created or is not a directory.

    """
    directory = Path(path).expanduser()
    try:
        if not directory.is_dir():
            _make_dir(directory, dir_mode)
        resolved = directory.resolve(strict=True)
    except OSError as err:
        raise RecordingError(f"cannot create output directory {str(directory)!r}: {err}") from err
    if not resolved.is_dir():
        raise RecordingError(f"output directory {str(directory)!r} is not a directory")
    return resolved


def _make_dir(directory: Path, mode: int) -> None:
    # Created with the mode (the umask can only remove bits), then set exactly while it is
    # still empty; a directory that appeared meanwhile (a race) is not ours to change.
    try:
        os.mkdir(directory, mode & 0o700)
    except FileExistsError:
        return
    except FileNotFoundError:
        directory.parent.mkdir(parents=True, exist_ok=True)  # parents: the umask's default
        try:
            os.mkdir(directory, mode & 0o700)
        except FileExistsError:
            return
    os.chmod(directory, mode)


@dataclass(frozen=True, slots=True)
class ClaimedFile:
    """A new, empty file created exclusively for a recording.

    Attributes:
        path: absolute path of the audio file.
        fd: its descriptor, open for reading and writing; the owner closes it.
        mode: its permission bits; the sidecar gets the same.

    """

    path: Path
    fd: int
    mode: int = PRIVATE.file_mode

    @property
    def sidecar_path(self) -> Path:
        """Where the JSON sidecar of this recording goes."""
        return sidecar_path(self.path)


def sidecar_path(audio_path: Path) -> Path:
    """``<stem>.json`` beside ``audio_path``."""
    return audio_path.with_suffix(SIDECAR_SUFFIX)


def claim_new_file(output_dir: Path, stem: str, extension: str, *,
                   mode: int = PRIVATE.file_mode) -> ClaimedFile:
    """Create ``<stem>.<extension>`` (or ``<stem>_N.<extension>``) in ``output_dir``.

    A name is taken only when neither the audio file nor its sidecar exists; the audio file is
    created with ``O_EXCL | O_NOFOLLOW`` relative to a descriptor of ``output_dir``, with
    exactly the permission bits ``mode`` (whatever the umask).

    Args:
        output_dir: an existing directory (see :func:`prepare_output_dir`).
        stem: a name without directory parts (``validate_prefix`` + ``utc_stamp``).
        extension: without the dot, e.g. ``"wav"``.
        mode: permission bits of the file (and later its sidecar).

    Raises:
        RecordingError: the directory cannot be written (read-only, missing, full...), the stem
            has directory parts, or no free name was found.

    """
    if "/" in stem or stem in ("", ".", "..") or "\0" in stem:
        raise RecordingError(f"recording name {stem!r} must be a plain file name")
    try:
        dir_fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise RecordingError(f"cannot open output directory {str(output_dir)!r}: {err}") from err
    try:
        for n in range(MAX_SUFFIX):
            name = f"{stem}.{extension}" if n == 0 else f"{stem}_{n}.{extension}"
            side = Path(name).with_suffix(SIDECAR_SUFFIX).name
            if _exists(side, dir_fd):
                continue
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode & 0o700, dir_fd=dir_fd)
            except FileExistsError:
                continue  # a file or a (possibly dangling) symlink: never write through it
            except OSError as err:
                raise RecordingError(
                    f"cannot create a recording in {str(output_dir)!r}: {err}") from err
            try:
                set_mode(fd, mode, output_dir / name)
            except RecordingError:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=dir_fd)  # ours and empty
                raise
            # Held while the file is written (released by close or death): recovery skips
            # files another live recorder still holds.
            with contextlib.suppress(OSError):  # some network filesystems refuse locks
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return ClaimedFile(output_dir / name, fd, mode)
    finally:
        os.close(dir_fd)
    raise RecordingError(f"no free name for {stem!r} in {str(output_dir)!r} after "
                         f"{MAX_SUFFIX} tries")


def claim_path(path: str | os.PathLike[str], *, overwrite: bool = False,
               mode: int = PRIVATE.file_mode) -> ClaimedFile:
    """Create the file at an explicit ``path`` (command-line tools).

    Its permission bits are exactly ``mode`` (an overwritten file gets them too, once emptied).

    Raises:
        RecordingError: it or its sidecar exists (and ``overwrite`` is false), or it cannot be
            created (or given ``mode``).

    """
    target = Path(path).expanduser().absolute()
    if not overwrite and sidecar_path(target).exists():
        raise RecordingError(f"{str(sidecar_path(target))!r} exists; not overwriting it")
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(target, flags, mode & 0o700)
    except FileExistsError as err:
        raise RecordingError(f"{str(target)!r} exists; not overwriting it") from err
    except OSError as err:
        raise RecordingError(f"cannot create {str(target)!r}: {err}") from err
    set_mode(fd, mode, target)
    return ClaimedFile(target, fd, mode)


def set_mode(fd: int, mode: int, path: Path) -> None:
    """Give the file open on ``fd`` exactly ``mode``, whatever the umask.

    Call before writing any data.

    Raises:
        RecordingError: refused (``fd`` is then closed).

    """
    try:
        os.fchmod(fd, mode)
    except OSError as err:
        os.close(fd)
        raise RecordingError(f"cannot set the permissions of {str(path)!r} to "
                             f"{mode:04o}: {err}") from err


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: treat as taken
    return True
