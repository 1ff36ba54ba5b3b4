"""The robot's speaker behind the KOS ``SoundService`` (gRPC ``PlayAudio``), as a sink.

:class:`KosSink` negotiates a playback config with ``GetAudioInfo`` and sends each utterance
(a run of audible blocks) as one ``PlayAudio`` client stream, paced to real time with a small
lead of silence. grpc is imported here (through the protocol layer) only.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from kos_audio.backends.kos_config import (
    DEFAULT_TIMEOUT_S,
    KosConfig,
    closest_config,
    describe_error,
)
from kos_audio.core.convert import from_float, silence
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import PlaybackBlock, PullCallback
from kos_audio.core.pacing import RealTimePacer
from kos_audio.core.playback import FADE_S
from kos_audio.errors import BackendError

try:
    from kos_audio.protocols.kos import KosSoundClient, PlayAudioCall, PlayAudioRequest
except ImportError as _err:  # grpcio/protobuf missing
    raise ImportError(
        f"the KOS backend needs grpcio and protobuf ({_err}); install them: "
        "apt-get install python3-grpcio python3-protobuf, or pip install grpcio protobuf"
    ) from _err

__all__ = ["DEFAULT_IDLE_CLOSE_S", "DEFAULT_LEAD_S", "DEFAULT_OUTPUT_LATENCY_S", "KosSink"]

#: Silence sent at the start of each utterance's stream (s): the robot's buffer then runs this
#: far ahead of real time, which covers network and scheduling jitter; it is also at most what
#: still plays after an interrupt cancels the stream.
DEFAULT_LEAD_S = 0.06
#: An utterance's stream is closed after this much silence (s) following its last audio.
DEFAULT_IDLE_CLOSE_S = 0.3
#: The robot's own output latency (s): from receiving PCM until it is heard. KOS does not
#: report it; measure it on the robot and set ``kos.output_latency_s``.
DEFAULT_OUTPUT_LATENCY_S = 0.1
#: Falling further behind real time than this (s) restarts the timeline instead of bursting.
MAX_CATCH_UP_S = 0.5


class _Outbox:
    """Requests of one ``PlayAudio`` call, handed to gRPC's request thread in order.

    The sink's pacing thread :meth:`put` s requests; gRPC's thread iterates. :meth:`close`
    ends the stream after what is queued (a half-close); :meth:`abandon` ends it at once and
    returns what was never handed over.
    """

    def __init__(self, first: list[PlayAudioRequest]) -> None:
        self._cond = threading.Condition()
        self._items: deque[PlayAudioRequest] = deque(first)
        self._closed = False
        self._abandoned = False
        self.taken = 0  # requests handed to gRPC so far

    def put(self, request: PlayAudioRequest) -> None:
        with self._cond:
            self._items.append(request)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def abandon(self) -> list[PlayAudioRequest]:
        with self._cond:
            self._abandoned = True
            rest = list(self._items)
            self._items.clear()
            self._cond.notify()
            return rest

    def __iter__(self) -> Iterator[PlayAudioRequest]:
        # gRPC's request thread. The timeout only bounds each wait; the loop re-checks.
        while True:
            with self._cond:
                while not (self._items or self._closed or self._abandoned):
                    self._cond.wait(0.5)
                if self._abandoned or not self._items:
                    return
                request = self._items.popleft()
                self.taken += 1
            yield request


@dataclass(eq=False)
class _Utterance:
    """One ``PlayAudio`` call and what this side did with it."""

    call: PlayAudioCall
    outbox: _Outbox
    preamble: int  # leading requests that are config and lead silence, not utterance audio
    idle_frames: int = 0
    ended: bool = False  # half-closed by us
    cancelled: bool = False  # interrupt or close
    frames_sent: int = 0


class KosSink:
    """Plays on a KOS robot's speaker over gRPC.

    On :meth:`open`: ``GetAudioInfo``, then the playback config closest to the request
    (:func:`~kos_audio.backends.kos_config.closest_config`; the engine converts to it). A pacing
    thread pulls one block every ``block_ms`` of real time. The first audible block starts a
    ``PlayAudio`` call: a first message carrying only ``config`` (as pykos does), one message
    of ``lead_s`` silence, then every block as one message of PCM, silence included, so the
    robot hears the same timeline as a local device would. Blocks go out as real time
    advances, never faster, so the robot holds about ``lead_s`` of audio: enough to ride out
    jitter, little enough that an interrupt (which cancels the call) stops the sound at once.
    Like a device's output latency, the lead delays every utterance's first sample by
    ``lead_s``; sending silence rather than pulling audio early keeps a producer that
    publishes in real time (streaming TTS) free of gaps. After ``idle_close_s`` without audio
    the stream is half-closed and the server's answer awaited in the background.

    Server answers: ``success=True`` before this side ended the stream (an early answer: the
    server stops reading) is counted in :attr:`early_answers`, and the rest of the utterance
    goes on a new ``PlayAudio`` call (a message gRPC had already taken from the stream may be
    lost: at most one block). ``success=False`` (counted in :attr:`server_errors`, with
    :attr:`last_server_error`) and gRPC failures make :meth:`check` raise, so the playback
    loop reports it, reopens with back-off and asks for the capabilities again.

    Threads: the pacing thread pulls, encodes and enqueues (never logs, never waits on the
    network); gRPC's threads consume the requests and run the done callbacks (which only
    enqueue); :meth:`interrupt` and :meth:`close` may come from any thread.

    Args:
        address: ``host:port`` of the KOS daemon.
        timeout_s: deadline of ``GetAudioInfo`` (s).
        sample_rate_hz, channels: wanted playback config; 0 = the robot's native choice
            (highest rate, fewest channels).
        sample_format: its bit depth is the wanted one (float 32 -> 32-bit integers); None =
            16 bit.
        block_ms: period of the pacing thread and size of one message (ms).
        output_latency_s: the robot's own latency from receiving PCM to sound (s); with the
            lead it makes :attr:`output_latency_s`, which ``is_speaking`` allows for.
        lead_s: silence sent ahead of each utterance (s).
        idle_close_s: silence after which an utterance's stream is closed (s).

    Raises:
        BackendError: an argument is out of range.

    """

    def __init__(
        self,
        *,
        address: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        sample_rate_hz: int = 0,
        channels: int = 0,
        sample_format: SampleFormat | None = None,
        block_ms: float = 20.0,
        output_latency_s: float = DEFAULT_OUTPUT_LATENCY_S,
        lead_s: float = DEFAULT_LEAD_S,
        idle_close_s: float = DEFAULT_IDLE_CLOSE_S,
    ) -> None:
        if not timeout_s > 0:
            raise BackendError(f"kos.timeout_s must be > 0, got {timeout_s}")
        if output_latency_s < 0 or lead_s < 0 or idle_close_s <= 0 or block_ms <= 0:
            raise BackendError("KOS sink: latencies must be >= 0, block and idle time > 0")
        self._address = address
        self._timeout_s = float(timeout_s)
        self._wanted = (sample_rate_hz, sample_format.bit_depth if sample_format else 0,
                        channels)
        self._block_ms = block_ms
        self._device_latency_s = float(output_latency_s)
        self._lead_s = float(lead_s)
        self._idle_close_s = float(idle_close_s)
        self._format = AudioFormat(sample_rate_hz or 48_000, channels or 1,
                                   SampleFormat.from_bit_depth(self._wanted[1] or 16))
        self._lock = threading.Lock()  # everything below, between pacing/control/gRPC
        self._client: KosSoundClient | None = None
        self._config: KosConfig | None = None
        self._utterance: _Utterance | None = None
        self._carry: list[PlayAudioRequest] = []  # unsent audio of an early-answered call
        self._done: queue.SimpleQueue[_Utterance] = queue.SimpleQueue()
        self._failure: BackendError | None = None
        self._generation = 0  # bumped by interrupt: blocks pulled before it are stale
        self._skip_frames = 0  # the engine's interrupt fade-out, not sent
        self._running = False
        self._thread: threading.Thread | None = None
        self._pacer: RealTimePacer | None = None
        self._thread_error: Exception | None = None
        self._underruns = 0
        #: ``PlayAudio`` calls started.
        self.streams = 0
        #: Calls the server answered before this side ended them.
        self.early_answers = 0
        #: Calls cancelled by :meth:`interrupt`.
        self.cancelled_streams = 0
        #: Errors the server reported: ``success=False`` answers, ``GetAudioInfo.error``.
        self.server_errors = 0
        #: ``CODE: message`` of the last one.
        self.last_server_error = ""

    # -- AudioSink -------------------------------------------------------------------------
    @property
    def format(self) -> AudioFormat:
        """The negotiated playback format (the request's before :meth:`open`)."""
        return self._format

    @property
    def output_latency_s(self) -> float:
        """The lead plus the robot's configured output latency (s)."""
        return self._lead_s + self._device_latency_s

    @property
    def underruns(self) -> int:
        """Blocks sent after their time had come (the robot had run out of audio)."""
        return self._underruns

    def open(self) -> AudioFormat:
        """Ask the robot what it plays and pick the closest config.

        Raises:
            BackendError: unreachable, an error without capabilities, or nothing usable.

        """
        client = KosSoundClient(self._address, timeout_s=self._timeout_s)
        try:
            info = client.get_audio_info()
            if info.HasField("error"):
                self._note_server_error(describe_error(info.error))
                if not info.HasField("playback"):
                    raise BackendError(f"KOS GetAudioInfo at {self._address} failed: "
                                       f"{self.last_server_error}")
            rate, bits, channels = self._wanted
            config = closest_config(info.playback, sample_rate_hz=rate, bit_depth=bits,
                                    channels=channels, direction="playback")
        except BackendError:
            client.close()
            raise
        with self._lock:
            old, self._client = self._client, client
            self._config = config
            self._format = config.format
            self._failure = None
            self._carry = []
            self._thread_error = None
        if old is not None:
            old.close()
        return config.format

    def start(self, pull: PullCallback) -> None:
        """Start the pacing thread (returns at once)."""
        if self._thread is not None:
            return
        self._running = True
        self._pacer = RealTimePacer(self._format.sample_rate_hz)
        self._thread = threading.Thread(target=self._run, args=(pull, self._pacer),
                                        name="kos_audio-kos-sink", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise what went wrong since :meth:`start` (any thread, never blocks).

        Raises:
            BackendError: a ``PlayAudio`` call failed or was answered ``success=False``, or
                the pacing thread died.

        """
        with self._lock:
            self._reap()
            failure, thread_error = self._failure, self._thread_error
        if thread_error is not None:
            raise BackendError(f"KOS sink pacing failed: {thread_error}") from thread_error
        if failure is not None:
            raise failure

    def interrupt(self) -> None:
        """Cancel the current ``PlayAudio`` call at once (any thread, never blocks).

        The robot drops what it holds (at most the lead plus its own latency may have left
        already); the engine's short fade-out is not sent, since it would restart the
        interrupted speech on a new stream.
        """
        with self._lock:
            self._generation += 1
            self._carry = []
            self._skip_frames = round(FADE_S * self._format.sample_rate_hz)
            utterance, self._utterance = self._utterance, None
            if utterance is not None:
                utterance.cancelled = True
                self.cancelled_streams += 1
        if utterance is not None:
            # Cancel first: ending the request stream first would be a half-close, which the
            # server may answer as a normal end of the utterance.
            utterance.call.cancel()
            utterance.outbox.abandon()

    def close(self) -> None:
        """Stop the pacing thread, cancel the current call, close the channel; idempotent."""
        self._running = False
        thread, self._thread = self._thread, None
        pacer = self._pacer
        if pacer is not None:
            pacer.cancel()
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        with self._lock:
            utterance, self._utterance = self._utterance, None
            client, self._client = self._client, None
            self._carry = []
            if utterance is not None:
                utterance.cancelled = True
        if utterance is not None:
            utterance.call.cancel()  # before ending the requests: see interrupt()
            utterance.outbox.abandon()
        if client is not None:
            client.close()

    def describe(self) -> str:
        """E.g. ``KOS speaker at localhost:50051``."""
        return f"KOS speaker at {self._address}"

    # -- the pacing thread -----------------------------------------------------------------
    def _run(self, pull: PullCallback, pacer: RealTimePacer) -> None:
        block = self._format.frames_for_ms(self._block_ms)
        lead_ns = self._lead_s * 1e9
        frame = 0
        while self._running:
            if not pacer.wait_until(frame, 0.5):
                continue
            lag_ns = pacer.lag_ns(frame)
            with self._lock:
                streaming = self._utterance is not None
                generation = self._generation
            if lag_ns > MAX_CATCH_UP_S * 1e9:
                pacer.restart()
                frame = 0
                self._underruns += int(streaming)
            elif lag_ns > lead_ns and streaming:
                self._underruns += 1  # later than the lead: the robot ran out of audio
            samples = pull(block)
            try:
                self._consume(samples, generation)
            except Exception as err:  # handed to the playback loop through check()
                self._thread_error = err
                self._running = False
                return
            frame += block

    def _consume(self, block: PlaybackBlock, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # pulled before an interrupt: part of the cancelled utterance
            self._reap()
            if self._failure is not None or self._config is None:
                return
            samples, audible = block.samples, block.audible_frames
            if self._skip_frames and audible:
                skip = min(self._skip_frames, audible)
                self._skip_frames -= skip
                audible -= skip
                if audible:
                    samples = samples.copy()
                    samples[:skip] = 0.0
            elif not audible:
                self._skip_frames = 0  # the fade (if any) is over
            utterance = self._utterance
            if utterance is None:
                if not (audible or self._carry):
                    return
                utterance = self._begin(self._config)
                if utterance is None:
                    return
            if audible:
                utterance.idle_frames = 0
            else:
                utterance.idle_frames += len(samples)
            utterance.outbox.put(PlayAudioRequest(
                audio_data=from_float(samples, self._format.sample_format)))
            utterance.frames_sent += len(samples)
            if utterance.idle_frames >= self._idle_close_s * self._format.sample_rate_hz:
                self._end(utterance)

    def _begin(self, config: KosConfig) -> _Utterance | None:
        """Start a ``PlayAudio`` call (lock held)."""
        client = self._client
        if client is None:
            return None
        first = [PlayAudioRequest(config=config.to_message())]
        lead_frames = round(self._lead_s * self._format.sample_rate_hz)
        if lead_frames:
            first.append(PlayAudioRequest(audio_data=silence(self._format, lead_frames)))
        first.extend(self._carry)
        outbox = _Outbox(first)
        try:
            call = client.play_audio(outbox)
        except BackendError as err:
            self._failure = err
            return None
        utterance = _Utterance(call, outbox, preamble=len(first) - len(self._carry))
        self._carry = []
        self._utterance = utterance
        self.streams += 1
        # On a gRPC thread (or right here if already done): only enqueue, take no lock.
        call.add_done_callback(lambda _call: self._done.put(utterance))
        return utterance

    def _end(self, utterance: _Utterance) -> None:
        """Half-close the utterance's stream (lock held); its answer is reaped later."""
        utterance.ended = True
        utterance.outbox.close()
        if self._utterance is utterance:
            self._utterance = None

    def _reap(self) -> None:
        """Handle finished calls (lock held): early answers, failures."""
        while True:
            try:
                utterance = self._done.get_nowait()
            except queue.Empty:
                return
            if utterance.cancelled:
                continue
            current = self._utterance is utterance
            if current:
                self._utterance = None
            try:
                response = utterance.call.result(0)
            except (BackendError, TimeoutError) as err:
                self._failure = BackendError(str(err))
                utterance.outbox.abandon()
                continue
            if not response.success:
                error = (describe_error(response.error) if response.HasField("error")
                         else "no error given")
                self._note_server_error(error)
                self._failure = BackendError(
                    f"KOS PlayAudio at {self._address} answered success=false: {error}")
                utterance.outbox.abandon()
            elif not utterance.ended:
                # Early answer: the server stopped reading. The audio it never got goes on a
                # new call, behind that call's own config and lead.
                self.early_answers += 1
                rest = utterance.outbox.abandon()
                self._carry = rest[max(0, utterance.preamble - utterance.outbox.taken):]

    def _note_server_error(self, error: str) -> None:
        self.server_errors += 1
        self.last_server_error = error
