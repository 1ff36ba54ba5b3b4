"""Fixtures for the wire-layer tests: real gRPC servers on loopback, no ROS.

Nothing here imports rclpy, so ``test/protocols`` also runs in the old grpcio/protobuf venv of
``scripts/test_grpc_matrix.sh``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The test servers live in test/servers (a plain package, not installed). pytest's default
# import mode only puts this directory on sys.path, so add test/ itself; harmless if a root
# conftest already did.
_TEST_ROOT = str(Path(__file__).resolve().parents[1])
if _TEST_ROOT not in sys.path:
    sys.path.insert(0, _TEST_ROOT)

from servers.kos_sound_server import KosSoundServer  # noqa: E402

from kos_audio.protocols.kos import KosSoundClient  # noqa: E402

# Unary deadline of test clients: generous for a loaded 2-core CI, still fails fast on a hang.
CLIENT_TIMEOUT_S = 5.0


@pytest.fixture
def kos_server(make_kos_server: Callable[..., KosSoundServer]) -> KosSoundServer:
    """A started :class:`KosSoundServer`, default capabilities (16/48 kHz, 16/32 bit, 1-2 ch)."""
    return make_kos_server()


@pytest.fixture
def kos_client(kos_server: KosSoundServer) -> Iterator[KosSoundClient]:
    """A :class:`KosSoundClient` connected to ``kos_server``, closed after the test."""
    client = KosSoundClient(kos_server.address, timeout_s=CLIENT_TIMEOUT_S)
    yield client
    client.close()


from resonite_fixtures import *  # noqa: E402,F403  (Resonite IO fixtures)
