"""Resonite's virtual microphone as a sink: robot speech streamed into ``Microphone.StreamAudio``.

:class:`ResoniteMicSink` plays what the speaker node's engine mixes into Resonite IO's virtual
microphone over the Unix socket, one ``StreamAudio`` call per utterance, paced to real time.
grpc is imported here (through the protocol layer) only.
"""

from __future__ import annotations

import enum
import itertools
import math
import pathlib
import queue
import time
from collections.abc import Iterator, Mapping

import numpy as np

from kos_audio.backends.streaming_sink import StreamingSink, Utterance
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import PlaybackBlock
from kos_audio.errors import BackendError

try:
    from kos_audio.protocols.resonite_io import resolve_socket
    from kos_audio.protocols.resonite_io.v1 import (
        MICROPHONE_CHANNELS,
        SAMPLE_RATE_HZ,
        MicrophoneAudioFrame,
        MicrophoneStreamCall,
        ResoniteIoClient,
        ResoniteIoError,
        make_microphone_frame,
    )
except ImportError as _err:  # grpcio/protobuf missing
    raise ImportError(
        f"the Resonite IO backend needs grpcio and protobuf ({_err}); install them: "
        "apt-get install python3-grpcio python3-protobuf, or pip install grpcio protobuf"
    ) from _err

__all__ = ["DEFAULT_LEAD_MS", "MICROPHONE_FORMAT", "ResoniteMicSink"]

#: What ``Microphone.StreamAudio`` takes, always: 48 kHz mono float32 LE.
MICROPHONE_FORMAT = AudioFormat(SAMPLE_RATE_HZ, MICROPHONE_CHANNELS, SampleFormat.F32LE)
#: How far (ms) the sink may run ahead of real time: the most audio Resonite holds for us.
DEFAULT_LEAD_MS = 100.0
#: Deadline of unary calls (s).
DEFAULT_TIMEOUT_S = 5.0
#: Frames are ``block_ms`` long, clamped to this range (ms): Resonite's voice path encodes
#: 20 ms Opus frames, and shorter frames only cost more messages.
MIN_FRAME_MS = 10.0
MAX_FRAME_MS = 20.0
#: An utterance ends (graceful half-close) after this long (s) without audible audio, once
#: Resonite has played what it was sent: shorter pauses stay in one stream.
IDLE_CLOSE_S = 0.25
#: A half-closed stream whose summary has not come after this long (s) is cancelled.
SUMMARY_TIMEOUT_S = 5.0
#: While idle, the socket is looked for again this often (s): Resonite restarted elsewhere.
SOCKET_CHECK_S = 1.0
#: Audio (s) waiting for gRPC to take it beyond this means the transport is stuck.
MAX_SEND_BACKLOG_S = 2.0


class StreamState(enum.Enum):
    """Where one utterance's ``StreamAudio`` call is."""

    HOLDING = "holding"  # call placed; audio held until the lead is reached
    SENDING = "sending"  # audio goes out as it is pulled
    CLOSED = "closed"  # half-closed by us; waiting for the summary
    CANCELLED = "cancelled"  # cancelled by an interrupt (Resonite dropped its buffer)


class _Stream(Utterance):
    """One ``StreamAudio`` call and its accounting. Guarded by the sink's lock."""

    def __init__(self, index: int, call: MicrophoneStreamCall,
                 audio: queue.SimpleQueue[bytes | None], now: float) -> None:
        super().__init__(index, call)
        self.call: MicrophoneStreamCall = call
        self.queue = audio
        self.state = StreamState.HOLDING
        self.held: list[bytes] = []
        self.held_samples = 0
        self.sent_frames = 0
        self.sent_samples = 0
        self.started = now  # monotonic time of the first audible pull
        self.last_audible = now
        self.play_end = now  # monotonic time Resonite will have played all we sent
        self.closed = 0.0
        self.more_ready = False  # the last pull was all audio: the producer is ahead


def _frames(audio: queue.SimpleQueue[bytes | None]) -> Iterator[MicrophoneAudioFrame]:
    """The request stream: frame ids from 0, ``unix_nanos`` = send time; ends at ``None``.

    Runs on grpcio's request thread; blocks on the queue between frames.
    """
    frame_id = 0
    while (data := audio.get()) is not None:
        yield make_microphone_frame(frame_id, data)
        frame_id += 1


