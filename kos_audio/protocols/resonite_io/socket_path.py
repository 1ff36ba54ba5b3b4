"""Where the Resonite IO server's Unix domain socket is.

The Resonite IO mod names its socket ``resonite-<pid>.sock`` after the Resonite process. A client
finds it, at connect time, in this order (the first rule that applies wins, there is no
fall-through):

1. the explicit path given by the caller;
2. the environment variable ``RESONITE_IO_SOCKET`` (a full path);
3. the single live ``resonite-*.sock`` in the directory ``RESONITE_IO_SOCKET_DIR``;
4. the single live ``resonite-*.sock`` in ``~/.resonite-io/``.

"Live" means the pid in the name is a running process: a crashed Resonite leaves its socket file
behind, and connecting to it would only fail later with a less helpful error. Names whose middle
part is not a pid are kept (nothing to check).
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping

from kos_audio.errors import BackendError

__all__ = [
    "DEFAULT_SOCKET_DIR_NAME",
    "ENV_SOCKET",
    "ENV_SOCKET_DIR",
    "SOCKET_GLOB",
    "find_socket_candidates",
    "pid_is_alive",
    "resolve_socket",
]

ENV_SOCKET = "RESONITE_IO_SOCKET"
"""Environment variable holding the full socket path; beats every directory search."""

ENV_SOCKET_DIR = "RESONITE_IO_SOCKET_DIR"
"""Environment variable naming the directory to search instead of ``~/.resonite-io``."""

DEFAULT_SOCKET_DIR_NAME = ".resonite-io"
"""Directory under the home directory searched when no variable is set."""

SOCKET_GLOB = "resonite-*.sock"

_PID_NAME = re.compile(r"^resonite-(\d+)\.sock$")


def pid_is_alive(pid: int) -> bool:
    """Tell whether process ``pid`` exists (signal 0 probes without sending anything).

    A process owned by another user answers ``PermissionError``: it exists, so it counts as
    alive. Pids <= 0 name process groups, not processes, and count as dead.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        # A number too large for pid_t cannot be a process.
        return False
    return True


def find_socket_candidates(directory: pathlib.Path) -> list[pathlib.Path]:
    """Return the live ``resonite-*.sock`` entries of ``directory``, sorted by name.

    A missing or unreadable directory yields no candidates (not an error: the caller reports
    "none found" with the full search context). Entries are not required to be sockets; a
    non-socket fails at connect time with the transport's error.
    """
    try:
        entries = sorted(directory.glob(SOCKET_GLOB))
    except OSError:
        return []
    live: list[pathlib.Path] = []
    for entry in entries:
        match = _PID_NAME.match(entry.name)
        if match is not None and not pid_is_alive(int(match.group(1))):
            continue
        live.append(entry)
    return live


def _default_dir(environ: Mapping[str, str]) -> pathlib.Path:
    home = environ.get("HOME")
    base = pathlib.Path(home) if home else pathlib.Path.home()
    return base / DEFAULT_SOCKET_DIR_NAME


def resolve_socket(
    explicit: str = "", *, environ: Mapping[str, str] | None = None
) -> pathlib.Path:
    """Resolve the Resonite IO socket path; call this at connect time, never cache it.

    Args:
        explicit: A path chosen by the caller (for example a ROS parameter); ``""`` means
            "search". ``~`` is expanded.
        environ: The environment to read (``RESONITE_IO_SOCKET``, ``RESONITE_IO_SOCKET_DIR``,
            ``HOME``); ``None`` reads :data:`os.environ`. Tests pass a plain dict.

    Returns:
        An absolute path. An explicit or ``RESONITE_IO_SOCKET`` path is returned as given,
        without checking that it exists (the server may be about to start; the connect fails
        with ``UNAVAILABLE`` if it does not).

    Raises:
        BackendError: The directory search found no live socket, or several. The message names
            ``RESONITE_IO_SOCKET`` (the way to choose) and lists the candidates.

    """
    env = os.environ if environ is None else environ
    if explicit:
        return pathlib.Path(explicit).expanduser().absolute()
    from_env = env.get(ENV_SOCKET, "")
    if from_env:
        return pathlib.Path(from_env).expanduser().absolute()
    dir_from_env = env.get(ENV_SOCKET_DIR, "")
    if dir_from_env:
        directory = pathlib.Path(dir_from_env).expanduser()
        where = f"{ENV_SOCKET_DIR}={directory}"
    else:
        directory = _default_dir(env)
        where = f"{directory} ({ENV_SOCKET_DIR} not set)"
    candidates = find_socket_candidates(directory)
    if not candidates:
        raise BackendError(
            f"no live Resonite IO socket ({SOCKET_GLOB}) in {where}; is Resonite with the "
            f"Resonite IO mod running? Set {ENV_SOCKET} to the socket path to choose one"
        )
    if len(candidates) > 1:
        listed = ", ".join(str(c) for c in candidates)
        raise BackendError(
            f"{len(candidates)} live Resonite IO sockets in {where}: {listed}; set "
            f"{ENV_SOCKET} (or the socket parameter) to the one to use"
        )
    return candidates[0].absolute()
