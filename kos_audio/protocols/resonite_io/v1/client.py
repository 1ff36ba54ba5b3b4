"""A small synchronous client for the Resonite IO Microphone, Speaker and Connection services.

Transport: gRPC (HTTP/2 cleartext) over the Unix domain socket found by
:func:`~kos_audio.protocols.resonite_io.socket_path.resolve_socket`, channel target
``unix:<absolute path>``. Works with grpcio 1.51 (Ubuntu/ROS Jazzy apt) through current PyPI.

Every gRPC failure surfaces as :class:`ResoniteIoError` (a ``BackendError``) raised ``from`` the
``grpc.RpcError``, with the status code name in ``code`` so a caller can retry on
``FAILED_PRECONDITION`` (Resonite not ready) or ``UNAVAILABLE`` (no server on the socket).
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc

from kos_audio.errors import BackendError
from kos_audio.protocols._runtime import client_callables
from kos_audio.protocols.resonite_io.socket_path import resolve_socket
from kos_audio.protocols.resonite_io.v1._messages import (
    AudioFrame,
    MicrophoneAudioFrame,
    MicrophoneStreamSummary,
    PingRequest,
    PingResponse,
    SpeakerStreamRequest,
    connection_methods,
    microphone_methods,
    speaker_methods,
)

__all__ = [
    "RETRYABLE_CODES",
    "MicrophoneStreamCall",
    "ResoniteIoClient",
    "ResoniteIoError",
    "SpeakerStreamCall",
]

RETRYABLE_CODES = frozenset({"FAILED_PRECONDITION", "UNAVAILABLE"})
"""Status codes after which the same call may succeed later (Resonite starting, mod loading)."""


class ResoniteIoError(BackendError):
    """A Resonite IO call failed.

    Attributes:
        code: gRPC status code name (``"UNAVAILABLE"``, ``"FAILED_PRECONDITION"``,
            ``"CANCELLED"``, ...), or ``None`` when the failure did not come from gRPC.
        details: The server's (or gRPC's) status message, possibly empty.

    """

    def __init__(self, message: str, *, code: str | None = None, details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details

    @property
    def retryable(self) -> bool:
        """Whether ``code`` is one of :data:`RETRYABLE_CODES`."""
        return self.code in RETRYABLE_CODES


def _wrap(what: str, target: str, err: grpc.RpcError) -> ResoniteIoError:
    """Build the project error for a failed call (caller raises it ``from err``)."""
    code_obj: Any = err.code() if isinstance(err, grpc.Call) else None
    details: Any = err.details() if isinstance(err, grpc.Call) else None
    code = code_obj.name if isinstance(code_obj, grpc.StatusCode) else None
    text = details if isinstance(details, str) else ""
    return ResoniteIoError(
        f"Resonite IO {what} on {target} failed: {code or 'unknown status'}"
        + (f": {text}" if text else ""),
        code=code,
        details=text,
    )


class MicrophoneStreamCall:
    """An open ``Microphone.StreamAudio`` call; future-like, thread-safe.

    The frames iterator is consumed by a grpcio thread; the call completes when the iterator
    is exhausted (graceful half-close: Resonite keeps playing what it buffered) and the server
    answers the summary. :meth:`cancel` ends it at once and the server drops its buffer.
    """

    def __init__(self, future: Any, target: str) -> None:
        self._future = future
        self._target = target

    def cancel(self) -> bool:
        """Cancel the stream (Resonite discards buffered audio). False if already finished."""
        return bool(self._future.cancel())

    def cancelled(self) -> bool:
        """True if the call ended by a cancel (this side's or the server's)."""
        return bool(self._future.cancelled())

    def done(self) -> bool:
        """True once the call finished (summary, error or cancel)."""
        return bool(self._future.done())

    def result(self, timeout: float | None = None) -> MicrophoneStreamSummary:
        """Block until the summary arrives (``timeout`` in seconds, None = forever).

        Raises:
            TimeoutError: ``timeout`` elapsed; the call goes on.
            ResoniteIoError: the call failed or was cancelled (``code`` ``"CANCELLED"``).

        """
        try:
            summary: MicrophoneStreamSummary = self._future.result(timeout=timeout)
        except grpc.FutureTimeoutError as err:
            raise TimeoutError(f"no microphone stream summary within {timeout} s") from err
        except grpc.FutureCancelledError as err:
            raise ResoniteIoError(
                f"Resonite IO Microphone.StreamAudio on {self._target} was cancelled",
                code="CANCELLED",
            ) from err
        except grpc.RpcError as err:
            raise _wrap("Microphone.StreamAudio", self._target, err) from err
        return summary

    def code(self) -> str | None:
        """The final status code name, or None while running."""
        if not self._future.done():
            return None
        return str(self._future.code().name)

    def add_done_callback(self, fn: Callable[[MicrophoneStreamCall], None]) -> None:
        """Call ``fn(self)`` when the call finishes (on a grpcio thread, or now if done)."""
        self._future.add_done_callback(lambda _future: fn(self))


class SpeakerStreamCall:
    """An open ``Speaker.StreamAudio`` call: iterate it for :class:`AudioFrame` in order.

    Iteration blocks the calling thread until the next frame. After :meth:`cancel` (from any
    thread) the iteration simply ends; any other end of the stream raises.
    """

    def __init__(self, call: Any, target: str) -> None:
        self._call = call
        self._target = target
        self._cancelled = threading.Event()

    def __iter__(self) -> SpeakerStreamCall:
        return self

    def __next__(self) -> AudioFrame:
        """The next frame.

        Raises:
            StopIteration: the server ended the stream normally, or it was cancelled here.
            ResoniteIoError: the stream failed (``code`` tells how).

        """
        try:
            frame: AudioFrame = next(self._call)
        except grpc.RpcError as err:
            if self._cancelled.is_set():
                raise StopIteration from None
            raise _wrap("Speaker.StreamAudio", self._target, err) from err
        return frame

    def cancel(self) -> bool:
        """Stop the stream; a blocked iteration returns (StopIteration) promptly."""
        self._cancelled.set()
        return bool(self._call.cancel())

    def code(self) -> str | None:
        """The final status code name, or None while running."""
        if self._call.is_active():
            return None
        return str(self._call.code().name)


class ResoniteIoClient:
    """Client of one Resonite IO server over its Unix domain socket.

    Args:
        socket: Socket path; ``""`` resolves via ``RESONITE_IO_SOCKET``, then the
            ``resonite-<pid>.sock`` search (see ``resolve_socket``).
        timeout_s: Deadline of unary calls (``ping``), in seconds.
        environ: Environment for the resolution; None reads ``os.environ``.

    The socket is resolved when the first call connects (not in the constructor), and again
    after :meth:`close`, so a restarted Resonite with a new pid is found by close-and-retry.
    Methods are thread-safe; streams may run concurrently on the one channel.

    """

    def __init__(
        self,
        socket: str = "",
        *,
        timeout_s: float,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._socket = socket
        self._timeout_s = timeout_s
        self._environ = environ
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._path: pathlib.Path | None = None
        self._calls: dict[str, Any] = {}

    @property
    def socket_path(self) -> pathlib.Path | None:
        """The resolved socket path while connected, else None."""
        return self._path

    def connect(self) -> pathlib.Path:
        """Resolve the socket and open the channel if not open yet; returns the path.

        Opening is lazy and cheap: an unreachable socket surfaces on the first call as
        ``UNAVAILABLE``.

        Raises:
            BackendError: no socket could be resolved (none or several candidates).

        """
        with self._lock:
            if self._channel is None:
                path = resolve_socket(self._socket, environ=self._environ)
                # A private subchannel pool: without it, channels to the same path share one
                # connection process-wide, so a fresh client would inherit another's broken
                # connection or reconnect backoff instead of really connecting anew.
                channel = grpc.insecure_channel(
                    f"unix:{path}", options=[("grpc.use_local_subchannel_pool", 1)]
                )
                calls: dict[str, Any] = {}
                for prefix, methods in (
                    ("Microphone", microphone_methods()),
                    ("Speaker", speaker_methods()),
                    ("Connection", connection_methods()),
                ):
                    for name, call in client_callables(channel, methods).items():
                        calls[f"{prefix}.{name}"] = call
                self._channel, self._path, self._calls = channel, path, calls
            assert self._path is not None
            return self._path

    def _call(self, name: str) -> tuple[Any, str]:
        path = self.connect()
        with self._lock:
            return self._calls[name], f"unix:{path}"

    def ping(self, message: str = "") -> PingResponse:
        """``Connection.Ping``: the echoed message and ``server_unix_nanos``.

        Raises:
            ResoniteIoError: the call failed (e.g. ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``).
            BackendError: no socket could be resolved.

        """
        call, target = self._call("Connection.Ping")
        try:
            response: PingResponse = call(PingRequest(message=message), timeout=self._timeout_s)
        except grpc.RpcError as err:
            raise _wrap("Connection.Ping", target, err) from err
        return response

    def stream_microphone(
        self, frames: Iterator[MicrophoneAudioFrame], *, deadline_s: float | None = None
    ) -> MicrophoneStreamCall:
        """Start ``Microphone.StreamAudio`` with ``frames`` (consumed on a grpcio thread).

        The caller paces ``frames`` to real time (see ``frames.microphone_frames``); the
        server never pushes back. ``deadline_s`` bounds the whole call (None = no deadline).
        Errors surface from :meth:`MicrophoneStreamCall.result`.

        Raises:
            BackendError: no socket could be resolved.

        """
        call, target = self._call("Microphone.StreamAudio")
        return MicrophoneStreamCall(call.future(frames, timeout=deadline_s), target)

    def stream_speaker(self, *, deadline_s: float | None = None) -> SpeakerStreamCall:
        """Start ``Speaker.StreamAudio``; iterate the result for frames, ``cancel()`` to stop.

        Raises:
            BackendError: no socket could be resolved.

        """
        call, target = self._call("Speaker.StreamAudio")
        return SpeakerStreamCall(call(SpeakerStreamRequest(), timeout=deadline_s), target)

    def close(self) -> None:
        """Close the channel (open calls are cancelled); the next call resolves again."""
        with self._lock:
            channel, self._channel, self._path, self._calls = self._channel, None, None, {}
        if channel is not None:
            channel.close()

    def __enter__(self) -> ResoniteIoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
