"""Resonite IO (the Resonite mod's gRPC API over a Unix domain socket): kos_audio's wire layer.

- :mod:`.socket_path`: where the server's socket is (:func:`resolve_socket`); no gRPC import.
- :mod:`.v1`: ``resonite_io.v1`` messages, audio framing and :class:`~.v1.ResoniteIoClient`
  (imports grpcio and protobuf).

The ``.proto`` files in ``v1/`` are this project's own, wire-compatible with the published
``resonite_io.v1`` field list; ``scripts/gen_protos.py`` turns them into the shipped ``.desc``.
"""

from kos_audio.protocols.resonite_io.socket_path import (
    ENV_SOCKET,
    ENV_SOCKET_DIR,
    find_socket_candidates,
    pid_is_alive,
    resolve_socket,
)

__all__ = [
    "ENV_SOCKET",
    "ENV_SOCKET_DIR",
    "find_socket_candidates",
    "pid_is_alive",
    "resolve_socket",
]
