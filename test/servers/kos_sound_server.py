"""A real gRPC ``kos.sound.SoundService`` server for tests, on 127.0.0.1 with an ephemeral port.

It behaves like a KOS robot as far as a client can tell:

- ``GetAudioInfo`` answers the configured :class:`Capabilities` of each direction.
- ``RecordAudio`` serves :func:`record_signal` in the requested config (interleaved
  little-endian signed integers, 16/24/32 bit) in chunks of ``record_chunk_ms`` (37 ms by
  default, deliberately not 20 ms), paced to real time: chunk k is sent once its last frame
  "was captured", at ``start + (k + 1) * chunk``. ``duration_ms`` 0 records until
  ``StopRecording``, a client cancel or :meth:`KosSoundServer.stop`.
- ``PlayAudio`` records every stream (config, concatenated bytes, per-message arrival times)
  and answers ``success=True`` once the client half-closes.
- ``StopRecording`` ends all active ``RecordAudio`` streams (status OK) and answers success.
- A missing config (first PlayAudio message, or RecordAudio) answers ``INVALID_ARGUMENT``, as
  the reference server does; so does a config outside the capabilities (a choice of this
  server: upstream does not document it).

With a ``room`` (:class:`~servers.kos_room.Room`), ``RecordAudio`` (16-bit at the room's
rate) serves what the robot's microphone hears instead: the user voice plus the echo of what
``PlayAudio`` received, delayed and attenuated.

Fault injection via :attr:`KosSoundServer.faults` (a :class:`Faults`; set fields before the call
they should affect): error fields inside responses, ``success=False``, an early PlayAudio
answer, an aborted stream, a dropped connection (the whole server stops abruptly).
:meth:`KosSoundServer.stop` / :meth:`KosSoundServer.restart` keep the port.

Thread-safety: the public methods may be called from any thread; the recorded data is guarded by
one lock and handed out as frozen snapshots.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np

from kos_audio.protocols._runtime import generic_handler
from kos_audio.protocols.kos import (
    SOUND_METHODS,
    SOUND_SERVICE,
    ActionResponse,
    AudioCapabilities,
    Error,
    ErrorCode,
    GetAudioInfoResponse,
    PlayAudioRequest,
    RecordAudioRequest,
    RecordAudioResponse,
)
from servers.kos_room import Room

__all__ = [
    "Capabilities",
    "Faults",
    "KosSoundServer",
    "PlayStreamRecord",
    "RecordStreamRecord",
    "record_signal",
]

# Bit depths whose PCM layout this server knows (bytes per sample = bit_depth / 8).
SUPPORTED_BIT_DEPTHS = (16, 24, 32)

# Odd multipliers make consecutive samples differ in every byte, so an offset, truncation or
# byte-order mistake anywhere in a client changes the bytes it sees (a slow ramp would not).
_FRAME_STEP = 2_654_435_761
_CHANNEL_STEP = 40_503
_OFFSET = 12_345


def record_signal(
    sample_rate: int, bit_depth: int, channels: int, start_frame: int, frames: int
) -> bytes:
    """The known microphone signal: ``frames`` frames from absolute frame ``start_frame``.

    Sample ``(n, c)`` is ``(n * 2654435761 + c * 40503 + 12345) mod 2**bit_depth`` read as a
    two's complement signed integer; the result is interleaved little-endian, ``bit_depth / 8``
    bytes a sample. ``sample_rate`` does not change the values (kept for a uniform signature).

    Raises:
        ValueError: ``bit_depth`` is not 16, 24 or 32.
    """
    del sample_rate
    if bit_depth not in SUPPORTED_BIT_DEPTHS:
        raise ValueError(f"unsupported bit depth {bit_depth}")
    width = bit_depth // 8
    n = np.arange(start_frame, start_frame + frames, dtype=np.uint64)[:, None]
    c = np.arange(channels, dtype=np.uint64)[None, :]
    # uint64 arithmetic wraps mod 2**64, and 2**bit_depth divides 2**64.
    values = n * np.uint64(_FRAME_STEP) + c * np.uint64(_CHANNEL_STEP) + np.uint64(_OFFSET)
    values &= np.uint64((1 << bit_depth) - 1)
    # The low `width` bytes of a little-endian uint64 are the two's complement LE sample.
    as_bytes = values.reshape(-1).astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width]
    return as_bytes.tobytes()


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What one direction supports (``AudioCapabilities`` on the wire)."""

    sample_rates: tuple[int, ...] = (16_000, 48_000)
    bit_depths: tuple[int, ...] = (16, 32)
    channels: tuple[int, ...] = (1, 2)
    available: bool = True

    def to_message(self) -> AudioCapabilities:
        """The wire message."""
        return AudioCapabilities(
            sample_rates=self.sample_rates,
            bit_depths=self.bit_depths,
            channels=self.channels,
            available=self.available,
        )

    def supports(self, sample_rate: int, bit_depth: int, channels: int) -> bool:
        """Whether this direction can do that config."""
        return (
            sample_rate in self.sample_rates
            and bit_depth in self.bit_depths
            and channels in self.channels
        )


