"""echo_canceller: the microphone without the robot's own voice, and when the user speaks.

Subscribes (relative names: put the node in the microphone's namespace, or remap):
    ``audio_stamped`` + ``audio_info`` (the microphone's, AudioDataStamped + latched
    AudioInfo), and the speaker's ``played/audio_stamped`` + ``played/audio_info`` (what it
    played, stamped with the time its first sample left the speaker; parameters
    ``reference_topic``/``reference_info_topic``).
Publishes:
    ``clean/audio_stamped`` (AudioDataStamped, the microphone's stamps unchanged: clean chunk
    k has exactly the frames of microphone chunk k), ``clean/audio`` (AudioData),
    ``clean/audio_info`` (latched; mono, the microphone's rate and sample format) and
    ``voice_activity`` (std_msgs/Bool, latched, on change). Diagnostics on ``/diagnostics``.

Both inputs may carry raw PCM (``coding_format: wave``), Opus packets (``opus``, e.g. mic_node
with ``encoding: opus``) or an MP3 byte stream (``mp3``): compressed payloads are decoded
first, and ``clean/`` is always raw PCM (``clean/audio_info`` says ``wave``). A microphone
chunk following lost Opus messages carries their concealment in front, so its clean chunk is
longer and stamped where the loss began. Undecodable payloads are dropped, logged and counted
(``corrupt_chunks``).

Without a reference (speaker silent or not running, or stamps further than
``max_reference_offset_ms`` from the microphone's), the microphone passes through the
canceller unchanged but for its high-pass filter, and the diagnostics say ``reference:
missing``.

Threads: subscription callbacks only enqueue messages; decoding, conversion, echo
cancellation, voice activity and publishing run on one worker thread (WebRTC's state belongs
to one thread). The executor thread serves parameters and the diagnostics timer.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Bool

from kos_audio.core.convert import from_float
from kos_audio.core.echo import (
    EchoCanceller,
    EchoError,
    ReferenceTimeline,
    VoiceActivity,
)
from kos_audio.core.echo.canceller import load_processor_class
from kos_audio.core.echo.vad import silero_scorer
from kos_audio.core.formats import AudioFormat
from kos_audio.errors import KosAudioError
from kos_audio.ros import diagnostics
from kos_audio.ros.incoming import IncomingAudio
from kos_audio.ros.messages import audio_info, audio_messages, time_ns
from kos_audio.ros.params import Param, declare_all, on_parameters_set, qos_params
from kos_audio.ros.qos import LATCHED_QOS, audio_qos
from kos_audio.ros.runner import run_node
from kos_audio.ros.throttle import ProblemLog

DIAGNOSTICS_PERIOD_S = 1.0
LOG_THROTTLE_S = 5.0
#: No reference for this long (s) means the speaker is not publishing: microphone chunks stop
#: waiting for it. Shorter pauses are a loaded machine: a chunk processed without its
#: reference would pass the robot's echo to the VAD (measured: a self-interrupt when two test
#: runs shared 2 cores and the reference paused for over 100 ms).
REFERENCE_STREAM_TIMEOUT_S = 1.0
#: Messages waiting for the worker, at most (about 20 s of 20 ms chunks on both streams);
#: beyond it the oldest are dropped and counted.
MAX_QUEUE = 2000
#: Chunks held while their stream's audio_info has not arrived, at most (each stream).
MAX_HELD_WITHOUT_FORMAT = 200

PARAMS = [
    Param("aec.enabled", True, "Cancel the speaker's echo (false: only select the channel "
          "and run the optional filters)"),
    Param("noise_suppression", False, "Also run WebRTC's noise suppressor (12 dB)"),
    Param("high_pass", False, "WebRTC's high-pass filter (always on while aec.enabled)"),
    Param("channel", -1, "Microphone channel to process; -1 = the average of all",
          int_range=(-1, 254)),
    Param("vad.enabled", True, "Publish voice_activity (Silero VAD on the cleaned audio)"),
    Param("vad.threshold", 0.5, "Speech probability at or above which a 32 ms window is "
          "speech; may change at run time", read_only=False, float_range=(0.0, 1.0)),
    Param("vad.onset_ms", 64.0, "Speech must last this long before voice_activity turns "
          "true (ms); may change at run time", read_only=False, float_range=(0.0, 2000.0)),
    Param("vad.hangover_ms", 300.0, "voice_activity stays true this long after speech ends "
          "(ms); may change at run time", read_only=False, float_range=(0.0, 10000.0)),
    Param("reference_topic", "played/audio_stamped",
          "What the speaker played (AudioDataStamped, stamped when it left the speaker)"),
    Param("reference_info_topic", "played/audio_info", "Format of reference_topic (AudioInfo)"),
    Param("max_reference_offset_ms", 2000.0,
          "Reference chunks stamped further than this from the microphone's time are "
          "refused (a speaker on another clock)", float_range=(10.0, 3_600_000.0)),
    Param("reference_wait_ms", 300.0,
          "A microphone chunk waits at most this long for its reference to arrive (while "
          "the speaker publishes one)", float_range=(0.0, 2000.0)),
    *qos_params(),
]


@dataclass(frozen=True, slots=True)
class _MicChunk:
    stamp_ns: int
    frame_id: str
    data: Any  # PCM in the microphone's format; the message's payload while not decoded
    arrived: float  # monotonic s
    decoded: bool = True  # False: arrived before the first audio_info, decode it then


class EchoCancellerNode(Node):
    """Wires ReferenceTimeline, EchoCanceller and VoiceActivity to topics; see the module."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("echo_canceller", **kwargs)
        p = declare_all(self, PARAMS)
        self._p = p
        self._aec_enabled: bool = p["aec.enabled"]
        self._vad_enabled: bool = p["vad.enabled"]
        # Missing libraries end the node at start with one line (run_node), not later.
        if self._aec_enabled or p["noise_suppression"] or p["high_pass"]:
            load_processor_class()
        if self._vad_enabled:
            silero_scorer()
        self._max_offset_ns = int(p["max_reference_offset_ms"] * 1e6)
        self._wait_s = p["reference_wait_ms"] / 1000.0
        qos = audio_qos(p["qos.reliability"], p["qos.depth"])
        self._pub_stamped = self.create_publisher(AudioDataStamped, "clean/audio_stamped", qos)
        self._pub_audio = self.create_publisher(AudioData, "clean/audio", qos)
        self._pub_info = self.create_publisher(AudioInfo, "clean/audio_info", LATCHED_QOS)
        self._pub_vad = self.create_publisher(Bool, "voice_activity", LATCHED_QOS)
        self._pub_vad.publish(Bool(data=False))

        self._cond = threading.Condition()
        self._events: deque[tuple[str, Any, float]] = deque()
        self._stop = False
        self.create_subscription(AudioDataStamped, "audio_stamped",
                                 lambda m: self._enqueue("mic", m), qos)
        self.create_subscription(AudioInfo, "audio_info",
                                 lambda m: self._enqueue("mic_info", m), LATCHED_QOS)
        self.create_subscription(AudioDataStamped, p["reference_topic"],
                                 lambda m: self._enqueue("ref", m), qos)
        self.create_subscription(AudioInfo, p["reference_info_topic"],
                                 lambda m: self._enqueue("ref_info", m), LATCHED_QOS)
        on_parameters_set(self, self._on_parameters_set)

        # Worker-owned state (the executor only reads counters for diagnostics).
        self._mic_format: AudioFormat | None = None
        self._ref_format: AudioFormat | None = None
        self._canceller: EchoCanceller | None = None
        self._timeline: ReferenceTimeline | None = None
        self._vad: VoiceActivity | None = None
        self._pending: deque[_MicChunk] = deque()
        # Reference chunks before their audio_info: (payload or PCM, its format if decoded,
        # stamp).
        self._ref_held: list[tuple[Any, AudioFormat | None, int]] = []
        self._last_ref_arrival: float | None = None
        self._config_error = ""
        self._counts = {"chunks_in": 0, "chunks_out": 0, "frames_out": 0, "bad_chunks": 0,
                        "queue_drops": 0, "reinitialisations": 0, "reference_chunks": 0,
                        "reference_without_format": 0, "held_without_format_drops": 0,
                        "voice_changes": 0}
        self._cpu_s = 0.0
        self._cpu_last = (time.monotonic(), 0.0)
        self._problems = ProblemLog(self.get_logger(), LOG_THROTTLE_S)
        self._mic_in = IncomingAudio("audio_stamped", self._problems)
        self._ref_in = IncomingAudio(p["reference_topic"], self._problems)
        self._diag = diagnostics.DiagnosticsPublisher(self, hardware_id="webrtc-aec3+silero")
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._run, name="echo-canceller", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"cancelling the echo of {self.resolve_topic_name(p['reference_topic'])} in "
            f"{self.resolve_topic_name('audio_stamped')}")

    # -- executor thread -----------------------------------------------------------------
    def _enqueue(self, kind: str, msg: Any) -> None:
        with self._cond:
            if len(self._events) >= MAX_QUEUE:
                self._events.popleft()
                self._counts["queue_drops"] += 1
            self._events.append((kind, msg, time.monotonic()))
            self._cond.notify()

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        with self._cond:  # the worker reads them between windows
            for param in params:
                if param.name in ("vad.threshold", "vad.onset_ms", "vad.hangover_ms"):
                    self._p[param.name] = float(param.value)
                    if self._vad is not None:
                        setattr(self._vad, param.name.split(".")[1], float(param.value))

    # -- worker thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                timeout = self._wait_timeout()
                if not self._events and not self._stop and timeout != 0.0:
                    self._cond.wait(timeout)
                if self._stop:
                    return
                events = list(self._events)
                self._events.clear()
            start = time.thread_time()
            try:
                for kind, msg, arrived in events:
                    self._handle(kind, msg, arrived)
                self._drain()
            except KosAudioError as err:  # a bad message must not end the worker
                self._problems.error(f"echo canceller: {err}", kind=type(err).__name__)
            self._cpu_s += time.thread_time() - start

    def _wait_timeout(self) -> float | None:
        """Seconds until the oldest pending chunk stops waiting for its reference."""
        if not self._pending or self._mic_format is None:
            return None
        left: float = self._pending[0].arrived + self._wait_s - time.monotonic()
        return max(0.0, left) + 0.001

    def _handle(self, kind: str, msg: Any, arrived: float) -> None:
        if kind == "mic":
            self._counts["chunks_in"] += 1
            chunk = _MicChunk(time_ns(msg.header.stamp), msg.header.frame_id, msg.audio.data,
                              arrived, decoded=False)
            if self._mic_format is not None:
                self._add_mic(chunk)
                return
            self._pending.append(chunk)
            if len(self._pending) > MAX_HELD_WITHOUT_FORMAT:
                self._pending.popleft()
                self._counts["held_without_format_drops"] += 1
        elif kind == "mic_info":
            self._drain(force=True)  # what came before is in the old format
            fmt = self._mic_in.configure(msg)
            held = [c for c in self._pending if not c.decoded]  # from before any audio_info
            self._pending = deque(c for c in self._pending if c.decoded)
            self._set_mic_format(fmt)
            for chunk in held:
                self._add_mic(chunk)
        elif kind == "ref_info":
            self._ref_format = self._ref_in.configure(msg)
            self._replay_references()
        elif kind == "ref":
            self._last_ref_arrival = arrived
            self._add_reference(msg.audio.data, None, time_ns(msg.header.stamp))

    def _add_mic(self, chunk: _MicChunk) -> None:
        """Decode a microphone payload (in arrival order) and queue its PCM."""
        decoded = self._mic_in.decode(chunk.data, chunk.stamp_ns)
        if decoded is None:
            return  # corrupt: warned and counted
        if decoded.pcm:  # (an MP3 piece may complete no frame yet)
            self._pending.append(_MicChunk(decoded.stamp_ns or chunk.stamp_ns, chunk.frame_id,
                                           decoded.pcm, chunk.arrived))

    def _add_reference(self, data: Any, fmt: AudioFormat | None, stamp_ns: int) -> None:
        """Add reference audio: a payload (``fmt`` None) or PCM already decoded in ``fmt``."""
        if fmt is None and self._ref_format is not None:
            decoded = self._ref_in.decode(data, stamp_ns)
            if decoded is None or not decoded.pcm:
                return
            data, fmt, stamp_ns = decoded.pcm, self._ref_format, decoded.stamp_ns or stamp_ns
        if self._timeline is None or fmt is None:
            # The latched audio_info (the reference's, or the microphone's, which sets the
            # timeline's rate) may come a moment after the first chunks: hold them.
            self._ref_held.append((data, fmt, stamp_ns))
            if len(self._ref_held) > MAX_HELD_WITHOUT_FORMAT:
                self._ref_held.pop(0)
                self._counts["reference_without_format"] += 1
            return
        self._counts["reference_chunks"] += 1
        self._timeline.add(data, fmt, stamp_ns)

    def _replay_references(self) -> None:
        held, self._ref_held = self._ref_held, []
        for data, fmt, stamp_ns in held:
            self._add_reference(data, fmt, stamp_ns)

    def _set_mic_format(self, fmt: AudioFormat) -> None:
        if fmt == self._mic_format:
            return
        p = self._p
        old = self._mic_format
        self._mic_format = fmt
        if self._timeline is None or self._timeline.sample_rate_hz != fmt.sample_rate_hz:
            self._timeline = ReferenceTimeline(fmt.sample_rate_hz,
                                               max_offset_ns=self._max_offset_ns)
        channel = p["channel"] if p["channel"] < fmt.channels else -1
        self._config_error = ""
        if channel != p["channel"]:
            self._config_error = (f"channel {p['channel']} is not a channel of "
                                  f"{fmt.describe()}: using the average")
        options = {"noise_suppression": p["noise_suppression"], "high_pass": p["high_pass"]}
        try:
            self._canceller = EchoCanceller(fmt, channel=channel, enabled=self._aec_enabled,
                                            **options)
        except EchoError as err:  # an unsupported rate: pass the channel through
            self._config_error = str(err)
            self._canceller = EchoCanceller(fmt, channel=channel, enabled=False)
        if self._config_error:
            self._problems.error(self._config_error, kind="config")
        self._vad = VoiceActivity(
            fmt.sample_rate_hz, threshold=p["vad.threshold"], onset_ms=p["vad.onset_ms"],
            hangover_ms=p["vad.hangover_ms"]) if self._vad_enabled else None
        self._counts["reinitialisations"] += 1
        self._replay_references()
        self._pub_info.publish(audio_info(self._canceller.output_format))
        self.get_logger().info(
            f"microphone {'is' if old is None else 'changed to'} {fmt.describe()}; publishing "
            f"{self._canceller.output_format.describe()} on clean/")

    def _drain(self, *, force: bool = False) -> None:
        """Process pending microphone chunks whose reference is in (or waited long enough)."""
        if self._mic_format is None or self._timeline is None:
            return
        now = time.monotonic()
        while self._pending:
            chunk = self._pending[0]
            if not force and not self._ready(chunk, now):
                return
            self._pending.popleft()
            self._process(chunk)

    def _ready(self, chunk: _MicChunk, now: float) -> bool:
        assert self._timeline is not None and self._mic_format is not None
        if self._last_ref_arrival is None or \
                now - self._last_ref_arrival > max(self._wait_s, REFERENCE_STREAM_TIMEOUT_S):
            return True  # no reference stream at the moment: nothing to wait for
        if now - chunk.arrived >= self._wait_s:
            return True
        covered = self._timeline.covered_until_ns
        if covered is None:
            return False
        frames = len(chunk.data) // self._mic_format.frame_bytes
        return covered >= chunk.stamp_ns + frames * 10**9 // self._mic_format.sample_rate_hz

    def _process(self, chunk: _MicChunk) -> None:
        fmt, timeline, canceller = self._mic_format, self._timeline, self._canceller
        assert fmt is not None and timeline is not None and canceller is not None
        try:
            frames = fmt.frames_in(len(chunk.data))
        except KosAudioError as err:
            self._counts["bad_chunks"] += 1
            self._problems.warning("bad_chunk", f"dropping a microphone chunk: {err}")
            return
        reference = timeline.take(chunk.stamp_ns, frames)
        clean = canceller.process_samples(chunk.data, reference)
        data = from_float(clean, fmt.sample_format)
        plain, stamped = audio_messages(data, chunk.stamp_ns, chunk.frame_id)
        if self._pub_stamped.get_subscription_count() > 0:
            self._pub_stamped.publish(stamped)
        if self._pub_audio.get_subscription_count() > 0:
            self._pub_audio.publish(plain)
        self._counts["chunks_out"] += 1
        self._counts["frames_out"] += frames
        if self._vad is not None:
            with self._cond:  # parameters may change from the executor
                changes = self._vad.process(clean, chunk.stamp_ns)
            for change in changes:
                self._counts["voice_changes"] += 1
                self._pub_vad.publish(Bool(data=change.active))
                self.get_logger().info(
                    f"speech {'started' if change.active else 'ended'} at "
                    f"{change.stamp_ns / 1e9:.3f} (p={change.probability:.2f})")

    # -- executor thread -----------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        counts = dict(self._counts)
        timeline, canceller, vad = self._timeline, self._canceller, self._vad
        now = time.monotonic()
        last_t, last_cpu = self._cpu_last
        cpu = self._cpu_s
        self._cpu_last = (now, cpu)
        cpu_percent = 100.0 * (cpu - last_cpu) / max(now - last_t, 1e-3)
        reference = "missing"
        if timeline is not None and timeline.frames_taken and timeline.last_missing == 0:
            reference = "ok"
        level = diagnostics.OK
        if self._mic_format is None:
            message = "waiting for the microphone's audio_info"
        elif reference == "ok":
            message = "cancelling the echo"
        else:
            message = "no reference: passing the microphone through"
        refused = timeline.chunks_refused if timeline else 0
        if refused and timeline is not None and timeline.last_offset_ns is not None \
                and abs(timeline.last_offset_ns) > self._max_offset_ns:
            level = diagnostics.WARN
            message = (f"reference refused: stamped {timeline.last_offset_ns / 1e9:+.1f} s "
                       "from the microphone (another clock?); passing the microphone through")
        if self._config_error:
            level = diagnostics.ERROR
            message = self._config_error
        erle = canceller.echo_reduction_db if canceller else None
        self._diag.publish(level, message, {
            "reference": reference,
            "mic_format": self._mic_format.describe() if self._mic_format else "none",
            "reference_format": self._ref_format.describe() if self._ref_format else "none",
            "output_format": canceller.output_format.describe() if canceller else "none",
            "aec": "on" if canceller is not None and canceller.enabled else "off",
            **counts,
            "reference_chunks_refused": refused,
            "reference_segments": timeline.segments_started if timeline else 0,
            "reference_frames_missing": timeline.frames_missing if timeline else 0,
            "reference_offset_ms": (timeline.last_offset_ns / 1e6
                                    if timeline and timeline.last_offset_ns is not None
                                    else "unknown"),
            "rebuffer_latency_frames": canceller.latency_frames if canceller else 0,
            "echo_reduction_db": erle if erle is not None else "unknown",
            "voice_active": bool(vad.active) if vad else False,
            "vad_probability": float(vad.probability) if vad else 0.0,
            "pending_chunks": len(self._pending),
            "mic_coding": self._mic_in.coding or "none",
            "reference_coding": self._ref_in.coding or "none",
            "corrupt_chunks": self._mic_in.corrupt + self._ref_in.corrupt,
            "concealed_s": self._mic_in.concealed_s + self._ref_in.concealed_s,
            "worker_cpu_percent": cpu_percent,
            "errors": self._problems.errors,
            "last_error": self._problems.last_error,
        })

    def destroy_node(self) -> None:
        """Stop the worker before the node goes away."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._worker.join(5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``echo_canceller`` executable."""
    return run_node(EchoCancellerNode, executable="echo_canceller", args=args,
                    doc=__doc__ or "", params=PARAMS)


if __name__ == "__main__":
    sys.exit(main())
