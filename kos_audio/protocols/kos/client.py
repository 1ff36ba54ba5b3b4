"""A small blocking client of ``kos.sound.SoundService`` (gRPC over insecure TCP).

Every gRPC failure surfaces as :class:`~kos_audio.errors.BackendError` raised ``from`` the
``grpc.RpcError``, with the status code name and details in the message. Errors that the server
reports *inside* a response (``error`` fields, ``ActionResponse.success == False``) are
returned as data: deciding what they mean is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import grpc

from kos_audio.errors import BackendError
from kos_audio.protocols._runtime import client_callables
from kos_audio.protocols.kos.messages import (
    SOUND_METHODS,
    ActionResponse,
    AudioConfig,
    Empty,
    GetAudioInfoResponse,
    PlayAudioRequest,
    RecordAudioRequest,
    RecordAudioResponse,
)

__all__ = ["KosSoundClient", "PlayAudioCall", "RecordAudioCall"]

# Why these channel options:
# - a KOS server restarts with the robot's services; gRPC's default reconnect backoff grows to
#   120 s, far too long for a microphone. Connecting to a LAN/loopback peer is cheap, so retry
#   often (0.1 s first, at most 1 s apart).
# - robots often have http(s)_proxy set for package installs; gRPC honours it and would send
#   the robot-local KOS traffic to the proxy.
_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_http_proxy", 0),
)

_UINT32_MAX = 2**32 - 1


def _closed_error(what: str, err: ValueError) -> BackendError:
    """The BackendError for grpcio's ValueError on invoking a closed channel."""
    return BackendError(f"{what} failed: the client is closed ({err})")


