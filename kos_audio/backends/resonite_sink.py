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
import threading
import time
from collections.abc import Iterator, Mapping

import numpy as np

from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import EventCallback, PlaybackBlock, PullCallback
from kos_audio.core.pacing import PacedPuller
from kos_audio.core.playback import FADE_S
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


class _Utterance:
    """One ``StreamAudio`` call and its accounting. Guarded by the sink's lock."""

    def __init__(self, index: int, now: float) -> None:
        self.index = index
        self.queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.call: MicrophoneStreamCall | None = None
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


class ResoniteMicSink:
    """Streams the speaker engine's output into Resonite IO's virtual microphone.

    Format: :data:`MICROPHONE_FORMAT` (48 kHz mono float32), whatever the node requests; the
    engine converts. A :class:`PacedPuller` thread pulls one frame of ``block_ms`` (clamped to
    10-20 ms) every frame period. Silence is not sent: an utterance starts with the first
    audible frame, which places a ``StreamAudio`` call, and ends with a graceful half-close
    once nothing audible came for :data:`IDLE_CLOSE_S` and Resonite has played everything
    (it keeps playing its buffer after a half-close). Frame ids count from 0 per call,
    ``unix_nanos`` is the send time and ``sample_count`` the frame's samples.

    Pacing with a bounded lead: Resonite never pushes back and drops its oldest audio past a
    2 s buffer, so the sink keeps a model of that buffer (what it sent minus what 48 kHz has
    played since) and tops it up to ``lead_ms`` and no further: when the producer is ahead
    (a TTS clip published at once), the first ``lead_ms`` go out at once and then one frame
    per frame period; when it is not (a real-time producer), the start of the utterance is
    held until ``lead_ms`` of it is there (or ``lead_ms`` has passed), so Resonite always
    holds about ``lead_ms`` and a late wake-up of this process does not starve it.
    :attr:`underruns` counts the times the model ran dry while audio was ready here.

    :meth:`interrupt` cancels the call, which makes Resonite drop its buffer at once.
    When a stream completes, Resonite's summary (received frames/samples, dropped) is compared
    with what was sent; a mismatch is counted (:attr:`summary_mismatches`) and reported.

    Failures surface from :meth:`check` as :class:`BackendError`, so the playback loop closes
    the sink and reopens it with back-off: a call failing ``FAILED_PRECONDITION`` (Resonite
    not ready) or ``UNAVAILABLE`` (gone), a server ending a stream early, a missing summary,
    and, while idle, a socket that vanished or was replaced (Resonite restarted: the reopen
    resolves the socket again). :meth:`open` resolves the socket (``socket``, else
    ``RESONITE_IO_SOCKET``, else the single live ``resonite-*.sock`` in
    ``RESONITE_IO_SOCKET_DIR`` or ``~/.resonite-io``) and pings the server; none or several
    sockets is an error naming ``RESONITE_IO_SOCKET``.

    Threads: the pacing thread only pulls, converts to bytes, keeps the accounting and puts
    frames on the call's queue (placing a call and cancelling one do not wait on the
    network); grpcio's thread sends; :meth:`check` (the playback loop's thread) reaps
    finished calls and reports through :attr:`on_event`. :meth:`interrupt` and :meth:`close`
    may come from any thread.

    Args:
        socket: explicit socket path; ``""`` resolves as described above.
        lead_ms: the most audio (ms) Resonite may hold ahead of real time.
        block_ms: frame length (ms), clamped to 10-20 ms.
        timeout_s: deadline of the ping (s).
        environ: environment for the resolution; None reads ``os.environ`` (tests pass a dict).

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
        self._socket = socket
        self._environ = environ
        self._timeout_s = float(timeout_s)
        self._rate = MICROPHONE_FORMAT.sample_rate_hz
        self.lead_s = lead_ms / 1000.0
        self.frame_samples = MICROPHONE_FORMAT.frames_for_ms(
            min(max(block_ms, MIN_FRAME_MS), MAX_FRAME_MS))
        self._lock = threading.Lock()  # utterances and counters: short sections only
        self._client: ResoniteIoClient | None = None
        self._path: pathlib.Path | None = None
        self._puller: PacedPuller | None = None
        self._pull: PullCallback | None = None
        self._utt: _Utterance | None = None
        self._finished: list[_Utterance] = []
        self._generation = 0  # bumped by interrupt(): blocks pulled before it are stale
        self._seen_generation = 0  # pacing thread
        self._skip_frames = 0  # leading audible frames to discard: the engine's fade-out
        self._last_socket_check = 0.0
        #: Receives ``(kind, message)`` from :meth:`check` (the playback loop's thread):
        #: ``"summary"`` for each completed stream, ``"error"`` for a summary mismatch. The
        #: node points it at its log; None drops them (the counters still count).
        self.on_event: EventCallback | None = None
        self._underruns = 0
        #: ``StreamAudio`` calls placed (one per utterance).
        self.streams = 0
        #: Frames and samples handed to gRPC, all streams.
        self.frames_sent = 0
        self.samples_sent = 0
        #: Streams that completed with a summary.
        self.summaries = 0
        #: Summaries whose received frames/samples differ from what was sent.
        self.summary_mismatches = 0
        #: Sum of the summaries' ``dropped_frames``.
        self.server_dropped_frames = 0
        #: Streams cancelled by :meth:`interrupt`.
        self.interrupted_streams = 0
        #: Streams that failed (error status, ended early, no summary).
        self.failed_streams = 0
        #: The last summary, as logged.
        self.last_summary = ""

    # -- AudioSink -------------------------------------------------------------------------
    @property
    def format(self) -> AudioFormat:
        """Always :data:`MICROPHONE_FORMAT` (48 kHz, 1 ch, F32LE)."""
        return MICROPHONE_FORMAT

    @property
    def output_latency_s(self) -> float:
        """Audio Resonite still has to play, plus audio held for the lead (s); 0 when idle."""
        now = time.monotonic()
        with self._lock:
            utt = self._utt
            if utt is None:
                return 0.0
            return max(0.0, utt.play_end - now) + utt.held_samples / self._rate

    @property
    def underruns(self) -> int:
        """Times Resonite's buffer (as modelled) ran dry while audio was ready here."""
        return self._underruns

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
            self._utt, self._finished = None, []
            self._generation = self._seen_generation = 0
            self._skip_frames = 0
        self._last_socket_check = time.monotonic()
        return MICROPHONE_FORMAT

    def start(self, pull: PullCallback) -> None:
        """Start the pacing thread: one pull per frame period from now on."""
        self._pull = pull
        puller = PacedPuller(self._rate, self.frame_samples, self._consume,
                             name="kos_audio-resonite-mic")
        self._puller = puller
        puller.start(pull)

    def check(self) -> None:
        """Reap finished calls, report their summaries, and raise on a broken stream.

        Called every few ms by the playback loop's thread; never waits on the network.

        Raises:
            BackendError: a call failed or ended early, a summary did not come, the pacing
                thread failed, gRPC stopped taking frames, or (while idle) the socket
                vanished or another one replaced it.

        """
        puller = self._puller
        if puller is not None and puller.error is not None:
            raise BackendError(f"{self.describe()}: pacing failed: {puller.error!r}"
                               ) from puller.error
        now = time.monotonic()
        with self._lock:
            current = self._utt
            finished = list(self._finished)
            # Under the lock: the pacing thread may half-close this call at any moment, and
            # then its completion is the normal end, not a failure.
            broken = current is not None and current.call is not None and current.call.done()
        problem: BackendError | None = None
        if current is not None and broken:
            problem = self._failure(current, "while it was sending")
        elif current is not None and current.queue.qsize() * self.frame_samples > (
                MAX_SEND_BACKLOG_S * self._rate):
            problem = BackendError(f"{self.describe()}: more than {MAX_SEND_BACKLOG_S:g} s of "
                                   "audio is waiting for gRPC to send it")
        for utt in finished:
            outcome = self._reap(utt, now)
            problem = problem or outcome
        if problem is not None:
            raise problem
        if current is None and not finished and now - self._last_socket_check >= SOCKET_CHECK_S:
            self._last_socket_check = now
            self._check_socket()

    def interrupt(self) -> None:
        """Cancel the current call: Resonite drops what it buffered. Any thread; no waiting."""
        with self._lock:
            self._generation += 1
            self._skip_frames = round(FADE_S * self._rate)
            utt, self._utt = self._utt, None
            if utt is not None:
                utt.state = StreamState.CANCELLED
                utt.held, utt.held_samples = [], 0
                self._finished.append(utt)
                self.interrupted_streams += 1
        if utt is not None:
            if utt.call is not None:
                utt.call.cancel()
            utt.queue.put(None)

    def close(self) -> None:
        """Stop pacing, cancel open calls, close the channel; idempotent, any thread."""
        puller, self._puller = self._puller, None
        if puller is not None:
            puller.stop()
        with self._lock:
            calls = ([self._utt] if self._utt is not None else []) + self._finished
            self._utt, self._finished = None, []
            client, self._client = self._client, None
        for utt in calls:
            if utt.call is not None and not utt.call.done():
                utt.call.cancel()
            utt.queue.put(None)
        if client is not None:
            client.close()

    def describe(self) -> str:
        """E.g. ``Resonite IO microphone at /home/me/.resonite-io/resonite-4242.sock``."""
        path = self._path
        where = str(path) if path is not None else (
            self._socket or "(socket resolved at connect: RESONITE_IO_SOCKET or search)")
        return f"Resonite IO microphone at {where}"

    def diagnostics(self) -> dict[str, object]:
        """The sink's own counters, as key/values for ``/diagnostics``."""
        with self._lock:
            state = self._utt.state.value if self._utt is not None else "idle"
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
        with self._lock:
            # An interrupt since the last block: this one may have been pulled before it.
            fresh = self._generation == self._seen_generation
            self._seen_generation = self._generation
        more = self._take(block, now) if fresh else False
        while more and self._wants_more(now):
            generation = self._generation
            assert self._pull is not None
            block = self._pull(self.frame_samples)
            with self._lock:
                if generation != self._generation:
                    self._seen_generation = self._generation
                    break
            more = self._take(block, now)
        self._advance(now)

    def _take(self, block: PlaybackBlock, now: float) -> bool:
        """Send (or hold) the block's audible frames; True if the whole block was audible."""
        audible = block.audible_frames
        with self._lock:
            # The engine fades the interrupted speech out over a few ms; Resonite already
            # dropped that utterance, so its fade-out must not start a new stream.
            start = min(self._skip_frames, audible)
            self._skip_frames = 0 if audible == 0 else self._skip_frames - start
        full = audible == len(block.samples)
        if audible <= start:
            return full and audible > 0
        data = np.ascontiguousarray(block.samples[start:audible, 0], dtype="<f4").tobytes()
        with self._lock:
            utt = self._utt
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

    def _begin(self, now: float) -> _Utterance:
        """Place a new call (lock held). Does not wait: grpcio connects and sends later."""
        utt = _Utterance(self.streams, now)
        client = self._client
        if client is None:
            raise BackendError(f"{self.describe()} is not open")
        utt.call = client.stream_microphone(_frames(utt.queue))
        self._utt = utt
        self.streams += 1
        return utt

    def _wants_more(self, now: float) -> bool:
        with self._lock:
            utt = self._utt
            if utt is None:
                return False
            ahead = max(0.0, utt.play_end - now) + utt.held_samples / self._rate
            return ahead < self.lead_s

    def _send(self, utt: _Utterance, data: bytes, now: float) -> None:
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
            utt = self._utt
            if utt is None:
                return
            if utt.state is StreamState.HOLDING and (
                    utt.held_samples >= self.lead_s * self._rate
                    or now - utt.started >= self.lead_s):
                held = b"".join(utt.held)
                utt.held, utt.held_samples = [], 0
                utt.state = StreamState.SENDING
                total = len(held) // 4
                count = math.ceil(total / self.frame_samples)
                edges = [round(i * total / count) * 4 for i in range(count + 1)]
                for lo, hi in itertools.pairwise(edges):
                    self._send(utt, held[lo:hi], now)
            if (utt.state is StreamState.SENDING and now - utt.last_audible >= IDLE_CLOSE_S
                    and now >= utt.play_end):
                utt.state = StreamState.CLOSED
                utt.closed = now
                utt.queue.put(None)  # graceful half-close: Resonite answers the summary
                self._finished.append(utt)
                self._utt = None

    # -- the playback loop's thread --------------------------------------------------------
    def _reap(self, utt: _Utterance, now: float) -> BackendError | None:
        """Account for a call we ended, once it is done; the error to raise, if any."""
        call = utt.call
        if call is not None and not call.done():
            if utt.state is StreamState.CLOSED and now - utt.closed > SUMMARY_TIMEOUT_S:
                call.cancel()
                with self._lock:
                    self._finished.remove(utt)
                    self.failed_streams += 1
                return BackendError(f"{self.describe()}: no summary for stream {utt.index} "
                                    f"within {SUMMARY_TIMEOUT_S:g} s of its end")
            return None
        with self._lock:
            self._finished.remove(utt)
        if call is None or utt.state is StreamState.CANCELLED:
            return None  # interrupted: the CANCELLED status is ours
        try:
            summary = call.result(timeout=0)
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

    def _failure(self, utt: _Utterance, when: str) -> BackendError:
        """The error of a call that ended on the server's side (lock not held)."""
        with self._lock:
            if self._utt is utt:
                self._utt = None
            self.failed_streams += 1
        utt.queue.put(None)  # grpcio's request thread may wait for a frame that never comes
        assert utt.call is not None
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

    def _emit(self, kind: str, message: str) -> None:
        callback = self.on_event
        if callback is not None:
            callback(kind, message)