@dataclasses.dataclass
class Faults:
    """Fault injection knobs, read when a call starts. ``None`` means off.

    Error tuples are ``(ErrorCode, message)``; status tuples ``(grpc.StatusCode, details)``.
    """

    info_error: tuple[ErrorCode, str] | None = None
    """``GetAudioInfoResponse.error`` is set (capabilities are still filled in)."""
    record_error_after_chunks: int | None = None
    """After N chunks, send ``RecordAudioResponse(error=record_error)`` and end with OK."""
    record_error: tuple[ErrorCode, str] = (ErrorCode.HARDWARE_FAILURE, "microphone unplugged")
    record_abort_after_chunks: int | None = None
    """After N chunks, abort the RecordAudio call with ``abort_status``."""
    record_drop_after_chunks: int | None = None
    """After N chunks, the whole server stops at once (a crash): connections are dropped."""
    play_early_after_messages: int | None = None
    """Answer ``success=True`` after N PlayAudio messages without reading the rest."""
    play_abort_after_messages: int | None = None
    """Abort the PlayAudio call with ``abort_status`` after N messages."""
    play_failure: tuple[ErrorCode, str] | None = None
    """Read the whole PlayAudio stream, then answer ``success=False`` with this error."""
    stop_recording_failure: tuple[ErrorCode, str] | None = None
    """StopRecording answers ``success=False`` with this error and stops nothing."""
    abort_status: tuple[grpc.StatusCode, str] = (grpc.StatusCode.INTERNAL, "injected abort")


@dataclasses.dataclass(frozen=True)
class PlayStreamRecord:
    """What the server saw on one PlayAudio call (a snapshot).

    Attributes:
        config: ``(sample_rate, bit_depth, channels)`` of the first message, None if it had none.
        first_message_audio: ``audio_data`` of the first message (pykos sends none there).
        data: All ``audio_data`` of the stream concatenated, first message included.
        message_count: Messages received.
        arrival_s: ``time.monotonic()`` at each message's arrival.
        outcome: ``open``, ``answered``, ``early``, ``failed`` (success=False), ``rejected``
            (INVALID_ARGUMENT), ``aborted`` (fault), or ``cancelled`` (client gone).
    """

    config: tuple[int, int, int] | None
    first_message_audio: bytes
    data: bytes
    message_count: int
    arrival_s: tuple[float, ...]
    outcome: str


@dataclasses.dataclass(frozen=True)
class RecordStreamRecord:
    """What the server sent on one RecordAudio call (a snapshot).

    Attributes:
        config: ``(sample_rate, bit_depth, channels)``, None if the request had none.
        duration_ms: As requested.
        data: All audio bytes handed to gRPC, in order.
        chunk_sizes: Bytes per sent chunk.
        outcome: ``open``, ``completed`` (duration reached), ``stopped`` (StopRecording),
            ``cancelled`` (client cancel or server stop), ``error`` (error response sent),
            ``aborted``, ``dropped`` (fault) or ``rejected`` (INVALID_ARGUMENT).
        started_s: ``time.monotonic()`` of the recording's frame 0 (0.0 if it never started).
    """

    config: tuple[int, int, int] | None
    duration_ms: int
    data: bytes
    chunk_sizes: tuple[int, ...]
    outcome: str
    started_s: float = 0.0


