"""Fixtures shared by every test tier.

Imports no rclpy at module level (the protocol tests also run in a venv without ROS).
Every test process gets its own ROS_DOMAIN_ID and localhost-only discovery, and every test its
own namespace, so concurrent test runs on one machine do not hear each other.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture
def namespace() -> str:
    """A ROS namespace of this test alone."""
    return f"/t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ros(namespace: str) -> Iterator[Any]:
    """A real rclpy node in :func:`namespace`, spinning on its own thread."""
    from kos_testing.ros import RosProbe

    probe = RosProbe(namespace)
    yield probe
    probe.close()


@pytest.fixture
def make_kos_server() -> Iterator[Callable[..., Any]]:
    """Factory: ``make_kos_server(**KosSoundServer kwargs)`` -> a started KOS test server on
    loopback; every server made is stopped after the test."""
    from servers.kos_sound_server import KosSoundServer

    servers: list[KosSoundServer] = []

    def make(**kwargs: Any) -> KosSoundServer:
        server = KosSoundServer(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def resonite_socket_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new empty directory with a short path (AF_UNIX paths must stay under 108 bytes)."""
    return tmp_path_factory.mktemp("rio")


@pytest.fixture
def make_resonite_server(resonite_socket_dir: Path) -> Iterator[Callable[..., Any]]:
    """Factory: ``make_resonite_server(**ResoniteIoServer kwargs)`` -> a started Resonite IO
    test server; without ``socket_path`` it binds ``<resonite_socket_dir>/resonite-<pid>.sock``.
    Every server made is stopped after the test."""
    from servers.resonite_io_server import ResoniteIoServer

    servers: list[ResoniteIoServer] = []

    def make(**kwargs: Any) -> ResoniteIoServer:
        if "socket_path" not in kwargs:
            kwargs.setdefault("directory", resonite_socket_dir)
        server = ResoniteIoServer(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The private PulseAudio server, its environment exported into os.environ.

    Skips when PulseAudio is not installed (scripts/setup.sh installs it).
    """
    import shutil

    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed; run scripts/setup.sh")
    from kos_testing.pulse import PulseServer

    # A short path: the Unix socket path must stay under 108 bytes.
    directory = Path(tmp_path_factory.mktemp("pulse"))
    server = PulseServer(directory).start()
    yield server
    server.stop()
