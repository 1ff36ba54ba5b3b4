"""Fixtures shared by every test tier.

Imports no rclpy at module level (the protocol tests also run in a venv without ROS).
Every test process gets its own ROS_DOMAIN_ID and localhost-only discovery, and every test its
own namespace, so concurrent test runs on one machine do not hear each other.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
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
