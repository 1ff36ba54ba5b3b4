"""The robot's microphone behind the KOS ``SoundService`` (gRPC ``RecordAudio``), as a source.

:class:`KosSource` negotiates a recording config with ``GetAudioInfo``, records with
``RecordAudio(config, duration_ms=0)`` and hands the server's chunks to the capture loop, which
re-chunks, converts and stamps them. grpc is imported here (through the protocol layer) only.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass

from kos_audio.backends.kos_config import (
    DEFAULT_TIMEOUT_S,
    KosConfig,
    closest_config,
    describe_error,
)
from kos_audio.core.capture import drain
from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import AudioSource, CapturedBlock
from kos_audio.core.stamping import NS_PER_S
from kos_audio.errors import BackendError

try:
    from kos_audio.protocols.kos import KosSoundClient, RecordAudioCall
except ImportError as _err:  # grpcio/protobuf missing
    raise ImportError(
        f"the KOS backend needs grpcio and protobuf ({_err}); install them: "
        "apt-get install python3-grpcio python3-protobuf, or pip install grpcio protobuf"
    ) from _err

__all__ = ["KosSource"]

#: Chunks waiting for the capture thread before the reader starts dropping (about 4 s of
#: 20-40 ms chunks); dropping is counted in :attr:`KosSource.overflows` and re-anchors stamps.
MAX_QUEUED_CHUNKS = 200
#: A stream that delivers nothing for this long (s, at least) is taken for dead: a server
#: that hangs, or a peer gone without closing the connection.
MIN_STALL_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class _Failure:
    """Put on the queue by the reader: the stream ended or broke."""

    error: BackendError


#: After StopRecording, how long (s) close() lets the server end the stream before cancelling.
STOP_GRACE_S = 0.5

class KosSource(AudioSource):
    """Records from a KOS robot's microphone over gRPC.

    On :meth:`open`: ``GetAudioInfo``, then the recording config closest to ``requested``
    (:func:`~kos_audio.backends.kos_config.closest_config`; :attr:`format` says what is delivered
    and the node converts), then ``RecordAudio(config, duration_ms=0)``.

    A reader thread iterates the response stream; it only copies each chunk, notes its arrival
    time and enqueues it (it never logs or publishes). KOS sends no capture time, so a
    chunk's capture time is its arrival time minus its duration: the best estimate the
    protocol allows (it includes the network and server delay, typically a few ms on the
    robot). The stamper uses it only to anchor a timeline and to detect drift; stamps inside
    a timeline are sample-accurate.

    :meth:`read` raises :class:`BackendError` when the server reports an error in a response
    (logged by the capture loop with its code, counted in :attr:`server_errors`), when the
    stream ends or breaks (server down, restarted, aborted), and when nothing arrives for
    ``max(timeout_s, 2)`` seconds; the capture loop then reconnects with back-off.
    :meth:`close` (disable, shutdown) calls ``StopRecording`` while the stream is live and
    cancels it. Note that ``StopRecording`` has no stream id: it ends every recording on the
    robot, including other clients'.

    Args:
        requested: the format the node publishes.
        address: ``host:port`` of the KOS daemon.
        timeout_s: deadline of ``GetAudioInfo`` and ``StopRecording`` (s); also the stall
            timeout of the stream (at least 2 s).

    """

    def __init__(
        self, requested: AudioFormat, *, address: str, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        if not timeout_s > 0:
            raise BackendError(f"kos.timeout_s must be > 0, got {timeout_s}")
        self._requested = requested
        self._address = address
        self._timeout_s = float(timeout_s)
        self._stall_s = max(self._timeout_s, MIN_STALL_TIMEOUT_S)
        self._format = requested
        self._lock = threading.Lock()  # client/call/reader handover between threads
        self._client: KosSoundClient | None = None
        self._call: RecordAudioCall | None = None
        self._reader: threading.Thread | None = None
        self._ended = threading.Event()  # the reader saw the current stream end
        self._queue: queue.SimpleQueue[CapturedBlock | _Failure] = queue.SimpleQueue()
        self._last_data_mono = 0.0
        self._lost = False
        self._partial = b""  # a trailing partial frame of the last chunk (reader thread)
        #: The config negotiated at the last open (None before).
        self.config: KosConfig | None = None
        #: Chunks dropped because the capture thread fell behind (each re-anchors the stamps).
        self.overflows = 0
        #: Responses that carried ``error`` (each ends the stream and reconnects).
        self.server_errors = 0
        #: ``CODE: message`` of the last such error.
        self.last_server_error = ""
        #: Successful ``RecordAudio`` starts (1 + reconnects).
        self.streams = 0
        #: Chunks whose length was not a whole number of frames (the rest was carried over).
        self.partial_frames = 0

    # -- AudioSource -----------------------------------------------------------------------
    @property
    def format(self) -> AudioFormat:
        """What the stream delivers (the negotiated config); the request before :meth:`open`."""
        return self._format

    def open(self) -> None:
        """Negotiate and start recording; returns once the call is placed.

        Raises:
            BackendError: the server is unreachable, reports an error in ``GetAudioInfo``, or
                supports nothing usable.

        """
        self.close()
        client = KosSoundClient(self._address, timeout_s=self._timeout_s)
        try:
            info = client.get_audio_info()
            if info.HasField("error"):
                # An error beside usable capabilities is reported and tolerated; without
                # capabilities there is nothing to record with.
                self.server_errors += 1
                self.last_server_error = describe_error(info.error)
                if not info.HasField("recording"):
                    raise BackendError(f"KOS GetAudioInfo at {self._address} failed: "
                                       f"{self.last_server_error}")
            fmt = self._requested
            config = closest_config(
                info.recording, sample_rate_hz=fmt.sample_rate_hz,
                bit_depth=fmt.sample_format.bit_depth, channels=fmt.channels,
                direction="recording")
            call = client.record_audio(config.to_message(), duration_ms=0)
        except BackendError:
            client.close()
            raise
        self.config = config
        self._format = config.format
        drain(self._queue)
        self._partial = b""
        self._lost = False
        self._last_data_mono = time.monotonic()
        ended = threading.Event()
        reader = threading.Thread(target=self._read_stream, args=(call, config.format, ended),
                                  name="kos_audio-kos-record", daemon=True)
        with self._lock:
            self._client, self._call, self._reader = client, call, reader
            self._ended = ended
        self.streams += 1
        reader.start()

    def read(self, timeout_s: float) -> CapturedBlock | None:
        """The next chunk as it came from the server, or None within ``timeout_s``.

        Raises:
            BackendError: the server reported an error, the stream ended or broke, or it
                stalled.

        """
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            with self._lock:
                live = self._call is not None
            if live and time.monotonic() - self._last_data_mono > self._stall_s:
                raise BackendError(f"KOS RecordAudio at {self._address} delivered nothing "
                                   f"for {self._stall_s:g} s") from None
            return None
        if isinstance(item, _Failure):
            raise item.error
        return item

    def close(self) -> None:
        """``StopRecording`` if the stream is live, cancel it, close the channel.

        Idempotent; any thread. A failing ``StopRecording`` (server gone) is ignored: the
        cancel ends the stream anyway. Blocks at most ``timeout_s`` (the StopRecording
        deadline), then up to STOP_GRACE_S for the stream to end, plus a moment for the reader.
        """
        with self._lock:
            client, call, reader = self._client, self._call, self._reader
            self._client, self._call, self._reader = None, None, None
            ended = self._ended
            live = call is not None and not ended.is_set() and call.is_active()
        if live and client is not None:
            # The server may be gone or hung; cancelling below is then all we can do.
            with contextlib.suppress(BackendError):
                client.stop_recording()
                # StopRecording is answered before the server ends the stream: let it end
                # normally rather than cancel it first (bounded, for a server that never does).
                ended.wait(STOP_GRACE_S)
        if call is not None:
            call.cancel()
        if client is not None:
            client.close()
        if reader is not None and reader is not threading.current_thread():
            reader.join(1.0)

    def describe(self) -> str:
        """E.g. ``KOS microphone at localhost:50051``."""
        return f"KOS microphone at {self._address}"

    def diagnostics(self) -> dict[str, object]:
        """``server_errors``, as mic_node publishes it (any thread)."""
        return {"server_errors": self.server_errors}

    # -- the reader thread -----------------------------------------------------------------
    def _read_stream(
        self, call: RecordAudioCall, fmt: AudioFormat, ended: threading.Event
    ) -> None:
        """Iterate one RecordAudio stream: copy, time and enqueue chunks; end with a failure.

        Runs on its own thread; only enqueues, never logs.
        """
        what = f"KOS RecordAudio at {self._address}"
        failure: BackendError
        try:
            for response in call:
                if self._call is not call:
                    return  # closed meanwhile: this stream is no longer anyone's
                if response.HasField("error"):
                    self.server_errors += 1
                    self.last_server_error = describe_error(response.error)
                    failure = BackendError(f"{what} reported {self.last_server_error}")
                    break
                if response.audio_data:
                    self._enqueue(bytes(response.audio_data), fmt)
            else:
                failure = BackendError(f"{what}: the server ended the stream")
        except BackendError as err:
            failure = err
        ended.set()
        with self._lock:
            current = self._call is call
        if current:  # not a close() from this side: tell the capture thread
            self._queue.put(_Failure(failure))

    def _enqueue(self, data: bytes, fmt: AudioFormat) -> None:
        now_ns = time.time_ns()
        self._last_data_mono = time.monotonic()
        if self._partial:
            data = self._partial + data
        whole = len(data) - len(data) % fmt.frame_bytes
        if whole != len(data):
            self.partial_frames += 1
        data, self._partial = data[:whole], data[whole:]
        if not data:
            return
        if self._queue.qsize() >= MAX_QUEUED_CHUNKS:
            self.overflows += 1
            self._lost = True
            return
        frames = whole // fmt.frame_bytes
        capture_ns = now_ns - frames * NS_PER_S // fmt.sample_rate_hz
        self._queue.put(CapturedBlock(data, capture_ns, self._lost))
        self._lost = False

