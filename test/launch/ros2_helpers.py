"""The real ``ros2`` command line (Jazzy launch, launch_ros, ros2cli) as a robot's user meets it.

A :class:`Session` is a command started in a session and process group of its own, as a
terminal starts a job; :meth:`Session.interrupt` is a terminal's Ctrl-C (SIGINT to the whole
group), and :meth:`Session.leftovers` lists the processes of the session still alive, read from
/proc, so a test can assert that nothing was left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from kos_testing.ros import wait_recorder_has_format, wait_until  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[2]
#: The venv this test runs in is the ROS prefix (scripts/setup.sh makes it one).
PREFIX = Path(sys.prefix)
BIN = Path(sys.executable).parent
ROS2 = BIN / "ros2"
COLCON = BIN / "colcon"


def require(tool: Path, what: str) -> None:
    """Skip when ``tool`` is not installed (setup.sh found no wheels), fail under CI=true."""
    if tool.exists():
        return
    reason = (f"{tool} is missing: {what} (scripts/setup.sh installs it from "
              "../shared/ros2-cli or KOS_AUDIO_ROS2_CLI / PyPI)")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def require_ros2() -> None:
    """The ros2 CLI, and the venv laid out as a ROS prefix for kos_audio."""
    require(ROS2, "the ros2 command line (ros2cli, launch, launch_ros)")
    marker = PREFIX / "share/ament_index/resource_index/packages/kos_audio"
    assert marker.exists(), f"{PREFIX} is not a ROS prefix: no {marker}"
    assert (PREFIX / "lib/kos_audio/mic_node").exists(), "no <prefix>/lib/kos_audio/mic_node"


def ros2_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a shell after ``source .venv/bin/activate``, in this test process's
    ROS domain (ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE are inherited)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    ament = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(PREFIX), *(p for p in ament
                                                                if p != str(PREFIX))])
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    if home is not None:  # recordings, ~/.ros/log and ~/.resonite-io live there
        env["HOME"] = str(home)
        env.pop("ROS_HOME", None)
        env.pop("ROS_LOG_DIR", None)
    env.update(extra)
    return env


def ros2(*args: str, env: Mapping[str, str] | None = None, timeout_s: float = 60.0,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ros2 *args`` to completion (stdout and stderr together in ``stdout``)."""
    return subprocess.run([str(ROS2), *args], env=dict(env or ros2_env()), cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout_s, check=False)


def session_processes(sid: int) -> list[str]:
    """Live processes (not zombies) of session ``sid``: ``"pid name"`` each."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        state, session = fields[0], int(fields[3])  # state ppid pgrp session
        if session == sid and state != "Z":
            found.append(f"{entry.name} {name}")
    return found


class Session:
    """``argv`` in a new session (its own process group), output to a file."""

    def __init__(self, argv: Iterable[str], *, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.env = dict(env or ros2_env())
        self.cwd = cwd
        # Kept open for the life of the process, which writes into it; read by name.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="session-", suffix=".log", delete=False)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Session:
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.cwd, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_output(self, text: str, timeout_s: float = 60.0) -> None:
        """Until ``text`` was printed; fails early (with the output) if the process ends."""
        wait_until(lambda: text in self.output or not self.alive(), timeout_s,
                   f"{text!r} in the output of {self.argv}:\n{self.output}")
        assert text in self.output, f"{self.argv} ended without {text!r}:\n{self.output}"

    def interrupt(self, timeout_s: float = 30.0) -> int | None:
        """Ctrl-C in the terminal: SIGINT to the process group; the exit code (None: still
        running after ``timeout_s``)."""
        assert self.proc is not None
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def leftovers(self) -> list[str]:
        """Processes of this session still alive."""
        return session_processes(self.pid)

    def kill(self) -> None:
        """Teardown: SIGKILL whatever of the session is left (the group and its stragglers)."""
        if self.proc is None:
            return
        for _ in range(2):
            for entry in self.leftovers():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.split()[0]), signal.SIGKILL)
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.wait(5)

    def assert_clean_ctrl_c(self) -> None:
        """Ctrl-C: exit 0, no traceback, no error logged, every node exiting 0 by itself (no
        escalation to SIGTERM/SIGKILL), nothing left."""
        code = self.interrupt()
        out = self.output
        assert code == 0, f"{self.argv}: exit {code} after Ctrl-C:\n{out}"
        assert "Traceback" not in out, out
        assert "[ERROR]" not in out, out
        assert "failed to terminate" not in out, out  # launch escalating to SIGTERM/SIGKILL
        # every process ros2 launch started exited 0 ("process has died" otherwise)
        assert out.count("process has finished cleanly") == out.count(
            "process started with pid"), out
        assert self.leftovers() == [], f"left running: {self.leftovers()}\n{out}"

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def launch(package_file: str, *arguments: str, env: Mapping[str, str] | None = None,
           cwd: Path | None = None) -> Session:
    """``ros2 launch kos_audio <package_file> <arguments>`` (not started yet)."""
    return Session([str(ROS2), "launch", "kos_audio", package_file, *arguments], env=env,
                   cwd=cwd)


# ------------------------------------------------------------------------- the ROS graph


def node_names(probe: Any) -> set[str]:
    """Fully qualified names of the nodes the probe discovered."""
    return {f"{ns.rstrip('/')}/{name}"
            for name, ns in probe.node.get_node_names_and_namespaces()}


def wait_for_nodes(probe: Any, names: Iterable[str], timeout_s: float = 60.0,
                   session: Session | None = None) -> None:
    """Until every fully qualified node name is in the graph (fails early if ``session``
    ended, with its output)."""
    want = set(names)

    def ready() -> bool:
        if session is not None and not session.alive():
            raise AssertionError(f"{session.argv} ended:\n{session.output}")
        return want <= node_names(probe)

    try:
        wait_until(ready, timeout_s, f"nodes {sorted(want)}")
    except AssertionError as err:
        extra = f"\n{session.output}" if session is not None else ""
        raise AssertionError(f"{err}; seen {sorted(node_names(probe))}{extra}") from None


class Endpoints:
    """One node's topics and services as the graph shows them (fully qualified names)."""

    def __init__(self, probe: Any, node: str) -> None:
        namespace, _, name = node.rpartition("/")
        namespace = namespace or "/"
        graph = probe.node
        self.publishers = {t for t, _ in
                           graph.get_publisher_names_and_types_by_node(name, namespace)}
        self.subscriptions = {t for t, _ in
                              graph.get_subscriber_names_and_types_by_node(name, namespace)}
        self.services = {s for s, _ in
                         graph.get_service_names_and_types_by_node(name, namespace)}