def _backend_error(what: str, err: grpc.RpcError) -> BackendError:
    """A BackendError naming the RPC, the status code name and the details of ``err``."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else None
    details = details_fn() if callable(details_fn) else str(err)
    code_name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return BackendError(f"{what} failed: {code_name}: {details}")


class RecordAudioCall(Iterator[RecordAudioResponse]):
    """The response stream of one ``RecordAudio`` call.

    Iterate it (one thread) to get :class:`RecordAudioResponse` chunks in arrival order; it
    ends when the server ends the stream (duration reached, ``StopRecording``, or after a
    response carrying ``error``), or after :meth:`cancel`.

    Raises (from ``next``):
        BackendError: the call failed (server down or restarted, stream aborted, channel
            closed). A cancel by this client is not an error: iteration just ends.
    """

    def __init__(self, call: Any, what: str) -> None:
        self._call = call
        self._what = what
        self._cancelled_here = False

    def __iter__(self) -> RecordAudioCall:
        return self

    def __next__(self) -> RecordAudioResponse:
        try:
            response: RecordAudioResponse = next(self._call)
        except grpc.RpcError as err:
            if self._cancelled_here and err.code() is grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise _backend_error(self._what, err) from err
        return response

    def cancel(self) -> bool:
        """End the stream from the client side. Any thread; the iterating thread then stops.

        Returns:
            False if the call had already terminated, else True.

        """
        self._cancelled_here = True
        return bool(self._call.cancel())

    def is_active(self) -> bool:
        """Whether the call is still running."""
        return bool(self._call.is_active())


class PlayAudioCall:
    """The pending ``ActionResponse`` of one ``PlayAudio`` call.

    The request iterator given to :meth:`KosSoundClient.play_audio` is consumed on a
    gRPC-owned thread, so it may block (e.g. to pace audio to real time). The server may answer
    before the iterator is exhausted (an early ``ActionResponse``); :meth:`done` then turns true
    and gRPC stops pulling requests.
    """

    def __init__(self, future: Any, what: str) -> None:
        self._future = future
        self._what = what

    def result(self, timeout_s: float | None = None) -> ActionResponse:
        """Wait for the server's answer, at most ``timeout_s`` seconds (None: forever).

        Raises:
            TimeoutError: no answer within ``timeout_s``; the call keeps running.
            BackendError: the call failed or was cancelled.

        """
        try:
            response: ActionResponse = self._future.result(timeout=timeout_s)
        except grpc.FutureTimeoutError as err:
            raise TimeoutError(f"{self._what}: no answer within {timeout_s} s") from err
        except grpc.FutureCancelledError as err:
            raise BackendError(f"{self._what} failed: CANCELLED: cancelled by the client") from err
        except grpc.RpcError as err:
            raise _backend_error(self._what, err) from err
        return response

    def done(self) -> bool:
        """Whether the call has finished (answered, failed or cancelled)."""
        return bool(self._future.done())

    def cancel(self) -> bool:
        """Cancel the call (any thread): the server sees CANCELLED, gRPC stops the iterator.

        Returns:
            False if the call had already finished, else True.

        """
        return bool(self._future.cancel())

    def add_done_callback(self, fn: Callable[[PlayAudioCall], None]) -> None:
        """Call ``fn(self)`` once the call finishes, on a gRPC thread (or now if finished).

        ``fn`` must be quick and must not raise: it runs on gRPC's internal thread.
        """
        self._future.add_done_callback(lambda _future: fn(self))


class KosSoundClient:
    """Blocking client of one KOS ``SoundService`` at ``address`` (``"host:port"``).

    The channel connects lazily and reconnects by itself (at most 1 s between attempts);
    calls do not wait for a connection: while the server is unreachable they fail at once
    with :class:`BackendError` (``UNAVAILABLE``), so callers own the retry policy.

    Args:
        address: ``"host:port"``, e.g. ``"127.0.0.1:50051"``.
        timeout_s: deadline of the unary calls (``get_audio_info``, ``stop_recording``), in
            seconds. Streaming calls have no deadline: they last as long as the audio.

    Thread-safety: all methods may be called from any thread, concurrently.

    """

    def __init__(self, address: str, *, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._address = address
        self._timeout_s = float(timeout_s)
        self._channel = grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)
        calls = client_callables(self._channel, SOUND_METHODS)
        # The kinds follow sound.proto (test_method_table checks them).
        self._get_audio_info = cast(
            "grpc.UnaryUnaryMultiCallable[Empty, GetAudioInfoResponse]", calls["GetAudioInfo"]
        )
        self._stop_recording = cast(
            "grpc.UnaryUnaryMultiCallable[Empty, ActionResponse]", calls["StopRecording"]
        )
        self._record_audio = cast(
            "grpc.UnaryStreamMultiCallable[RecordAudioRequest, RecordAudioResponse]",
            calls["RecordAudio"],
        )
        self._play_audio = cast(
            "grpc.StreamUnaryMultiCallable[PlayAudioRequest, ActionResponse]", calls["PlayAudio"]
        )

    @property
    def address(self) -> str:
        """The ``host:port`` this client talks to."""
        return self._address

    def _what(self, method: str) -> str:
        return f"KOS {method} at {self._address}"

    def get_audio_info(self) -> GetAudioInfoResponse:
        """The server's playback and recording capabilities.

        Raises:
            BackendError: the call failed, exceeded ``timeout_s``, or the client is closed.

        """
        try:
            response: GetAudioInfoResponse = self._get_audio_info(Empty(), timeout=self._timeout_s)
        except grpc.RpcError as err:
            raise _backend_error(self._what("GetAudioInfo"), err) from err
        except ValueError as err:
            raise _closed_error(self._what("GetAudioInfo"), err) from err
        return response

    def stop_recording(self) -> ActionResponse:
        """Ask the server to end its active ``RecordAudio`` streams.

        Raises:
            BackendError: the call failed, exceeded ``timeout_s``, or the client is closed.

        """
        try:
            response: ActionResponse = self._stop_recording(Empty(), timeout=self._timeout_s)
        except grpc.RpcError as err:
            raise _backend_error(self._what("StopRecording"), err) from err
        except ValueError as err:
            raise _closed_error(self._what("StopRecording"), err) from err
        return response

    def record_audio(self, config: AudioConfig, duration_ms: int = 0) -> RecordAudioCall:
        """Start recording in ``config``; ``duration_ms`` 0 records until stopped or cancelled.

        Returns at once; failures (including an unreachable server) surface when iterating.

        Raises:
            ValueError: ``duration_ms`` is not a uint32.
            BackendError: the client is closed.

        """
        if not 0 <= duration_ms <= _UINT32_MAX:
            raise ValueError(f"duration_ms must be in 0..{_UINT32_MAX}, got {duration_ms}")
        request = RecordAudioRequest(config=config, duration_ms=duration_ms)
        what = self._what("RecordAudio")
        try:
            call = self._record_audio(request)
        except ValueError as err:
            raise _closed_error(what, err) from err
        return RecordAudioCall(call, what)

    def play_audio(self, requests: Iterable[PlayAudioRequest]) -> PlayAudioCall:
        """Stream ``requests`` to the speaker; the first must carry ``config``.

        ``requests`` is consumed on a gRPC thread as the transport accepts messages; it may
        block to pace the audio. Returns at once with the pending answer.

        Raises:
            BackendError: the client is closed (call failures surface from ``result``).

        """
        what = self._what("PlayAudio")
        try:
            future = self._play_audio.future(iter(requests))
        except ValueError as err:
            raise _closed_error(what, err) from err
        return PlayAudioCall(future, what)

    def close(self) -> None:
        """Close the channel; active calls end with CANCELLED. Idempotent."""
        self._channel.close()

    def __enter__(self) -> KosSoundClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
