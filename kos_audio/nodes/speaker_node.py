"""speaker_node: plays audio_common_msgs speech on a sink (device, file, null), interruptibly.

Subscribes (relative names): ``audio`` (AudioData) or, with ``input.stamped``,
``audio_stamped`` (AudioDataStamped); ``audio_info`` (AudioInfo; a format change applies from
the next chunk); ``background/audio`` + ``background/audio_info`` (mixed under the speech,
ducked while it plays); ``interrupt`` (std_msgs/Empty). Payloads may be raw PCM
(``coding_format: wave``), one Opus packet per message (``opus``) or an MP3 byte stream cut
anywhere (``mp3``); compressed ones are decoded first (PyAV).
Publishes: ``is_speaking`` (std_msgs/Bool, latched, on every change); ``played/audio_stamped``,
``played/audio`` and ``played/audio_info`` (latched): what the sink plays, stamped when it
leaves the speaker (the echo reference; published only while subscribed).
With ``barge_in.enabled`` it subscribes ``voice_activity`` (std_msgs/Bool): the user talking
over the robot for ``barge_in.min_speech_ms`` interrupts it.
Services: ``~/interrupt`` (std_srvs/Trigger), ``~/pause`` (std_srvs/SetBool).
Diagnostics on ``/diagnostics``.

Threads: the ROS executor decodes, converts and enqueues chunks and serves control; the sink
pulls on its own real-time thread (PortAudio callback or pacing thread), which only copies;
a playback-loop thread (re)opens the sink with back-off and publishes is_speaking when the
last sample has left the device.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool, Empty
from std_srvs.srv import SetBool, Trigger

from kos_audio.backends import SINKS, SinkConfig, create_sink, print_devices
from kos_audio.core import AudioFormat, SampleFormat
from kos_audio.core.convert import Buffer
from kos_audio.core.formats import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, supported_sample_formats
from kos_audio.core.playback import EnqueueResult, PlaybackEngine
from kos_audio.core.sink_loop import PlaybackLoop, SinkState
from kos_audio.errors import KosAudioError
from kos_audio.ros import diagnostics
from kos_audio.ros.barge_in import BargeIn
from kos_audio.ros.incoming import IncomingAudio
from kos_audio.ros.messages import time_ns
from kos_audio.ros.params import (
    Param,
    ParameterError,
    declare_all,
    device_latency,
    on_parameters_set,
    qos_params,
)
from kos_audio.ros.played_publisher import PlayedPublisher
from kos_audio.ros.qos import LATCHED_QOS, audio_qos
from kos_audio.ros.runner import run_node
from kos_audio.ros.throttle import ProblemLog

DIAGNOSTICS_PERIOD_S = 1.0
#: Repeated bad-input log lines are throttled to one per this period (s) per kind; the
#: diagnostics counters count every one.
LOG_THROTTLE_S = 5.0
#: A sink consuming slower than this fraction of real time is reported (WARN).
SLOW_SINK_RATIO = 0.9
#: The engine's format until the sink has opened (then the sink's format replaces it).
PROVISIONAL_OUTPUT = AudioFormat(48000, 2, SampleFormat.F32LE)

_FORMATS = tuple(f.value for f in SampleFormat)

PARAMS = [
    Param("sink", "device", "Where audio goes", choices=tuple(SINKS)),
    Param("device", "", "sink=device: output device name (substring) or index; '' = default"),
    Param("device_latency", "high",
          "sink=device: PortAudio latency: 'high' (robust under load), 'low', or seconds"),
    Param("sample_rate", 0, "Sink sample rate (Hz); 0 = the sink's native rate",
          int_range=(0, MAX_SAMPLE_RATE_HZ)),
    Param("channels", 0, "Sink channel count; 0 = the sink's native count", int_range=(0, 255)),
    Param("sample_format", "", "Sink sample format; '' = the sink's native one; or one of: "
          + supported_sample_formats(), choices=("", *_FORMATS)),
    Param("input.sample_rate", 16000,
          "Rate (Hz) of incoming audio until an audio_info says otherwise",
          int_range=(MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ)),
    Param("input.channels", 1, "Channels of incoming audio until an audio_info says otherwise",
          int_range=(1, 255)),
    Param("input.sample_format", "S16LE",
          "Sample format of incoming audio until an audio_info says otherwise",
          choices=_FORMATS),
    Param("input.stamped", False,
          "Subscribe audio_stamped (AudioDataStamped; late chunks of an interrupted utterance "
          "are recognised by header.stamp) instead of audio (AudioData)"),
    Param("block_ms", 20.0, "Period of the sink's pulls (ms): the granularity of interrupts",
          float_range=(2.0, 500.0)),
    Param("max_queue_s", 60.0, "Queued speech beyond this (s) drops the oldest audio",
          float_range=(0.1, 3600.0)),
    Param("volume", 1.0, "Master gain of the mix (linear); may change at run time",
          read_only=False, float_range=(0.0, 4.0)),
    Param("background.gain", 0.5, "Background gain (linear) when no speech plays; may change",
          read_only=False, float_range=(0.0, 4.0)),
    Param("background.duck_gain", 0.15,
          "Background gain (linear) while speech plays; may change at run time",
          read_only=False, float_range=(0.0, 4.0)),
    Param("interrupt.fence_ms", 500.0,
          "After an interrupt, unstamped chunks are dropped for this long (ms) as late chunks "
          "of the interrupted utterance", float_range=(0.0, 1900.0)),
    Param("barge_in.enabled", False, "Interrupt the robot when voice_activity (echo_canceller's "
          "voice activity of the user) stays true for barge_in.min_speech_ms while it speaks"),
    Param("barge_in.min_speech_ms", 150.0, "How long (ms) the user must speak to interrupt",
          float_range=(0.0, 5000.0)),
    Param("played.chunk_ms", 20.0, "Duration (ms) of one played/audio_stamped chunk",
          float_range=(2.0, 500.0)),
    Param("file.path", "", "sink=file: the audio file (WAV, FLAC, OGG) written in real time"),
    Param("kos.address", "localhost:50051", "sink=kos: host:port of the KOS SoundService"),
    Param("kos.timeout_s", 5.0, "sink=kos: deadline of GetAudioInfo (s)",
          float_range=(0.1, 60.0)),
    Param("kos.output_latency_s", 0.1, "sink=kos: the robot's own latency from receiving "
          "audio to sound (s); is_speaking allows for it", float_range=(0.0, 5.0)),
    Param("resonite.socket", "",
          "sink=resonite_mic: Resonite IO socket path; '' = RESONITE_IO_SOCKET, else the "
          "single live resonite-*.sock in RESONITE_IO_SOCKET_DIR or ~/.resonite-io"),
    Param("resonite.lead_ms", 100.0, "sink=resonite_mic: the most audio (ms) sent ahead of "
          "real time, i.e. held in Resonite's buffer", float_range=(0.0, 1000.0)),
    # A TTS often publishes a whole sentence at once: the subscription's history must hold
    # the burst until the executor has taken it, or the oldest chunks are lost.
    *qos_params(default_depth=1000),
]


class SpeakerNode(Node):
    """Wires audio topics to a sink through the playback engine; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("speaker", **kwargs)
        p = declare_all(self, PARAMS)
        rate = p["sample_rate"]
        if rate and not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
            raise ParameterError(f"parameter sample_rate={rate} is invalid; use 0 (native) or "
                                 f"{MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz")
        try:
            initial = AudioFormat(p["input.sample_rate"], p["input.channels"],
                                  SampleFormat.parse(p["input.sample_format"]))
        except KosAudioError as err:
            raise ParameterError(str(err)) from err
        self._problems = ProblemLog(self.get_logger(), LOG_THROTTLE_S)
        # Until an audio_info says otherwise, both topics carry raw PCM in the input.* format.
        self.speech = IncomingAudio("audio", self._problems)
        self.background = IncomingAudio("background/audio", self._problems)
        self.speech.use(initial)
        self.background.use(initial)
        # Non-empty while the topic's last audio_info is refused: its chunks are dropped.
        self._info_errors = {"audio_info": "", "background/audio_info": ""}
        self.sink_name: str = p["sink"]
        self.sink = create_sink(self.sink_name, SinkConfig(
            sample_rate_hz=rate, channels=p["channels"],
            sample_format=SampleFormat.parse(p["sample_format"]) if p["sample_format"] else None,
            block_ms=p["block_ms"], device=p["device"],
            device_latency=device_latency(p["device_latency"]), file_path=p["file.path"],
            kos_address=p["kos.address"], kos_timeout_s=p["kos.timeout_s"],
            kos_output_latency_s=p["kos.output_latency_s"],
            resonite_socket=p["resonite.socket"], resonite_lead_ms=p["resonite.lead_ms"],
        ))
        self.sink.on_event = self._on_event
        self.engine = PlaybackEngine(
            PROVISIONAL_OUTPUT, max_queue_s=p["max_queue_s"], volume=p["volume"],
            background_gain=p["background.gain"], duck_gain=p["background.duck_gain"],
            fence_s=p["interrupt.fence_ms"] / 1000.0, block_s=p["block_ms"] / 1000.0)

        self._lock = threading.Lock()  # is_speaking publication, counters
        self._speaking: bool | None = None
        self._invalid_infos = 0
        self._last_infos: dict[str, tuple[Any, ...]] = {}
        self._last_diag = (time.monotonic(), 0)  # for the sink's consumption rate
        self._warned_overflow_s = 0.0

        self._pub_speaking = self.create_publisher(Bool, "is_speaking", LATCHED_QOS)
        self._update_speaking()
        qos = audio_qos(p["qos.reliability"], p["qos.depth"])
        # audio_info first: when both are ready in one executor pass, the format applies first.
        # TRANSIENT_LOCAL like ros-drivers' audio_capture; rclpy warns about a volatile one.
        self.create_subscription(AudioInfo, "audio_info", self._on_info, LATCHED_QOS)
        self.create_subscription(AudioInfo, "background/audio_info", self._on_background_info,
                                 LATCHED_QOS)
        if p["input.stamped"]:
            self.create_subscription(AudioDataStamped, "audio_stamped", self._on_audio_stamped,
                                     qos)
        else:
            self.create_subscription(AudioData, "audio", self._on_audio, qos)
        self.create_subscription(AudioData, "background/audio", self._on_background, qos)
        self.create_subscription(Empty, "interrupt", self._on_interrupt_topic,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.create_service(Trigger, "~/interrupt", self._on_interrupt)
        self.create_service(SetBool, "~/pause", self._on_pause)
        on_parameters_set(self, self._on_parameters_set)
        self._diag = diagnostics.DiagnosticsPublisher(self, hardware_id=self.sink.describe())
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)

        self.played = PlayedPublisher(self, qos, chunk_ms=p["played.chunk_ms"])
        self.barge_in: BargeIn | None = None
        if p["barge_in.enabled"]:
            self.barge_in = BargeIn(self, min_speech_ms=p["barge_in.min_speech_ms"],
                                    interrupt=self._interrupt, speaking=self.engine.speaking)
        self.loop = PlaybackLoop(self.sink, self.engine, on_event=self._on_event,
                                 on_tick=self._update_speaking,
                                 on_played=self.played.on_played)
        self.loop.start()
        stamped = "audio_stamped" if p["input.stamped"] else "audio"
        self.get_logger().info(
            f"playing {stamped} (until audio_info: {initial.describe()}) on "
            f"{self.sink.describe()}")

    # -- executor thread: audio --------------------------------------------------------------
    def _on_audio(self, msg: AudioData) -> None:
        self._play(msg.data, None, time.monotonic())

    def _on_audio_stamped(self, msg: AudioDataStamped) -> None:
        stamp = time_ns(msg.header.stamp)
        # A zero stamp is an unset header: treat the chunk as unstamped (fenced by time).
        self._play(msg.audio.data, stamp or None, time.monotonic())

    def _play(self, data: Buffer, stamp_ns: int | None, receive_mono: float) -> None:
        decoded = self._decode(self.speech, "audio_info", data, stamp_ns)
        if decoded is None:
            return
        pcm, fmt, start_ns = decoded
        result = self.engine.enqueue(pcm, fmt, now_ns=self._now_ns(), stamp_ns=start_ns,
                                     receive_mono=receive_mono)
        self._report(result)
        self._update_speaking()

    def _on_background(self, msg: AudioData) -> None:
        decoded = self._decode(self.background, "background/audio_info", msg.data, None)
        if decoded is not None:
            self._report(self.engine.enqueue_background(decoded[0], decoded[1]))

    def _decode(self, incoming: IncomingAudio, info_topic: str, data: Buffer,
                stamp_ns: int | None) -> tuple[Buffer, AudioFormat, int | None] | None:
        """The PCM of one message, its format and first stamp; None when it is dropped."""
        if not len(data):
            return None
        error = self._info_errors[info_topic]
        if error or incoming.format is None:
            self.engine.note_invalid()
            self._warn("invalid-format", f"{incoming.topic} chunk dropped: the announced "
                       f"{info_topic} is invalid ({error}); waiting for a valid one")
            return None
        decoded = incoming.decode(data, stamp_ns)  # a corrupt payload: warned and counted
        if decoded is None or not decoded.pcm:  # (an MP3 piece may complete no frame yet)
            return None
        return decoded.pcm, incoming.format, decoded.stamp_ns

    def _on_info(self, info: AudioInfo) -> None:
        self._configure(self.speech, info, "audio_info")

    def _on_background_info(self, info: AudioInfo) -> None:
        self._configure(self.background, info, "background/audio_info")

    def _configure(self, incoming: IncomingAudio, info: AudioInfo, topic: str) -> None:
        if self._repeated(info, topic):
            return
        old = (incoming.coding, incoming.format)
        try:
            fmt = incoming.configure(info)
        except KosAudioError as err:
            with self._lock:
                self._invalid_infos += 1
            self._error(f"{topic} refused, its chunks are dropped until a valid one: {err}",
                        kind=f"info {err}")
            self._info_errors[topic] = str(err)
            return
        self._info_errors[topic] = ""
        if (incoming.coding, fmt) != old:
            coding = "" if incoming.coding == "wave" else f" decoded from {incoming.coding}"
            self.get_logger().info(f"{incoming.topic} format now {fmt.describe()}{coding} "
                                   f"(from {topic})")

    def _repeated(self, info: AudioInfo, topic: str) -> bool:
        # ros-drivers re-sends audio_info every 5 s: only a change is worth handling (and
        # logging, when it is invalid).
        fields = (info.channels, info.sample_rate, info.sample_format, info.coding_format,
                  info.bitrate)
        if self._last_infos.get(topic) == fields:
            return True
        self._last_infos[topic] = fields
        return False

    def _report(self, result: EnqueueResult) -> None:
        if result.dropped is not None:
            self._warn(result.dropped.value, result.message)
        elif result.repaired:
            kinds = [k for k in ("whole number", "NaN") if k in result.message]
            self._warn(f"repaired {kinds}", result.message)
        if result.overflow_frames:
            seconds = result.overflow_frames / self.engine.output.sample_rate_hz
            self._warn("overflow", f"queue full ({self.engine.max_queue_s:g} s): dropped the "
                       f"oldest {seconds:.3f} s; the producer is faster than real time or the "
                       "sink is stalled")

    # -- executor thread: control ------------------------------------------------------------
    def _on_interrupt(self, request: Trigger.Request, response: Trigger.Response
                      ) -> Trigger.Response:
        response.message = self._interrupt("~/interrupt")
        response.success = True
        return response

    def _on_interrupt_topic(self, _msg: Empty) -> None:
        self._interrupt("interrupt topic")

    def _interrupt(self, origin: str) -> str:
        """Interrupt now; returns what happened, as logged (executor thread)."""
        speaking = self.engine.speaking()
        played = self.engine.utterance_played_s
        dropped = self.loop.interrupt(self._now_ns())
        self._update_speaking()
        what = (f"interrupted: played {played:.3f} s of the utterance, dropped {dropped:.3f} s"
                if speaking else f"interrupted: nothing was playing (dropped {dropped:.3f} s)")
        self.get_logger().info(f"{what} ({origin})")
        return what

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response
                  ) -> SetBool.Response:
        queued = self.engine.stats().queued_s
        if request.data:
            changed = self.engine.pause()
            response.message = (f"paused with {queued:.3f} s queued" if changed
                                else "already paused")
        else:
            changed = self.engine.resume()
            response.message = (f"resumed with {queued:.3f} s queued" if changed
                                else "not paused")
        response.success = True
        if changed:
            self.get_logger().info(response.message)
        self._update_speaking()
        return response

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        # The descriptors' ranges have already refused what set_gains would.
        gains = {"volume": "volume", "background.gain": "background_gain",
                 "background.duck_gain": "duck_gain"}
        change = {gains[p.name]: float(p.value) for p in params if p.name in gains}
        if change:
            self.engine.set_gains(**change)

    # -- any thread ----------------------------------------------------------------------------
    def _update_speaking(self) -> None:
        """Publish is_speaking if it changed (executor and playback-loop threads)."""
        with self._lock:
            speaking = self.engine.speaking()
            if speaking == self._speaking or not self.context.ok():
                return  # unchanged, or rclpy already shut down
            self._speaking = speaking
            try:
                self._pub_speaking.publish(Bool(data=speaking))
            except RuntimeError:
                # rclpy's RCLError (a RuntimeError, not public API): the context was shut
                # down between the check above and the publish.
                if self.context.ok():
                    raise

    def _now_ns(self) -> int:
        return int(self.get_clock().now().nanoseconds)

    def _warn(self, kind: str, message: str) -> None:
        """Log a bad-input warning: once per ``kind`` per :data:`LOG_THROTTLE_S`."""
        self._problems.warning(kind, message)

    def _error(self, message: str, *, kind: str = "error") -> None:
        self._problems.error(message, kind=kind)

    def _on_event(self, kind: str, message: str) -> None:
        if kind == "error":
            # Throttle repeats of the same failure, not different ones: the text before
            # "; reopening in ..." names the failure.
            self._error(message, kind="sink:" + message.split(";", maxsplit=1)[0])
        else:
            self.get_logger().info(message)

    def _publish_diagnostics(self) -> None:
        stats = self.engine.stats()
        state = self.loop.state
        now = time.monotonic()
        last_t, last_pulled = self._last_diag
        self._last_diag = (now, stats.pulled_frames)
        rate_ratio = ((stats.pulled_frames - last_pulled) / (now - last_t)
                      / stats.output.sample_rate_hz) if now > last_t else 0.0
        errors, last_error = self._problems.errors, self._problems.last_error
        level, message = diagnostics.OK, f"{stats.state.value}: {self.sink.describe()}"
        if state is not SinkState.RUNNING and self.loop.failures:
            level, message = diagnostics.ERROR, f"{state.value}: {self.loop.last_error}"
        elif state is SinkState.RUNNING and rate_ratio < SLOW_SINK_RATIO and last_pulled:
            level = diagnostics.WARN
            message = f"sink consumes {rate_ratio:.2f}x real time: {self.sink.describe()}"
        elif stats.dropped_overflow_s > self._warned_overflow_s:
            level, message = diagnostics.WARN, "queue overflowed: oldest audio dropped"
        self._warned_overflow_s = stats.dropped_overflow_s
        self._diag.publish(level, message, {
            **stats.diagnostics(),
            "speaking": self._speaking,
            "sink": self.sink.describe(),
            "sink_state": state.value,
            "input_format": (self.speech.format.describe()
                             if self.speech.format and not self._info_errors["audio_info"]
                             else "invalid"),
            "input_coding": self.speech.coding,
            "corrupt_chunks": self.speech.corrupt + self.background.corrupt,
            "concealed_s": self.speech.concealed_s + self.background.concealed_s,
            "concealments": self.speech.concealments + self.background.concealments,
            "underruns": self.sink.underruns,
            "sink_rate_ratio": rate_ratio,
            "invalid_infos": self._invalid_infos,
            "sink_failures": self.loop.failures,
            "played_chunks": self.played.chunks,
            "played_dropped_blocks": self.played.dropped,
            "barge_in_interrupts": self.barge_in.interrupts if self.barge_in else 0,
            "barge_in_ignored": self.barge_in.ignored if self.barge_in else 0,
            "errors": errors,
            "last_error": last_error,
            **self.sink.diagnostics(),
        })

    def destroy_node(self) -> None:
        """Fade out, close the sink, publish is_speaking false if it was true.

        The runner calls this before shutting rclpy down (also on SIGINT/SIGTERM), so the
        last is_speaking reaches subscribers; after a crash they should take a vanished
        publisher (``get_publisher_count() == 0``) for "not speaking".
        """
        self.loop.stop()
        self.played.close()
        with self._lock:
            was_speaking, self._speaking = self._speaking, False
        if was_speaking and self.context.ok():
            self._pub_speaking.publish(Bool(data=False))
            # Reliable delivery is asynchronous: give subscribers a moment to acknowledge
            # before the publisher goes away.
            self._pub_speaking.wait_for_all_acked(Duration(seconds=0.5))
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``speaker_node`` executable."""
    return run_node(SpeakerNode, executable="speaker_node", args=args, devices="output",
                    list_devices=lambda: print_devices(output=True),
                    doc=__doc__ or "", params=PARAMS)


if __name__ == "__main__":
    sys.exit(main())