def wait_for_endpoints(probe: Any, node: str, *, publishes: Iterable[str] = (),
                       subscribes: Iterable[str] = (), serves: Iterable[str] = (),
                       timeout_s: float = 30.0) -> Endpoints:
    """Until ``node`` shows at least these endpoints in the graph; its endpoints."""
    want = (set(publishes), set(subscribes), set(serves))
    seen: list[Endpoints] = []

    def ready() -> bool:
        try:
            ends = Endpoints(probe, node)
        except Exception:  # not discovered yet (NodeNameNonExistentError)
            return False
        seen[:] = [ends]
        return (want[0] <= ends.publishers and want[1] <= ends.subscriptions
                and want[2] <= ends.services)

    try:
        wait_until(ready, timeout_s, f"the endpoints of {node}")
    except AssertionError:
        have = (vars(seen[0]) if seen else "node not seen")
        raise AssertionError(f"{node}: wanted publishers {want[0]}, subscriptions {want[1]}, "
                             f"services {want[2]}; have {have}") from None
    return seen[0]


def get_parameters(probe: Any, node: str, *names: str) -> dict[str, Any]:
    """Parameter values through the node's ``get_parameters`` service (rcl_interfaces), with
    their ROS type: ``{name: (type_name, value)}``."""
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    answer = probe.call(GetParameters, f"{node}/get_parameters",
                        GetParameters.Request(names=list(names)), timeout_s=30)
    types = {getattr(ParameterType, n): n.removeprefix("PARAMETER_").lower()
             for n in dir(ParameterType) if n.startswith("PARAMETER_")}
    return {name: (types[value.type], parameter_value_to_python(value))
            for name, value in zip(names, answer.values, strict=True)}


def config_values(name: str) -> dict[str, Any]:
    """``config/<name>``'s parameters, flattened to dotted names as the node declares them."""
    import yaml

    data = yaml.safe_load((ROOT / "config" / name).read_text())["/**"]["ros__parameters"]
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flat[f"{prefix}{key}"] = value
    walk("", data)
    return flat


def assert_config_loaded(probe: Any, node: str, config: str, *, overridden: Iterable[str] = ()
                         ) -> None:
    """Every parameter of ``config/<config>`` reads back from ``node`` with the file's value
    (but those the launch file sets itself)."""
    want = {k: v for k, v in config_values(config).items() if k not in set(overridden)}
    have = get_parameters(probe, node, *want)
    wrong = {k: (want[k], have[k]) for k in want if have[k][1] != want[k]}
    assert not wrong, f"{node}: parameters differing from config/{config}: {wrong}"


def wait_answering(probe: Any, node: str, timeout_s: float = 60.0,
                   session: Session | None = None) -> None:
    """Until ``node`` answers a ``get_parameters`` call.

    Proves a live node of that name: a graph entry left behind by an earlier process of the
    same name (its goodbye lost, waiting out the DDS lease) answers nothing. A request sent
    before the live node's service was matched is never delivered to it, so a new one is
    sent each second until one is answered or ``timeout_s`` passes.
    """
    from rcl_interfaces.srv import GetParameters

    client = probe.node.create_client(GetParameters, f"{node}/get_parameters")
    pending: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not any(f.done() for f in pending):
            if session is not None and not session.alive():
                raise AssertionError(f"{session.argv} ended:\n{session.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{node} did not answer get_parameters in {timeout_s} s")
            pending.append(client.call_async(GetParameters.Request(names=["use_sim_time"])))
            next_send = time.monotonic() + 1.0
            while time.monotonic() < next_send and not any(f.done() for f in pending):
                time.sleep(0.02)
    finally:
        probe.node.destroy_client(client)
