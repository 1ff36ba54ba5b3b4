"""Fixtures for the Resonite IO wire-layer tests (imported by ``conftest.py`` with one line).

- ``resonite_socket_dir``: a fresh short directory for sockets (AF_UNIX paths must stay under
  108 bytes, so this is a ``tmp_path_factory`` directory, not the long per-test ``tmp_path``).
- ``make_resonite_server(**kwargs)``: a started :class:`ResoniteIoServer` bound in
  ``resonite_socket_dir`` by default (``resonite-<this pid>.sock``), stopped after the test.
- ``resonite_server``: one such server with defaults.
- ``resonite_client``: a :class:`ResoniteIoClient` on ``resonite_server``'s explicit path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# test/servers is a plain directory package; conftest.py normally put test/ on sys.path already.
_TEST_ROOT = str(Path(__file__).resolve().parents[1])
if _TEST_ROOT not in sys.path:
    sys.path.insert(0, _TEST_ROOT)

from servers.resonite_io_server import ResoniteIoServer  # noqa: E402

from kos_audio.protocols.resonite_io.v1 import ResoniteIoClient  # noqa: E402

__all__ = [
    "RESONITE_CLIENT_TIMEOUT_S",
    "resonite_client",
    "resonite_server",
]

# Unary deadline of test clients: generous for a loaded 2-core CI, still fails fast on a hang.
RESONITE_CLIENT_TIMEOUT_S = 5.0


@pytest.fixture
def resonite_server(make_resonite_server: Callable[..., ResoniteIoServer]) -> ResoniteIoServer:
    """A started :class:`ResoniteIoServer` (paced speaker, this process's pid in the name)."""
    return make_resonite_server()


@pytest.fixture
def resonite_client(resonite_server: ResoniteIoServer) -> Iterator[ResoniteIoClient]:
    """A :class:`ResoniteIoClient` on ``resonite_server``'s socket, closed after the test."""
    client = ResoniteIoClient(
        str(resonite_server.socket_path), timeout_s=RESONITE_CLIENT_TIMEOUT_S
    )
    yield client
    client.close()
