"""A real gRPC Resonite IO server for tests: Microphone, Speaker and Connection on a Unix socket.

It behaves like the Resonite IO mod as far as a client can tell:

- ``Microphone.StreamAudio`` takes float32 LE mono 48 kHz frames, recomputes each frame's sample
  count from its byte length, and pushes the samples into a 2 s ring buffer (96,000 samples)
  that drops the OLDEST samples on overflow and never applies back-pressure. An "engine tick"
  thread drains at most 480 samples every 10 ms into :attr:`ResoniteIoServer.played`, which is
  what "Resonite played", with the tick's time. A graceful half-close answers the summary and
  keeps playing what is buffered; a cancel or disconnect clears the buffer. ``dropped_frames``
  is always 0, as upstream's.
- ``Speaker.StreamAudio`` serves :func:`speaker_signal` (48 kHz stereo interleaved float32 LE)
  in deterministic frame sizes between 1024 and 4096 samples, paced to real time, frame_id from 0.
- ``Connection.Ping`` echoes the message with ``server_unix_nanos``.

Fault injection: :meth:`ResoniteIoServer.fail_next` (any RPC answers a status, e.g.
FAILED_PRECONDITION, for the next N calls), :meth:`abort_microphone_after` /
:meth:`abort_speaker_after` (a stream ends with a status after N frames),
:meth:`remove_socket_file`, :meth:`stop` / :meth:`restart` on the same path.

The summary comes :data:`CANCEL_GRACE_S` after the half-close (see ``_microphone``: on grpcio
1.51 a client cancel first looks like a half-close). Unlike the real engine, a late tick
thread catches up (runs the missed ticks at once), so a loaded test machine does not make the
buffer overflow; the drain rate stays 48 kHz on average.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from kos_audio.protocols._runtime import generic_handler
from kos_audio.protocols.resonite_io import v1

__all__ = [
    "MicrophoneStreamRecord",
    "PlayedChunk",
    "ResoniteIoServer",
    "RingBuffer",
    "SpeakerStreamRecord",
    "speaker_frame_sizes",
    "speaker_signal",
]

SAMPLE_RATE_HZ = 48_000
RING_CAPACITY_SAMPLES = 96_000
TICK_SAMPLES = 480
TICK_S = 0.010
SPEAKER_MIN_FRAME = 1024
SPEAKER_MAX_FRAME = 4096
SPEAKER_SEED = 20_240_611
CANCEL_GRACE_S = 0.05
"""How long a microphone stream that ended waits for a late cancel before it answers."""

Float32Array = npt.NDArray[np.float32]


def speaker_signal(start: int, count: int) -> Float32Array:
    """The speaker's known signal: ``count`` stereo samples from sample index ``start``.

    Left is a 440 Hz sine at 0.5, right a 1 kHz sine at 0.25, both functions of the absolute
    sample index, so any slice can be regenerated bit-exactly. Returns shape ``(count, 2)``,
    dtype ``<f4`` (``tobytes()`` is the interleaved wire layout).
    """
    k = np.arange(start, start + count, dtype=np.float64)
    out = np.empty((count, 2), dtype="<f4")
    out[:, 0] = 0.5 * np.sin(2.0 * math.pi * 440.0 * k / SAMPLE_RATE_HZ)
    out[:, 1] = 0.25 * np.sin(2.0 * math.pi * 1000.0 * k / SAMPLE_RATE_HZ)
    return out


def speaker_frame_sizes(seed: int = SPEAKER_SEED) -> Iterator[int]:
    """The deterministic sequence of speaker frame sizes (samples per channel), 1024..4096."""
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(SPEAKER_MIN_FRAME, SPEAKER_MAX_FRAME + 1))


class RingBuffer:
    """Fixed-capacity float32 FIFO that drops the oldest samples on overflow. Not thread-safe."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, dtype=np.float32)
        self._start = 0
        self._size = 0

    @property
    def capacity(self) -> int:
        return int(self._data.size)

    def __len__(self) -> int:
        return self._size

    def push(self, samples: Float32Array) -> int:
        """Append ``samples``; return how many old (or, past capacity, new) samples were lost."""
        cap = self.capacity
        n = int(samples.size)
        dropped = 0
        if n >= cap:
            # Only the newest `cap` samples can survive; everything else is dropped.
            dropped = self._size + n - cap
            samples = samples[n - cap :]
            self._start, self._size = 0, 0
            n = cap
        overflow = self._size + n - cap
        if overflow > 0:
            self._start = (self._start + overflow) % cap
            self._size -= overflow
            dropped += overflow
        end = (self._start + self._size) % cap
        first = min(n, cap - end)
        self._data[end : end + first] = samples[:first]
        self._data[: n - first] = samples[first:]
        self._size += n
        return dropped

    def pop(self, count: int) -> Float32Array:
        """Remove and return up to ``count`` of the oldest samples (a copy)."""
        n = min(count, self._size)
        cap = self.capacity
        first = min(n, cap - self._start)
        out = np.concatenate(
            (self._data[self._start : self._start + first], self._data[: n - first])
        )
        self._start = (self._start + n) % cap
        self._size -= n
        return out

    def peek(self) -> Float32Array:
        """A copy of the content, oldest first, without removing it."""
        first = min(self._size, self.capacity - self._start)
        return np.concatenate(
            (self._data[self._start : self._start + first], self._data[: self._size - first])
        )

    def clear(self) -> int:
        """Discard everything; return how many samples were discarded."""
        n = self._size
        self._start, self._size = 0, 0
        return n


