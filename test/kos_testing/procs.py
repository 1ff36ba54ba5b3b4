"""Running kos_audio executables as real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _ros_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"  # YAML-quoted, so '' and '1' stay strings
    return repr(value)


class NodeProcess:
    """A node started with ``python -m <module> --ros-args ...`` in its own process group.

    Output (stdout+stderr) goes to a temporary file readable with :attr:`output`. Stop with
    :meth:`stop` (SIGINT to the group, then SIGKILL), or use it as a context manager.
    """

    def __init__(
        self,
        module: str,
        *,
        namespace: str,
        params: Mapping[str, Any] | None = None,
        remaps: Mapping[str, str] | None = None,
        args: list[str] | None = None,
        ros_args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        cmd = [sys.executable, "-m", module, *(args or []), "--ros-args",
               "-r", f"__ns:={namespace}"]
        for key, value in (params or {}).items():
            cmd += ["-p", f"{key}:={_ros_value(value)}"]
        for src, dst in (remaps or {}).items():
            cmd += ["-r", f"{src}:={dst}"]
        cmd += ros_args or []  # verbatim, as a user types them (-p chunk_ms:=40)
        self.cmd = cmd
        self._env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        # Kept open for the life of the process, which writes into it; read by name.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="node-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeProcess:
        """Start the process (returns self)."""
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self._env, start_new_session=True)
        return self

    @property
    def output(self) -> str:
        """Everything the process printed so far."""
        return Path(self._log.name).read_text(errors="replace")

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to exit by itself; its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group."""
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGINT, wait, then SIGKILL; the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.alive():
            self.signal(signal.SIGINT)
            deadline = time.monotonic() + timeout_s
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.alive():
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
                return None
        return self.proc.returncode

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