@dataclasses.dataclass
class _PlayState:
    config: tuple[int, int, int] | None = None
    first_message_audio: bytes = b""
    data: bytearray = dataclasses.field(default_factory=bytearray)
    message_count: int = 0
    arrival_s: list[float] = dataclasses.field(default_factory=list)
    outcome: str = "open"

    def snapshot(self) -> PlayStreamRecord:
        return PlayStreamRecord(
            self.config,
            self.first_message_audio,
            bytes(self.data),
            self.message_count,
            tuple(self.arrival_s),
            self.outcome,
        )


@dataclasses.dataclass
class _RecordState:
    config: tuple[int, int, int] | None
    duration_ms: int
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    data: bytearray = dataclasses.field(default_factory=bytearray)
    chunk_sizes: list[int] = dataclasses.field(default_factory=list)
    outcome: str = "open"
    started_s: float = 0.0

    def snapshot(self) -> RecordStreamRecord:
        return RecordStreamRecord(
            self.config, self.duration_ms, bytes(self.data), tuple(self.chunk_sizes), self.outcome,
            self.started_s,
        )


def _config_tuple(config: Any) -> tuple[int, int, int]:
    return (int(config.sample_rate), int(config.bit_depth), int(config.channels))


class KosSoundServer:
    """A KOS SoundService test server bound to ``127.0.0.1:<ephemeral port>``.

    Args:
        playback: Capabilities reported, and accepted by PlayAudio.
        recording: Capabilities reported, and accepted by RecordAudio.
        record_chunk_ms: Chunk length of RecordAudio, milliseconds (frames are rounded).
        realtime: Pace RecordAudio to real time (False: send as fast as possible).
        max_workers: Handler threads; each open stream holds one.
        room: an echo path from PlayAudio to RecordAudio (see the module docstring).
    """

    def __init__(
        self,
        *,
        playback: Capabilities = Capabilities(),
        recording: Capabilities = Capabilities(),
        record_chunk_ms: float = 37.0,
        realtime: bool = True,
        max_workers: int = 16,
        room: Room | None = None,
    ) -> None:
        self.room = room
        if room is not None:
            room.start(time.monotonic())
        self.playback = playback
        self.recording = recording
        self.record_chunk_ms = record_chunk_ms
        self.realtime = realtime
        self.faults = Faults()
        self._max_workers = max_workers
        self._lock = threading.Condition()
        self._plays: list[_PlayState] = []
        self._records: list[_RecordState] = []
        self._stop_recording_calls = 0
        # Serialises start/stop, which may run on a handler's helper thread (the drop fault).
        self._lifecycle = threading.Lock()
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The bound TCP port (0 before the first :meth:`start`)."""
        return self._port

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, for :class:`~kos_audio.protocols.kos.KosSoundClient`."""
        return f"127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    def start(self) -> None:
        """Serve; the first start picks an ephemeral port, later ones reuse it.

        Waits for a :meth:`stop` in progress on another thread (e.g. the drop fault) first.

        Raises:
            RuntimeError: already running, or the port could not be bound (on a restart,
                another process may have taken it meanwhile).
        """
        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("server already running")
            self._server, self._executor, self._port = self._serve(self._port)

    def _serve(self, port: int) -> tuple[grpc.Server, futures.ThreadPoolExecutor, int]:
        executor = futures.ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="kos-sound-test"
        )
        # No SO_REUSEPORT: with it a second server could silently share our port (or we theirs)
        # and tests would talk to the wrong one. SO_REUSEADDR (gRPC's default) still lets a
        # restart rebind while old connections sit in TIME_WAIT.
        server = grpc.server(
            executor, handlers=(self._handler(),), options=(("grpc.so_reuseport", 0),)
        )
        try:
            bound = server.add_insecure_port(f"127.0.0.1:{port}")
        except RuntimeError as err:  # grpcio >= 1.53 raises, older versions return 0
            executor.shutdown(wait=False)
            raise RuntimeError(f"cannot bind 127.0.0.1:{port}: {err}") from err
        if bound == 0:
            executor.shutdown(wait=False)
            raise RuntimeError(f"cannot bind 127.0.0.1:{port}")
        server.start()
        return server, executor, bound

    def stop(self) -> None:
        """Stop at once (no grace): open calls are cancelled, as in a crash. Idempotent.

        Returns once the port is free again.
        """
        with self._lifecycle:
            server, executor = self._server, self._executor
            if server is None:
                return
            # Cancelling the calls (not ending them with OK) is what a crash looks like to a
            # client; their termination callbacks wake the pacing waits.
            server.stop(None).wait(5.0)
            if executor is not None:
                # wait=False: handler threads end on their own once their call is cancelled.
                executor.shutdown(wait=False, cancel_futures=True)
            self._server, self._executor = None, None

    def restart(self) -> None:
        """:meth:`stop` then :meth:`start` on the same port; recorded data is kept."""
        self.stop()
        self.start()

    def __enter__(self) -> KosSoundServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ observations

    def play_streams(self) -> list[PlayStreamRecord]:
        """Snapshots of every PlayAudio call so far, in arrival order."""
        with self._lock:
            return [state.snapshot() for state in self._plays]

    def record_streams(self) -> list[RecordStreamRecord]:
        """Snapshots of every RecordAudio call so far, in arrival order."""
        with self._lock:
            return [state.snapshot() for state in self._records]

    @property
    def stop_recording_calls(self) -> int:
        """How many StopRecording calls arrived."""
        with self._lock:
            return self._stop_recording_calls

    def wait_play_outcome(self, index: int, timeout_s: float) -> PlayStreamRecord:
        """Wait until PlayAudio call ``index`` is no longer ``open``; return its snapshot.

        Raises:
            TimeoutError: not within ``timeout_s``.
        """
        return self._wait(lambda: self._plays, index, timeout_s)  # type: ignore[return-value]

    def wait_record_outcome(self, index: int, timeout_s: float) -> RecordStreamRecord:
        """Wait until RecordAudio call ``index`` is no longer ``open``; return its snapshot.

        Raises:
            TimeoutError: not within ``timeout_s``.
        """
        return self._wait(lambda: self._records, index, timeout_s)  # type: ignore[return-value]

    def _wait(self, states: Callable[[], list[Any]], index: int, timeout_s: float) -> Any:
        with self._lock:
            done = self._lock.wait_for(
                lambda: len(states()) > index and states()[index].outcome != "open", timeout_s
            )
            if not done:
                raise TimeoutError(f"stream {index} still open after {timeout_s} s")
            return states()[index].snapshot()

    def _finish(self, state: _PlayState | _RecordState, outcome: str) -> None:
        with self._lock:
            if state.outcome == "open":
                state.outcome = outcome
            self._lock.notify_all()

    # ------------------------------------------------------------------ handlers

    def _handler(self) -> grpc.GenericRpcHandler:
        return generic_handler(
            SOUND_SERVICE,
            SOUND_METHODS,
            {
                "GetAudioInfo": self._get_audio_info,
                "PlayAudio": self._play_audio,
                "RecordAudio": self._record_audio,
                "StopRecording": self._stop_recording,
            },
        )

    def _get_audio_info(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = GetAudioInfoResponse(
            playback=self.playback.to_message(), recording=self.recording.to_message()
        )
        fault = self.faults.info_error
        if fault is not None:
            response.error.CopyFrom(Error(code=fault[0], message=fault[1]))
        return response

    def _stop_recording(self, request: Any, context: grpc.ServicerContext) -> Any:
        fault = self.faults.stop_recording_failure
        with self._lock:
            self._stop_recording_calls += 1
            if fault is None:
                for record in self._records:
                    record.stop.set()
        if fault is not None:
            return ActionResponse(success=False, error=Error(code=fault[0], message=fault[1]))
        return ActionResponse(success=True)

    def _play_audio(
        self, requests: Iterator[PlayAudioRequest], context: grpc.ServicerContext
    ) -> Any:
        faults = dataclasses.replace(self.faults)
        state = _PlayState()
        with self._lock:
            self._plays.append(state)
        # Catch-all for a call that ends while the handler is not looking (every other path
        # sets its outcome first, and _finish keeps the first one).
        context.add_callback(lambda: self._finish(state, "cancelled"))
        try:
            for request in requests:
                if self.room is not None:
                    arrival = self.room.play(request.audio_data, state.config)
                else:
                    arrival = time.monotonic()
                with self._lock:
                    state.arrival_s.append(arrival)
                    state.message_count += 1
                    state.data += request.audio_data
                    first = state.message_count == 1
                    if first:
                        state.first_message_audio = bytes(request.audio_data)
                if first:
                    self._check_play_config(request, state, context)
                if state.message_count == faults.play_abort_after_messages:
                    self._finish(state, "aborted")
                    context.abort(*faults.abort_status)
                if state.message_count == faults.play_early_after_messages:
                    self._finish(state, "early")
                    return ActionResponse(success=True)
        except grpc.RpcError:
            # The request iterator raises when the client cancels or disconnects.
            self._finish(state, "cancelled")
            return ActionResponse(success=False)
        if not context.is_active():
            self._finish(state, "cancelled")
            return ActionResponse(success=False)
        if faults.play_failure is not None:
            self._finish(state, "failed")
            code, message = faults.play_failure
            return ActionResponse(success=False, error=Error(code=code, message=message))
        self._finish(state, "answered")
        return ActionResponse(success=True)

    def _check_play_config(
        self, request: Any, state: _PlayState, context: grpc.ServicerContext
    ) -> None:
        if not request.HasField("config"):
            self._finish(state, "rejected")
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first PlayAudio message must carry config"
            )
        config = _config_tuple(request.config)
        with self._lock:
            state.config = config
        if not self.playback.supports(*config) or config[1] not in SUPPORTED_BIT_DEPTHS:
            self._finish(state, "rejected")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported playback {config}")

    def _record_audio(
        self, request: RecordAudioRequest, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        faults = dataclasses.replace(self.faults)
        config = _config_tuple(request.config) if request.HasField("config") else None
        state = _RecordState(config=config, duration_ms=int(request.duration_ms))
        with self._lock:
            self._records.append(state)
        if config is None:
            self._finish(state, "rejected")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "RecordAudio needs config")
        assert config is not None  # context.abort raises; this tells the type checker
        if not self.recording.supports(*config) or config[1] not in SUPPORTED_BIT_DEPTHS:
            self._finish(state, "rejected")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported recording {config}")
        # Wake the pacing wait when the client cancels or the server stops. The outcome is also
        # set here because gRPC stops pulling a cancelled stream's generator, which may then
        # never run again.
        terminated = threading.Event()
        context.add_callback(terminated.set)
        context.add_callback(state.stop.set)
        context.add_callback(lambda: self._finish(state, "cancelled"))
        yield from self._record_chunks(state, config, faults, context, terminated)

    def _record_chunks(
        self,
        state: _RecordState,
        config: tuple[int, int, int],
        faults: Faults,
        context: grpc.ServicerContext,
        terminated: threading.Event,
    ) -> Iterator[Any]:
        sample_rate, bit_depth, channels = config
        chunk_frames = max(1, round(sample_rate * self.record_chunk_ms / 1000.0))
        total_frames = sample_rate * state.duration_ms // 1000 if state.duration_ms else None
        start = time.monotonic()
        with self._lock:
            state.started_s = start
        room = self.room if self.room is not None and bit_depth == 16 \
            and sample_rate == self.room.rate else None
        room_offset = room.frame_at(start) if room is not None else 0
        position = 0
        chunk_index = 0
        while total_frames is None or position < total_frames:
            if chunk_index == faults.record_error_after_chunks:
                self._finish(state, "error")
                code, message = faults.record_error
                yield RecordAudioResponse(error=Error(code=code, message=message))
                return
            if chunk_index == faults.record_abort_after_chunks:
                self._finish(state, "aborted")
                context.abort(*faults.abort_status)
            if chunk_index == faults.record_drop_after_chunks:
                self._finish(state, "dropped")
                # stop() from another thread: it waits for the server's shutdown, which this
                # handler thread must not block. Returning before the cancel lands would end
                # the stream with OK instead of a broken connection.
                threading.Thread(target=self.stop, name="kos-sound-test-drop").start()
                terminated.wait(5.0)
                return
            frames = chunk_frames
            if total_frames is not None:
                frames = min(frames, total_frames - position)
            if self.realtime:
                # A chunk exists once its last frame has been captured.
                delay = start + (position + frames) / sample_rate - time.monotonic()
                if delay > 0:
                    state.stop.wait(delay)
            if state.stop.is_set():
                self._finish(state, "stopped" if context.is_active() else "cancelled")
                return
            if room is not None:
                data = room.record_pcm(room_offset + position, frames, channels)
            else:
                data = record_signal(sample_rate, bit_depth, channels, position, frames)
            with self._lock:
                state.data += data
                state.chunk_sizes.append(len(data))
            yield RecordAudioResponse(audio_data=data)
            position += frames
            chunk_index += 1
        self._finish(state, "completed")