@dataclasses.dataclass
class PlayedChunk:
    """What one engine tick took from the ring buffer."""

    tick: int
    monotonic_ns: int
    samples: Float32Array


@dataclasses.dataclass
class MicrophoneStreamRecord:
    """Everything the server saw on one ``Microphone.StreamAudio`` call, for assertions."""

    index: int
    frame_ids: list[int] = dataclasses.field(default_factory=list)
    unix_nanos: list[int] = dataclasses.field(default_factory=list)
    sample_count_fields: list[int] = dataclasses.field(default_factory=list)
    byte_lengths: list[int] = dataclasses.field(default_factory=list)
    received_monotonic_ns: list[int] = dataclasses.field(default_factory=list)
    chunks: list[Float32Array] = dataclasses.field(default_factory=list)
    received_samples: int = 0
    dropped_samples: int = 0
    cleared_samples: int = 0
    outcome: str = "open"
    """``open``, ``completed`` (half-close, summary sent), ``cancelled`` (client cancel or
    disconnect: buffer cleared), ``aborted`` (fault injection) or ``failed`` (fail_next)."""
    summary: Any = None

    def copy(self) -> MicrophoneStreamRecord:
        """A snapshot whose lists no longer grow with the stream."""
        return dataclasses.replace(
            self,
            frame_ids=list(self.frame_ids),
            unix_nanos=list(self.unix_nanos),
            sample_count_fields=list(self.sample_count_fields),
            byte_lengths=list(self.byte_lengths),
            received_monotonic_ns=list(self.received_monotonic_ns),
            chunks=list(self.chunks),
        )

    def samples(self) -> Float32Array:
        """All samples received on this stream, in order."""
        if not self.chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self.chunks)


@dataclasses.dataclass
class SpeakerStreamRecord:
    """What the server sent on one ``Speaker.StreamAudio`` call."""

    index: int
    frames_sent: int = 0
    samples_sent: int = 0
    outcome: str = "open"


@dataclasses.dataclass
class _Fault:
    code: grpc.StatusCode
    details: str


