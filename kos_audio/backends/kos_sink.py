"""The robot's speaker behind the KOS ``SoundService`` (gRPC ``PlayAudio``), as a sink.

:class:`KosSink` negotiates a playback config with ``GetAudioInfo`` and sends each utterance
(a run of audible blocks) as one ``PlayAudio`` client stream, paced to real time with a small
lead of silence. grpc is imported here (through the protocol layer) only.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

from kos_audio.backends.kos_config import (
    DEFAULT_TIMEOUT_S,
    KosConfig,
    closest_config,
    describe_error,
)
from kos_audio.backends.streaming_sink import StreamingSink, Utterance
from kos_audio.core.convert import from_float, silence
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import PlaybackBlock
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


class _Call(Utterance):
    """One ``PlayAudio`` call and what this side sent on it (guarded by the sink's lock)."""

    def __init__(self, index: int, call: PlayAudioCall, outbox: _Outbox, preamble: int) -> None:
        super().__init__(index, call)
        self.call: PlayAudioCall = call
        self.outbox = outbox
        self.preamble = preamble  # leading requests that are config and lead, not audio
        self.idle_frames = 0
        self.frames_sent = 0


class KosSink(StreamingSink[_Call]):
    """Plays on a KOS robot's speaker over gRPC, one ``PlayAudio`` call per utterance.

    :meth:`open` asks ``GetAudioInfo`` and picks the closest playback config
    (:func:`~kos_audio.backends.kos_config.closest_config`; the engine converts to it). A call
    is a config-only first message (as pykos does), ``lead_s`` of silence, then every block in
    real time, silence included; it is half-closed after ``idle_close_s`` without audio.
    Interrupt, pacing and threads: :class:`~kos_audio.backends.streaming_sink.StreamingSink`.

    A ``success=True`` answer before this side ended the call is an early answer
    (:attr:`early_answers`): the audio the server never took goes on a new call (at most one
    block gRPC had taken may be lost). ``success=False`` (:attr:`server_errors`,
    :attr:`last_server_error`) and gRPC failures make :meth:`check` raise. Design: docs/.

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
        self._wanted = (sample_rate_hz, sample_format.bit_depth if sample_format else 0,
                        channels)
        super().__init__(AudioFormat(sample_rate_hz or 48_000, channels or 1,
                                     SampleFormat.from_bit_depth(self._wanted[1] or 16)),
                         block_ms=block_ms, thread_name="kos_audio-kos-sink",
                         lead_s=float(lead_s), count_late_pulls=True)
        self._address = address
        self._timeout_s = float(timeout_s)
        self._device_latency_s = float(output_latency_s)
        self._idle_close_s = float(idle_close_s)
        self._client: KosSoundClient | None = None
        self._config: KosConfig | None = None
        self._carry: list[PlayAudioRequest] = []  # unsent audio of an early-answered call
        self._failure: BackendError | None = None
        #: Calls the server answered before this side ended them.
        self.early_answers = 0
        #: Errors the server reported: ``success=False`` answers, ``GetAudioInfo.error``.
        self.server_errors = 0
        #: ``CODE: message`` of the last one.
        self.last_server_error = ""

    @property
    def output_latency_s(self) -> float:
        """The lead plus the robot's configured output latency (s)."""
        return self._lead_s + self._device_latency_s

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
            self._set_format(config.format)
            self._failure = None
            self._carry = []
        if old is not None:
            old.close()
        return config.format

    def describe(self) -> str:
        """E.g. ``KOS speaker at localhost:50051``."""
        return f"KOS speaker at {self._address}"

    def diagnostics(self) -> dict[str, object]:
        """``server_errors`` and ``early_answers``, as the speaker node publishes them."""
        return {"server_errors": self.server_errors, "early_answers": self.early_answers}

    # -- StreamingSink ---------------------------------------------------------------------
    def _feed(self, block: PlaybackBlock, start: int, now: float) -> bool:
        self._reap()
        if self._failure is not None or self._config is None:
            return False
        samples, audible = block.samples, block.audible_frames - start
        if start:
            samples = samples.copy()
            samples[:start] = 0.0  # the interrupted utterance's fade: not this one's audio
        utterance = self._utterance
        if utterance is None:
            if not (audible or self._carry):
                return False
            utterance = self._begin(self._config)
            if utterance is None:
                return False
        utterance.idle_frames = 0 if audible else utterance.idle_frames + len(samples)
        utterance.outbox.put(PlayAudioRequest(
            audio_data=from_float(samples, self._format.sample_format)))
        utterance.frames_sent += len(samples)
        if utterance.idle_frames >= self._idle_close_s * self._format.sample_rate_hz:
            utterance.outbox.close()
            self._end(utterance)
        return False

    def _begin(self, config: KosConfig) -> _Call | None:
        """Start a ``PlayAudio`` call (lock held)."""
        client = self._client
        if client is None:
            return None
        first = [PlayAudioRequest(config=config.to_message())]
        if self._lead_frames:
            first.append(PlayAudioRequest(audio_data=silence(self._format, self._lead_frames)))
        first.extend(self._carry)
        outbox = _Outbox(first)
        try:
            call = client.play_audio(outbox)
        except BackendError as err:
            self._failure = err
            return None
        utterance = _Call(self.streams, call, outbox, preamble=len(first) - len(self._carry))
        self._carry = []
        self._utterance = utterance
        self.streams += 1
        return utterance

    def _cancel(self, utterance: _Call) -> None:
        # Cancel first: ending the request stream first would be a half-close, which the
        # server may answer as a normal end of the utterance.
        utterance.call.cancel()
        utterance.outbox.abandon()

    def _check_calls(self) -> None:
        with self._lock:
            self._reap()
            failure = self._failure
        if failure is not None:
            raise failure

    def _reset(self) -> None:
        self._carry = []

    def _disconnect(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _reap(self) -> None:
        """Handle finished calls (lock held): early answers, failures."""
        for utterance in self._collect_done():
            if utterance.cancelled:
                continue
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
