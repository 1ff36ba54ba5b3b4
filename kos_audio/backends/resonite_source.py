"""What Resonite plays (``Speaker.StreamAudio``) as a source: the robot hears its avatar's ears.

:class:`ResoniteSpeakerSource` subscribes to the Resonite IO ``Speaker`` over the Unix socket
and hands each frame to the capture loop, which converts (48 kHz stereo float32 to the node's
format), re-chunks and stamps it. grpc is imported here (through the protocol layer) only.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from kos_audio.core.capture import drain
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import AudioSource, CapturedBlock
from kos_audio.core.stamping import NS_PER_S
from kos_audio.errors import BackendError

try:
    from kos_audio.protocols.resonite_io.v1 import (
        SAMPLE_RATE_HZ,
        SPEAKER_CHANNELS,
        ResoniteIoClient,
        SpeakerStreamCall,
    )
except ImportError as _err:  # grpcio/protobuf missing
    raise ImportError(
        f"the Resonite IO backend needs grpcio and protobuf ({_err}); install them: "
        "apt-get install python3-grpcio python3-protobuf, or pip install grpcio protobuf"
    ) from _err

__all__ = ["SPEAKER_FORMAT", "ResoniteSpeakerSource"]

#: What ``Speaker.StreamAudio`` delivers, always: 48 kHz stereo interleaved float32 LE.
SPEAKER_FORMAT = AudioFormat(SAMPLE_RATE_HZ, SPEAKER_CHANNELS, SampleFormat.F32LE)
#: Deadline of unary calls (s).
DEFAULT_TIMEOUT_S = 5.0
#: Frames waiting for the capture thread before the reader drops (Resonite sends 1024-4096
#: samples a frame, so at least 2 s); each drop is counted and re-anchors the stamps.
MAX_QUEUED_FRAMES = 100
#: A stream that delivers nothing for this long (s) is taken for dead. Resonite sends its mix
#: continuously (silence included), so only a hung or vanished peer is this quiet.
STALL_TIMEOUT_S = 5.0
#: ``unix_nanos`` further than this (ns) from the arrival time is not trusted as a capture
#: time (a peer with another clock); the arrival time is used instead.
MAX_CLOCK_SKEW_NS = NS_PER_S


@dataclass(frozen=True, slots=True)
class _Frame:
    """One speaker frame as the reader thread saw it (raw, validated on the capture thread)."""

    frame_id: int
    unix_nanos: int
    sample_count: int
    data: bytes
    arrival_ns: int
    lost_before: bool  # the reader dropped frames just before this one (queue full)


@dataclass(frozen=True, slots=True)
class _Failure:
    """Put on the queue by the reader: the stream ended or broke."""

    error: BackendError


class _Closed:
    """Put on the queue by :meth:`ResoniteSpeakerSource.close`: wakes a pending read."""


class ResoniteSpeakerSource(AudioSource):
    """Resonite's final audio mix, from ``Speaker.StreamAudio``, as an :class:`AudioSource`.

    :meth:`open` resolves the socket (``socket``, else ``RESONITE_IO_SOCKET``, else the single
    live ``resonite-*.sock`` in ``RESONITE_IO_SOCKET_DIR`` or ``~/.resonite-io``; see
    :func:`~kos_audio.protocols.resonite_io.resolve_socket`) and starts the stream; every
    reopen resolves again, so a restarted Resonite (new pid, new socket) is found.

    A reader thread iterates the stream; it only copies each frame with its arrival time and
    enqueues it (it never logs or publishes). :meth:`read`, on the capture thread, checks the
    frame and turns it into a :class:`CapturedBlock` in :data:`SPEAKER_FORMAT`.

    Capture time: the first sample of a frame is stamped ``unix_nanos - duration``. The mod
    stamps a frame with the wall-clock time its tap received the finished mix buffer, i.e.
    when the frame's last sample exists, just as a microphone block is complete when its last
    sample has been captured. ``unix_nanos`` comes from the same host clock as ours (the
    socket is local) and is free of gRPC delivery jitter, so it is preferred to the arrival
    time; a ``unix_nanos`` of 0 or more than 1 s away from the arrival time falls back to
    ``arrival - duration``. Either way the capture loop only anchors timelines and watches
    drift with it: stamps inside a timeline come from the sample count.

    Bad input never stops the stream: a frame whose byte length is not whole stereo float32
    samples loses its trailing bytes, a ``sample_count`` that disagrees with the bytes is
    ignored (the bytes rule, as the server does for the microphone); both are counted in
    :attr:`invalid_frames`. A gap in ``frame_id`` flags the next block as a discontinuity
    (:attr:`lost_frames`). :meth:`read` raises :class:`BackendError` when the stream fails or
    ends, or stalls for :data:`STALL_TIMEOUT_S`; the capture loop reconnects with back-off.

    Args:
        socket: explicit socket path; ``""`` resolves as described above.
        timeout_s: deadline of unary calls (s).
        environ: environment for the resolution; None reads ``os.environ`` (tests pass a dict).

    """

    def __init__(
        self,
        *,
        socket: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise BackendError(f"the Resonite IO timeout must be > 0 s, got {timeout_s}")
        self._socket = socket
        self._timeout_s = float(timeout_s)
        self._environ = environ
        self._lock = threading.Lock()  # client/call/reader handover between threads
        self._client: ResoniteIoClient | None = None
        self._call: SpeakerStreamCall | None = None
        self._reader: threading.Thread | None = None
        self._queue: queue.SimpleQueue[_Frame | _Failure | _Closed] = queue.SimpleQueue()
        self._last_data_mono = 0.0
        self._next_frame_id = 0
        self._reader_lost = False  # reader thread only
        self._path = ""
        #: Successful ``StreamAudio`` starts (1 + reconnects).
        self.streams = 0
        #: Frames handed to the capture loop.
        self.frames = 0
        #: Frames dropped because the capture thread fell behind (each re-anchors the stamps).
        self.overflows = 0
        #: Frames missing from the server's numbering (``frame_id`` gaps).
        self.lost_frames = 0
        #: Frames repaired (trailing partial sample cut, wrong ``sample_count`` ignored).
        self.invalid_frames = 0
        #: Seconds from a frame's first sample to its arrival here (the latest frame).
        self.input_latency_s = 0.0

    # -- AudioSource -----------------------------------------------------------------------
    @property
    def format(self) -> AudioFormat:
        """Always :data:`SPEAKER_FORMAT` (48 kHz, 2 ch, F32LE); the node converts."""
        return SPEAKER_FORMAT

    def open(self) -> None:
        """Resolve the socket and start ``Speaker.StreamAudio``; returns once it is placed.

        An unreachable server surfaces from :meth:`read` (the call fails ``UNAVAILABLE``).

        Raises:
            BackendError: no socket could be resolved (none or several found; the message
                says to set ``RESONITE_IO_SOCKET``).

        """
        self.close()
        client = ResoniteIoClient(self._socket, timeout_s=self._timeout_s,
                                  environ=self._environ)
        try:
            path = client.connect()
            call = client.stream_speaker()
        except BackendError:
            client.close()
            raise
        drain(self._queue)
        self._path = str(path)
        self._next_frame_id = 0
        self._reader_lost = False
        self._last_data_mono = time.monotonic()
        reader = threading.Thread(target=self._read_stream, args=(call,),
                                  name="kos_audio-resonite-speaker", daemon=True)
        with self._lock:
            self._client, self._call, self._reader = client, call, reader
        self.streams += 1
        reader.start()

    def read(self, timeout_s: float) -> CapturedBlock | None:
        """The next frame as a block; None after ``timeout_s`` or :meth:`close`.

        Raises:
            BackendError: the stream failed, ended or stalled.

        """
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            with self._lock:
                live = self._call is not None
            if live and time.monotonic() - self._last_data_mono > STALL_TIMEOUT_S:
                raise BackendError(
                    f"Resonite IO Speaker.StreamAudio on {self._where()} delivered nothing "
                    f"for {STALL_TIMEOUT_S:g} s") from None
            return None
        if isinstance(item, _Failure):
            raise item.error
        if isinstance(item, _Closed):
            return None
        return self._block(item)

    def close(self) -> None:
        """Cancel the stream and close the channel; idempotent, any thread."""
        with self._lock:
            client, call, reader = self._client, self._call, self._reader
            self._client, self._call, self._reader = None, None, None
        if call is not None:
            call.cancel()
            self._queue.put(_Closed())
        if client is not None:
            client.close()
        if reader is not None and reader is not threading.current_thread():
            reader.join(1.0)

    def diagnostics(self) -> dict[str, object]:
        """Source counters for mic_node's ``/diagnostics`` (read from the executor thread)."""
        return {"resonite_lost_frames": self.lost_frames,
                "resonite_invalid_frames": self.invalid_frames,
                "input_latency_ms": self.input_latency_s * 1e3}

    def describe(self) -> str:
        """E.g. ``Resonite IO speaker at /home/me/.resonite-io/resonite-4242.sock``."""
        return f"Resonite IO speaker at {self._where()}"

    # -- the capture thread ----------------------------------------------------------------
    def _block(self, frame: _Frame) -> CapturedBlock:
        data = frame.data
        frame_bytes = SPEAKER_FORMAT.frame_bytes
        rest = len(data) % frame_bytes
        count = (len(data) - rest) // frame_bytes
        if rest or frame.sample_count != count:
            self.invalid_frames += 1
            data = data[: len(data) - rest]
        discontinuity = frame.lost_before
        if frame.frame_id != self._next_frame_id:
            # A gap (or a restart of the numbering) means Resonite audio we never saw.
            self.lost_frames += max(1, frame.frame_id - self._next_frame_id)
            discontinuity = True
        self._next_frame_id = frame.frame_id + 1
        duration_ns = count * NS_PER_S // SPEAKER_FORMAT.sample_rate_hz
        end_ns = frame.unix_nanos
        if end_ns <= 0 or abs(end_ns - frame.arrival_ns) > MAX_CLOCK_SKEW_NS:
            end_ns = frame.arrival_ns
        capture_ns = end_ns - duration_ns
        self.input_latency_s = max(0.0, (frame.arrival_ns - capture_ns) / NS_PER_S)
        self.frames += 1
        return CapturedBlock(data, capture_time_ns=capture_ns, discontinuity=discontinuity)

    def _where(self) -> str:
        if self._path:
            return self._path
        return self._socket or "(socket resolved at connect: RESONITE_IO_SOCKET or search)"

    # -- the reader thread -----------------------------------------------------------------
    def _read_stream(self, call: SpeakerStreamCall) -> None:
        """Iterate one stream: copy, time and enqueue frames; end with a failure.

        Runs on its own thread; only enqueues, never logs.
        """
        failure: BackendError
        try:
            for frame in call:
                if self._call is not call:
                    return  # closed meanwhile: this stream is no longer anyone's
                self._enqueue(frame.frame_id, frame.unix_nanos, frame.sample_count,
                              bytes(frame.samples))
            failure = BackendError(
                f"Resonite IO Speaker.StreamAudio on {self._where()}: the server ended the "
                "stream")
        except BackendError as err:
            failure = err
        with self._lock:
            current = self._call is call
        if current:  # not a close() from this side: tell the capture thread
            self._queue.put(_Failure(failure))

    def _enqueue(self, frame_id: int, unix_nanos: int, sample_count: int, data: bytes) -> None:
        arrival_ns = time.time_ns()
        self._last_data_mono = time.monotonic()
        if self._queue.qsize() >= MAX_QUEUED_FRAMES:
            self.overflows += 1
            self._reader_lost = True
            return
        self._queue.put(_Frame(int(frame_id), int(unix_nanos), int(sample_count), data,
                               arrival_ns, self._reader_lost))
        self._reader_lost = False