class ResoniteIoServer:
    """A Resonite IO test server bound to ``unix:<socket_path>``.

    Args:
        socket_path: Where to bind; default ``<directory>/resonite-<pid>.sock``.
        directory: Directory of the default path (required when ``socket_path`` is not given).
        pid: The pid in the default name; default this process's (so it counts as alive).
        speaker_paced: Pace speaker frames to real time (the real server does).
        max_workers: gRPC worker threads (each open stream holds one).

    Thread-safety: all public methods may be called from any thread; records are guarded by
    one lock (use the accessor methods, which copy).
    """

    def __init__(
        self,
        socket_path: os.PathLike[str] | str | None = None,
        *,
        directory: os.PathLike[str] | str | None = None,
        pid: int | None = None,
        speaker_paced: bool = True,
        max_workers: int = 8,
    ) -> None:
        if socket_path is None:
            if directory is None:
                raise ValueError("give socket_path or directory")
            socket_path = pathlib.Path(directory) / f"resonite-{pid or os.getpid()}.sock"
        self._path = pathlib.Path(socket_path).absolute()
        self._speaker_paced = speaker_paced
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._ring = RingBuffer(RING_CAPACITY_SAMPLES)
        self._played: list[PlayedChunk] = []
        self._mic_streams: list[MicrophoneStreamRecord] = []
        self._speaker_streams: list[SpeakerStreamRecord] = []
        self._pings: list[str] = []
        self._fail_remaining = 0
        self._fail: _Fault | None = None
        self._mic_abort: tuple[int, _Fault] | None = None
        self._speaker_abort: tuple[int, _Fault] | None = None
        self._ring_dropped_total = 0
        self._tick = 0
        self._server: grpc.Server | None = None
        self._stopping = threading.Event()
        self._engine: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def socket_path(self) -> pathlib.Path:
        """The absolute socket path (the same across :meth:`restart`)."""
        return self._path

    @property
    def target(self) -> str:
        """The gRPC channel target, ``unix:<abs path>``."""
        return f"unix:{self._path}"

    def start(self) -> None:
        """Bind the socket and start serving; also starts the engine tick thread."""
        if self._server is not None:
            raise RuntimeError("already started")
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        server.add_generic_rpc_handlers(self._handlers())
        try:
            bound = server.add_insecure_port(self.target)
        except RuntimeError as err:  # grpcio >= 1.5x raises, older returns 0
            raise RuntimeError(f"cannot bind {self.target}") from err
        if bound == 0:
            raise RuntimeError(f"cannot bind {self.target}")
        self._stopping.clear()
        server.start()
        self._server = server
        self._engine = threading.Thread(target=self._engine_loop, name="engine", daemon=True)
        self._engine.start()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop serving (open streams are cancelled) and remove the socket file. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace_s).wait()
        self._stopping.set()
        if self._engine is not None:
            self._engine.join()
            self._engine = None
        with self._lock:
            self._ring.clear()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def restart(self) -> None:
        """:meth:`stop` then :meth:`start` on the same path; records are kept."""
        self.stop()
        self.start()

    def remove_socket_file(self) -> None:
        """Unlink the socket file while the server keeps running (a vanished socket)."""
        self._path.unlink()

    def __enter__(self) -> ResoniteIoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------- fault injection

    def fail_next(
        self,
        calls: int,
        code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION,
        details: str = "Resonite is not ready (injected)",
    ) -> None:
        """The next ``calls`` RPCs (any method) answer ``code`` without doing anything."""
        with self._lock:
            self._fail_remaining = calls
            self._fail = _Fault(code, details)

    def abort_microphone_after(
        self,
        frames: int,
        code: grpc.StatusCode = grpc.StatusCode.INTERNAL,
        details: str = "microphone stream aborted (injected)",
    ) -> None:
        """The next microphone stream ends with ``code`` after receiving ``frames`` frames."""
        with self._lock:
            self._mic_abort = (frames, _Fault(code, details))

    def abort_speaker_after(
        self,
        frames: int,
        code: grpc.StatusCode = grpc.StatusCode.INTERNAL,
        details: str = "speaker stream aborted (injected)",
    ) -> None:
        """The next speaker stream ends with ``code`` after sending ``frames`` frames."""
        with self._lock:
            self._speaker_abort = (frames, _Fault(code, details))

    # ------------------------------------------------------------------ records

    def microphone_streams(self) -> list[MicrophoneStreamRecord]:
        """Snapshots of the microphone stream records, oldest first."""
        with self._lock:
            return [r.copy() for r in self._mic_streams]

    def speaker_streams(self) -> list[SpeakerStreamRecord]:
        """Snapshots of the speaker stream records, oldest first."""
        with self._lock:
            return [dataclasses.replace(r) for r in self._speaker_streams]

    def pings(self) -> list[str]:
        with self._lock:
            return list(self._pings)

    def played_chunks(self) -> list[PlayedChunk]:
        """What the engine played, one entry per non-empty tick, in order."""
        with self._lock:
            return list(self._played)

    def played_samples(self) -> Float32Array:
        """Everything the engine played, concatenated."""
        with self._lock:
            chunks = [c.samples for c in self._played]
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks)

    def audio_snapshot(self) -> tuple[Float32Array, Float32Array]:
        """``(played, buffered)`` taken atomically: everything played so far and a copy of
        what waits in the ring buffer, oldest first."""
        with self._lock:
            chunks = [c.samples for c in self._played]
            buffered = self._ring.peek()
        played = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return played, buffered

    @property
    def buffered_samples(self) -> int:
        """Samples waiting in the ring buffer."""
        with self._lock:
            return len(self._ring)

    @property
    def ring_dropped_samples(self) -> int:
        """Samples dropped by ring overflow since construction (all streams)."""
        with self._lock:
            return self._ring_dropped_total

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until the ring buffer is empty; True if it is."""
        return _wait_for(lambda: self.buffered_samples == 0, timeout_s)

    def wait_microphone_outcome(self, index: int, timeout_s: float) -> str:
        """Wait until microphone stream ``index`` is no longer ``open``; return its outcome."""

        def finished() -> bool:
            with self._lock:
                return len(self._mic_streams) > index and (
                    self._mic_streams[index].outcome != "open"
                )

        _wait_for(finished, timeout_s)
        with self._lock:
            return self._mic_streams[index].outcome if len(self._mic_streams) > index else ""

    # ------------------------------------------------------------------ engine

    def _engine_loop(self) -> None:
        deadline = time.monotonic()
        while not self._stopping.is_set():
            deadline += TICK_S
            delay = deadline - time.monotonic()
            if delay > 0 and self._stopping.wait(delay):
                return
            with self._lock:
                self._tick += 1
                chunk = self._ring.pop(TICK_SAMPLES)
                if chunk.size:
                    self._played.append(PlayedChunk(self._tick, time.monotonic_ns(), chunk))

    # ----------------------------------------------------------------- handlers

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if self._fail_remaining <= 0 or self._fail is None:
                return None
            self._fail_remaining -= 1
            return self._fail

    def _handlers(self) -> tuple[grpc.GenericRpcHandler, ...]:
        return (
            generic_handler(
                v1.MICROPHONE_SERVICE, v1.microphone_methods(), {"StreamAudio": self._microphone}
            ),
            generic_handler(
                v1.SPEAKER_SERVICE, v1.speaker_methods(), {"StreamAudio": self._speaker}
            ),
            generic_handler(v1.CONNECTION_SERVICE, v1.connection_methods(), {"Ping": self._ping}),
        )

    def _ping(self, request: Any, context: grpc.ServicerContext) -> Any:
        fault = self._take_fault()
        if fault is not None:
            context.abort(fault.code, fault.details)
        with self._lock:
            self._pings.append(request.message)
        return v1.PingResponse(message=request.message, server_unix_nanos=time.time_ns())

    def _microphone(self, frames: Iterator[Any], context: grpc.ServicerContext) -> Any:
        with self._lock:
            record = MicrophoneStreamRecord(index=len(self._mic_streams))
            self._mic_streams.append(record)
            abort, self._mic_abort = self._mic_abort, None
        fault = self._take_fault()
        if fault is not None:
            with self._lock:
                record.outcome = "failed"
            context.abort(fault.code, fault.details)
        terminated = threading.Event()
        if not context.add_callback(terminated.set):
            terminated.set()
        try:
            for frame in frames:
                data: bytes = frame.samples
                # The real server trusts the byte length, not the sample_count field.
                usable = len(data) - len(data) % 4
                samples = np.frombuffer(data, dtype="<f4", count=usable // 4).astype(np.float32)
                with self._lock:
                    dropped = self._ring.push(samples)
                    self._ring_dropped_total += dropped
                    record.dropped_samples += dropped
                    record.frame_ids.append(int(frame.frame_id))
                    record.unix_nanos.append(int(frame.unix_nanos))
                    record.sample_count_fields.append(int(frame.sample_count))
                    record.byte_lengths.append(len(data))
                    record.received_monotonic_ns.append(time.monotonic_ns())
                    record.chunks.append(samples)
                    record.received_samples += int(samples.size)
                if abort is not None and len(record.frame_ids) >= abort[0]:
                    with self._lock:
                        record.cleared_samples += self._ring.clear()
                        record.outcome = "aborted"
                    context.abort(abort[1].code, abort[1].details)
        except grpc.RpcError:
            # Recent grpcio: the request iterator raises when the client cancels or disconnects.
            return self._microphone_cancelled(record)
        # grpcio 1.51 ends the iterator normally on a client cancel, exactly as on a half-close,
        # and reports the cancel a moment later; a half-closed call stays active until answered.
        if terminated.wait(CANCEL_GRACE_S) or not context.is_active():
            return self._microphone_cancelled(record)
        with self._lock:
            summary = v1.MicrophoneStreamSummary(
                received_frames=len(record.frame_ids),
                received_samples=record.received_samples,
                dropped_frames=0,
                unix_nanos=time.time_ns(),
            )
            record.summary = summary
            record.outcome = "completed"
        return summary

    def _microphone_cancelled(self, record: MicrophoneStreamRecord) -> Any:
        with self._lock:
            record.cleared_samples += self._ring.clear()
            record.outcome = "cancelled"
        return v1.MicrophoneStreamSummary()  # nobody receives it

    def _speaker(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._lock:
            record = SpeakerStreamRecord(index=len(self._speaker_streams))
            self._speaker_streams.append(record)
            abort, self._speaker_abort = self._speaker_abort, None
        fault = self._take_fault()
        if fault is not None:
            self._set_outcome(record, "failed")
            context.abort(fault.code, fault.details)
        # After a client cancel grpcio may simply stop iterating this generator, so the
        # termination callback is what reliably records the end.
        context.add_callback(lambda: self._set_outcome(record, "cancelled"))
        start = time.monotonic()
        position = 0
        for frame_id, count in enumerate(speaker_frame_sizes()):
            if abort is not None and frame_id >= abort[0]:
                self._set_outcome(record, "aborted")
                context.abort(abort[1].code, abort[1].details)
            if self._speaker_paced:
                # A frame exists once its last sample has been mixed.
                delay = start + (position + count) / SAMPLE_RATE_HZ - time.monotonic()
                if delay > 0 and self._stopping.wait(delay):
                    break
            if not context.is_active() or self._stopping.is_set():
                break
            yield v1.AudioFrame(
                frame_id=frame_id,
                unix_nanos=time.time_ns(),
                sample_count=count,
                samples=speaker_signal(position, count).tobytes(),
            )
            position += count
            with self._lock:
                record.frames_sent += 1
                record.samples_sent += count
        self._set_outcome(record, "cancelled")

    def _set_outcome(self, record: SpeakerStreamRecord, outcome: str) -> None:
        with self._lock:
            if record.outcome == "open":
                record.outcome = outcome


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True