class ResoniteMicSink(StreamingSink[_Stream]):
    """Streams the speaker engine's output into Resonite IO's virtual microphone.

    Format: :data:`MICROPHONE_FORMAT` (48 kHz mono float32), whatever the node requests; the
    engine converts. One frame of ``block_ms`` (clamped to 10-20 ms) is pulled every frame
    period. Only audible frames are sent: the first one places a ``StreamAudio`` call, which
    is half-closed once nothing audible came for :data:`IDLE_CLOSE_S` and Resonite has played
    everything. Frame ids count from 0 per call, ``unix_nanos`` is the send time.

    Lead policy: Resonite never pushes back and drops its oldest audio past 2 s, so the sink
    models that buffer (sent minus what 48 kHz has played since) and tops it up to
    ``lead_ms``, no further; the start of an utterance is held until ``lead_ms`` of it is
    there (or ``lead_ms`` has passed). :attr:`underruns` counts the times the model ran dry
    while audio was ready here. Each completed stream's summary is compared with what was
    sent (:attr:`summary_mismatches`) and reported through :attr:`on_event`.

    :meth:`check` raises :class:`BackendError` for a failing or early-ended call, a missing
    summary, a stuck transport and, while idle, a socket that vanished or was replaced.
    :meth:`open` resolves the socket (``socket``, else ``RESONITE_IO_SOCKET``, else the single
    live ``resonite-*.sock`` in ``RESONITE_IO_SOCKET_DIR`` or ``~/.resonite-io``) and pings.
    Interrupt, pacing and threads: :class:`~kos_audio.backends.streaming_sink.StreamingSink`;
    :attr:`on_event` is called from :meth:`check` (the playback loop's thread).

    Args:
        socket: explicit socket path; ``""`` resolves as described above.
        lead_ms: the most audio (ms) Resonite may hold ahead of real time.
        block_ms: frame length (ms), clamped to 10-20 ms.
        timeout_s: deadline of the ping (s).
        environ: environment for the resolution; None reads ``os.environ`` (tests pass a dict).

    Raises:
        BackendError: ``lead_ms`` or ``timeout_s`` out of range.

    """

    def __init__(
        self,
        *,
        socket: str = "",
        lead_ms: float = DEFAULT_LEAD_MS,
        block_ms: float = 20.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not 0.0 <= lead_ms <= 1000.0:
            raise BackendError(f"the Resonite lead must be 0..1000 ms, got {lead_ms:g}")
        if not timeout_s > 0:
            raise BackendError(f"the Resonite IO timeout must be > 0 s, got {timeout_s}")
        super().__init__(MICROPHONE_FORMAT, block_ms=min(max(block_ms, MIN_FRAME_MS),
                                                         MAX_FRAME_MS),
                         thread_name="kos_audio-resonite-mic", lead_s=lead_ms / 1000.0,
                         count_late_pulls=False)
        self._socket = socket
        self._environ = environ
        self._timeout_s = float(timeout_s)
        self._rate = MICROPHONE_FORMAT.sample_rate_hz
        self._client: ResoniteIoClient | None = None
        self._path: pathlib.Path | None = None
        self._last_socket_check = 0.0
        #: Frames and samples handed to gRPC, all streams.
        self.frames_sent = 0
        self.samples_sent = 0
        #: Streams that completed with a summary.
        self.summaries = 0
        #: Summaries whose received frames/samples differ from what was sent.
        self.summary_mismatches = 0
        #: Sum of the summaries' ``dropped_frames``.
        self.server_dropped_frames = 0
        #: Streams that failed (error status, ended early, no summary).
        self.failed_streams = 0
        #: The last summary, as logged.
        self.last_summary = ""

    @property
    def lead_s(self) -> float:
        """The most audio (s) Resonite may hold ahead of real time."""
        return self._lead_s

    @property
    def frame_samples(self) -> int:
        """Samples per frame sent (:attr:`block_frames`)."""
        return self._block_frames

    @property
    def interrupted_streams(self) -> int:
        """Streams cancelled by :meth:`interrupt` (:attr:`cancelled_streams`)."""
        return self.cancelled_streams

    # -- AudioSink -------------------------------------------------------------------------
    @property
    def output_latency_s(self) -> float:
        """Audio Resonite still has to play, plus audio held for the lead (s); 0 when idle."""
        now = time.monotonic()
        with self._lock:
            utt = self._utterance
            if utt is None:
                return 0.0
            return max(0.0, utt.play_end - now) + utt.held_samples / self._rate

    def open(self) -> AudioFormat:
        """Resolve the socket, connect and ping the server.

        Returns:
            :data:`MICROPHONE_FORMAT`.

        Raises:
            BackendError: no socket could be resolved (none or several: the message says to
                set ``RESONITE_IO_SOCKET``), or the server does not answer (``UNAVAILABLE``,
                ``FAILED_PRECONDITION``...).

        """
        self.close()
        client = ResoniteIoClient(self._socket, timeout_s=self._timeout_s,
                                  environ=self._environ)
        try:
            path = client.connect()
            try:
                client.ping("kos_audio")
            except ResoniteIoError as err:
                if err.code != "UNIMPLEMENTED":  # a mod without Connection is still there
                    raise
        except BackendError:
            client.close()
            raise
        with self._lock:
            self._client, self._path = client, path
        self._last_socket_check = time.monotonic()
        return MICROPHONE_FORMAT

    def _check_calls(self) -> None:
        """Reap finished calls, report their summaries, and raise on a broken stream.

        Raises:
            BackendError: a call failed or ended early, a summary did not come, gRPC stopped
                taking frames, or (while idle) the socket vanished or another one replaced it.

        """
        now = time.monotonic()
        with self._lock:
            # Under the lock: the pacing thread may half-close the open call at any moment,
            # and then its completion is the normal end, not a failure.
            done = self._collect_done()
            pending = list(self._finished)
            current = self._utterance
        problem: BackendError | None = None
        for utt in done:
            outcome = self._summary(utt) if utt.ended else self._failure(
                utt, "while it was sending")
            problem = problem or outcome
        if current is not None and current.queue.qsize() * self._block_frames > (
                MAX_SEND_BACKLOG_S * self._rate):
            problem = problem or BackendError(
                f"{self.describe()}: more than {MAX_SEND_BACKLOG_S:g} s of audio is waiting "
                "for gRPC to send it")
        for utt in pending:
            if now - utt.closed > SUMMARY_TIMEOUT_S:
                problem = problem or self._no_summary(utt)
        if problem is not None:
            raise problem
        if current is None and not pending and not done and (
                now - self._last_socket_check >= SOCKET_CHECK_S):
            self._last_socket_check = now
            self._check_socket()

    def describe(self) -> str:
        """E.g. ``Resonite IO microphone at /home/me/.resonite-io/resonite-4242.sock``."""
        path = self._path
        where = str(path) if path is not None else (
            self._socket or "(socket resolved at connect: RESONITE_IO_SOCKET or search)")
        return f"Resonite IO microphone at {where}"

    def diagnostics(self) -> dict[str, object]:
        """The sink's own counters, as key/values for ``/diagnostics``."""
        with self._lock:
            state = self._utterance.state.value if self._utterance is not None else "idle"
        return {
            "resonite_stream": state,
            "resonite_streams": self.streams,
            "resonite_frames_sent": self.frames_sent,
            "resonite_samples_sent": self.samples_sent,
            "resonite_summaries": self.summaries,
            "resonite_summary_mismatches": self.summary_mismatches,
            "resonite_dropped_frames": self.server_dropped_frames,
            "resonite_interrupted_streams": self.interrupted_streams,
            "resonite_failed_streams": self.failed_streams,
            "resonite_buffer_ms": self.output_latency_s * 1000.0,
            "resonite_lead_ms": self.lead_s * 1000.0,
            "resonite_last_summary": self.last_summary,
        }

    # -- the pacing thread -----------------------------------------------------------------
    def _consume(self, block: PlaybackBlock) -> None:
        """Handle the puller's block, top Resonite's buffer up to the lead, end utterances."""
        now = time.monotonic()
        more = self._take(block, now)
        while more and self._wants_more(now):
            more = self._take(self._pull_block(self._block_frames), now)
        self._advance(now)

    def _feed(self, block: PlaybackBlock, start: int, now: float) -> bool:
        """Send (or hold) the block's audible frames; True if the whole block was audible."""
        audible = block.audible_frames
        full = audible == len(block.samples)
        if audible <= start:
            return full and audible > 0
        data = np.ascontiguousarray(block.samples[start:audible, 0], dtype="<f4").tobytes()
        utt = self._utterance
        if utt is None:
            utt = self._begin(now)
        utt.last_audible = now
        if utt.state is StreamState.HOLDING:
            utt.held.append(data)
            utt.held_samples += len(data) // 4
        else:
            self._send(utt, data, now)
        utt.more_ready = full
        return full

    def _begin(self, now: float) -> _Stream:
        """Place a new call (lock held). Does not wait: grpcio connects and sends later."""
        client = self._client
        if client is None:
            raise BackendError(f"{self.describe()} is not open")
        audio: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        utt = _Stream(self.streams, client.stream_microphone(_frames(audio)), audio, now)
        self._utterance = utt
        self.streams += 1
        return utt

    def _wants_more(self, now: float) -> bool:
        with self._lock:
            utt = self._utterance
            if utt is None:
                return False
            ahead = max(0.0, utt.play_end - now) + utt.held_samples / self._rate
            return ahead < self._lead_s

    def _send(self, utt: _Stream, data: bytes, now: float) -> None:
        """Put one frame on the call's queue and advance the buffer model (lock held)."""
        samples = len(data) // 4
        if utt.play_end < now:
            if utt.sent_frames and utt.more_ready:
                self._underruns += 1  # Resonite ran dry although audio was waiting here
            utt.play_end = now
        utt.play_end += samples / self._rate
        utt.queue.put(data)
        utt.sent_frames += 1
        utt.sent_samples += samples
        self.frames_sent += 1
        self.samples_sent += samples

    def _advance(self, now: float) -> None:
        """Release held audio once the lead is reached; half-close a finished utterance."""
        with self._lock:
            utt = self._utterance
            if utt is None:
                return
            if utt.state is StreamState.HOLDING and (
                    utt.held_samples >= self._lead_s * self._rate
                    or now - utt.started >= self._lead_s):
                held = b"".join(utt.held)
                utt.held, utt.held_samples = [], 0
                utt.state = StreamState.SENDING
                total = len(held) // 4
                count = math.ceil(total / self._block_frames)
                edges = [round(i * total / count) * 4 for i in range(count + 1)]
                for lo, hi in itertools.pairwise(edges):
                    self._send(utt, held[lo:hi], now)
            if (utt.state is StreamState.SENDING and now - utt.last_audible >= IDLE_CLOSE_S
                    and now >= utt.play_end):
                utt.state = StreamState.CLOSED
                utt.closed = now
                utt.queue.put(None)  # graceful half-close: Resonite answers the summary
                self._end(utt)

    # -- any thread ------------------------------------------------------------------------
    def _cancel(self, utterance: _Stream) -> None:
        utterance.state = StreamState.CANCELLED
        utterance.held, utterance.held_samples = [], 0
        if not utterance.call.done():
            utterance.call.cancel()
        utterance.queue.put(None)

    def _disconnect(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- the playback loop's thread --------------------------------------------------------
    def _no_summary(self, utt: _Stream) -> BackendError:
        """Give up on a half-closed call whose summary did not come."""
        utt.call.cancel()
        with self._lock:
            if utt in self._finished:
                self._finished.remove(utt)
            self.failed_streams += 1
        return BackendError(f"{self.describe()}: no summary for stream {utt.index} "
                            f"within {SUMMARY_TIMEOUT_S:g} s of its end")

    def _summary(self, utt: _Stream) -> BackendError | None:
        """Account for a call we ended, now done; the error to raise, if any."""
        try:
            summary = utt.call.result(timeout=0)
        except (ResoniteIoError, TimeoutError) as err:
            with self._lock:
                self.failed_streams += 1
            return BackendError(f"stream {utt.index} failed after it ended: {err}")
        frames, samples = int(summary.received_frames), int(summary.received_samples)
        dropped = int(summary.dropped_frames)
        text = (f"Resonite microphone stream {utt.index}: sent {utt.sent_frames} frames, "
                f"{utt.sent_samples} samples ({utt.sent_samples / self._rate:.3f} s); Resonite "
                f"received {frames} frames, {samples} samples, dropped {dropped}")
        mismatch = (frames, samples) != (utt.sent_frames, utt.sent_samples) or dropped > 0
        with self._lock:
            self.summaries += 1
            self.server_dropped_frames += dropped
            self.summary_mismatches += int(mismatch)
            self.last_summary = text
        self._emit("error" if mismatch else "summary",
                   f"{text}: MISMATCH, audio was lost" if mismatch else text)
        return None

    def _failure(self, utt: _Stream, when: str) -> BackendError:
        """The error of a call that ended on the server's side (lock not held)."""
        with self._lock:
            self.failed_streams += 1
        utt.queue.put(None)  # grpcio's request thread may wait for a frame that never comes
        try:
            summary = utt.call.result(timeout=0)
        except ResoniteIoError as err:
            hint = " (Resonite not ready; retrying)" if err.code == "FAILED_PRECONDITION" else ""
            return BackendError(f"stream {utt.index} failed {when}: {err}{hint}")
        except TimeoutError as err:  # cannot happen: done() was true
            return BackendError(f"stream {utt.index}: {err}")
        return BackendError(f"{self.describe()}: Resonite ended stream {utt.index} {when} "
                            f"(it received {summary.received_frames} frames)")

    def _check_socket(self) -> None:
        """Raise if the socket we use is gone or no longer the one resolution picks."""
        path = self._path
        try:
            now_path = resolve_socket(self._socket, environ=self._environ)
        except BackendError as err:
            raise BackendError(f"the Resonite IO socket {path} vanished: {err}") from err
        if now_path != path or not now_path.exists():
            raise BackendError(f"the Resonite IO socket {path} vanished (Resonite restarted?); "
                               f"reconnecting to {now_path}")
