"""mic_node: a microphone (device, KOS, tone, file...) published as audio_common_msgs topics.

Publishes (relative names, so namespaces and remaps apply):
    ``audio`` (AudioData), ``audio_stamped`` (AudioDataStamped, stamp = time of the chunk's
    first sample), ``audio_info`` (AudioInfo, latched, re-sent every 5 s). With
    ``encoding: opus`` each message carries one Opus packet (``coding_format: opus``).
    ``audio`` and ``audio_stamped`` are only published while something subscribes to them (a
    subscriber, ``ros2 bag record``, ``ros2 topic echo``): the stamps still count every sample.
Services: ``~/enable`` (std_srvs/SetBool). Diagnostics on ``/diagnostics``.

Threads: the source runs on its own capture thread (and, for a device, PortAudio's callback
thread, which only enqueues); conversion, chunking, stamping and publishing happen on the
capture thread. The executor thread only serves services, parameters and timers.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections import deque
from typing import Any

from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import SetBool

from kos_audio.backends import SOURCES, SourceConfig, create_source, print_devices
from kos_audio.core import AudioFormat, CapturedBlock, CaptureLoop, ChunkStamper, SampleFormat
from kos_audio.core.capture import CaptureState
from kos_audio.core.codec import OpusEncoder
from kos_audio.core.formats import supported_sample_formats
from kos_audio.errors import KosAudioError
from kos_audio.ros import diagnostics
from kos_audio.ros.messages import audio_info, audio_messages
from kos_audio.ros.params import (
    Param,
    ParameterError,
    declare_all,
    device_latency,
    on_parameters_set,
    qos_params,
)
from kos_audio.ros.qos import LATCHED_QOS, audio_qos
from kos_audio.ros.runner import run_node
from kos_audio.ros.throttle import ProblemLog

#: ros-drivers' audio_capture re-sends audio_info this often (s); kept for its subscribers.
INFO_PERIOD_S = 5.0
DIAGNOSTICS_PERIOD_S = 1.0
#: Repeats of one failure are logged at most this often (s); diagnostics count every one.
LOG_THROTTLE_S = 5.0
#: Audio (s) held back at each new timeline while its start time is estimated (the earliest
#: of the blocks' capture times); see ChunkStamper. Delays only the first chunks of a stream.
ANCHOR_SETTLE_S = 0.2

PARAMS = [
    Param("source", "tone", "Where audio comes from", choices=tuple(SOURCES)),
    Param("device", "", "source=device: input device name (substring) or index; '' = default"),
    Param("device_latency", "high",
          "source=device: PortAudio latency: 'high' (robust under load), 'low', or seconds"),
    Param("sample_rate", 16000, "Published sample rate (Hz)", int_range=(1000, 384000)),
    Param("channels", 1, "Published channel count", int_range=(1, 255)),
    Param("sample_format", "S16LE", "Published sample format: " + supported_sample_formats(),
          choices=tuple(f.value for f in SampleFormat)),
    Param("chunk_ms", 20.0, "Duration of one published chunk (ms)", float_range=(1.0, 1000.0)),
    Param("frame_id", "microphone", "header.frame_id of audio_stamped"),
    Param("encoding", "pcm", "What audio/audio_stamped carry: 'pcm' (raw, coding_format wave) "
          "or 'opus' (one Opus packet per message, for thin links; needs PyAV: pip install av; "
          "S16LE at 8/12/16/24/48 kHz, 1-2 channels, chunk_ms 10/20/40/60)",
          choices=("pcm", "opus")),
    Param("opus.bitrate", 32000, "encoding=opus: bits/s (speech is clear from 16000 mono)",
          int_range=(6000, 510000)),
    Param("autostart", True, "Capture from the start; false waits for ~/enable"),
    Param("tone.frequency_hz", 440.0, "source=tone: frequency (Hz); may change at run time",
          read_only=False, float_range=(0.0, 20000.0)),
    Param("tone.amplitude", 0.5, "source=tone: amplitude (full scale 1.0); may change at run time",
          read_only=False, float_range=(0.0, 1.0)),
    Param("file.path", "", "source=file: audio file (WAV, FLAC, OGG) played as the microphone"),
    Param("file.loop", True, "source=file: restart at the end (same timeline, no gap)"),
    Param("kos.address", "localhost:50051", "source=kos: host:port of the KOS SoundService"),
    Param("kos.timeout_s", 5.0, "source=kos: deadline of GetAudioInfo/StopRecording (s); "
          "no audio for this long (at least 2 s) reconnects", float_range=(0.1, 60.0)),
    Param("resonite.socket", "",
          "source=resonite_speaker: Resonite IO socket path; '' = RESONITE_IO_SOCKET, else the "
          "single live resonite-*.sock in RESONITE_IO_SOCKET_DIR or ~/.resonite-io"),
    *qos_params(),
]


class MicNode(Node):
    """Wires one audio source to the audio topics; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("mic", **kwargs)
        p = declare_all(self, PARAMS)
        try:
            self.audio_format = AudioFormat(
                p["sample_rate"], p["channels"], SampleFormat.parse(p["sample_format"]))
        except KosAudioError as err:
            raise ParameterError(str(err)) from err
        self.frame_id: str = p["frame_id"]
        self._encoder: OpusEncoder | None = None
        if p["encoding"] == "opus":
            try:
                self._encoder = OpusEncoder(self.audio_format, frame_ms=p["chunk_ms"],
                                            bitrate=p["opus.bitrate"])
            except KosAudioError as err:
                raise ParameterError(f"encoding opus: {err}") from err
        self.source_name: str = p["source"]
        config = SourceConfig(
            format=self.audio_format, block_ms=p["chunk_ms"], device=p["device"],
            device_latency=device_latency(p["device_latency"]),
            tone_frequency_hz=p["tone.frequency_hz"], tone_amplitude=p["tone.amplitude"],
            file_path=p["file.path"], file_loop=p["file.loop"],
            kos_address=p["kos.address"], kos_timeout_s=p["kos.timeout_s"],
            resonite_socket=p["resonite.socket"],
        )
        self.chunk_frames = config.block_frames
        self.source = create_source(self.source_name, config)
        qos = audio_qos(p["qos.reliability"], p["qos.depth"])
        self._pub_audio = self.create_publisher(AudioData, "audio", qos)
        self._pub_stamped = self.create_publisher(AudioDataStamped, "audio_stamped", qos)
        self._pub_info = self.create_publisher(AudioInfo, "audio_info", LATCHED_QOS)
        self._info = audio_info(self.audio_format)
        if self._encoder is not None:
            self._info.coding_format = "opus"
            self._info.bitrate = p["opus.bitrate"]
        self._pub_info.publish(self._info)
        self.create_timer(INFO_PERIOD_S, lambda: self._pub_info.publish(self._info))
        self.create_service(SetBool, "~/enable", self._on_enable)
        on_parameters_set(self, self._on_parameters_set)
        self._diag = diagnostics.DiagnosticsPublisher(self, hardware_id=self.source.describe())
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)

        self._stamper: ChunkStamper | None = None
        self._restart_pending = False
        self._lock = threading.Lock()  # counters shared by capture and executor threads
        self._chunks = 0
        self._recent: deque[float] = deque(maxlen=200)  # monotonic publish times, for the rate
        self._problems = ProblemLog(self.get_logger(), LOG_THROTTLE_S)
        self._flowing = False  # audio arrived since the source (re)opened; said once each time
        self._capture = CaptureLoop(self.source, self._on_block, on_event=self._on_event)
        if p["autostart"]:
            self._capture.start()
        self.get_logger().info(
            f"{'opening' if p['autostart'] else 'ready to open (call ~/enable)'} "
            f"{self.source.describe()} for {self.audio_format.describe()} in "
            f"{p['chunk_ms']:g} ms chunks")

    # -- capture thread ------------------------------------------------------------------
    def _on_block(self, block: CapturedBlock) -> None:
        if not self._flowing:
            # Said when audio really flows, not when the node starts: an unreachable KOS
            # server must not look like a working microphone in the log.
            self._flowing = True
            self.get_logger().info(
                f"publishing {self.audio_format.describe()} from {self.source.describe()}")
        if self._restart_pending:
            self._restart_pending = False
            block = dataclasses.replace(block, discontinuity=True)
        stamper = self._stamper
        fmt = self.source.format  # known once the source is open
        if stamper is None or stamper.source != fmt:
            if stamper is None:
                stamper = self._stamper = ChunkStamper(
                    fmt, self.audio_format, self.chunk_frames,
                    clock_offset_ns=self._clock_offset_ns, settle_s=ANCHOR_SETTLE_S)
            else:  # reopened in another format: a new timeline
                self._publish_chunks(stamper.follow(fmt))
            if fmt != self.audio_format:
                self.get_logger().info(f"{self.source.describe()} delivers {fmt.describe()}; "
                                       f"converting to {self.audio_format.describe()}")
        self._publish_chunks(stamper.push(block))

    def _publish_chunks(self, chunks: list[Any]) -> None:
        # A publish costs DDS work even with no subscriber (measured: about a third of
        # mic_node's CPU for the topic nobody reads); counting subscriptions is a C call.
        plain_wanted = self._pub_audio.get_subscription_count() > 0
        stamped_wanted = self._pub_stamped.get_subscription_count() > 0
        for chunk in chunks:
            data = chunk.data if self._encoder is None else self._encode(chunk.data)
            plain, stamped = audio_messages(data, chunk.stamp_ns, self.frame_id)
            if plain_wanted:
                self._pub_audio.publish(plain)
            if stamped_wanted:
                self._pub_stamped.publish(stamped)
            with self._lock:
                self._chunks += 1
                self._recent.append(time.monotonic())

    def _encode(self, pcm: bytes) -> bytes:
        assert self._encoder is not None
        whole = self._encoder.frame_frames * self.audio_format.frame_bytes
        # A timeline's last chunk may be short (re-anchor, ~/enable false); Opus frames have
        # one size, so it is padded with silence (a few ms at most, before a stamp jump).
        return self._encoder.encode(pcm + bytes(whole - len(pcm)) if len(pcm) < whole else pcm)

    def _clock_offset_ns(self) -> int:
        return int(self.get_clock().now().nanoseconds) - time.time_ns()

    def _on_event(self, kind: str, message: str) -> None:
        if kind == "reopened":
            self._flowing = False
        if kind == "error":
            # Repeats of one failure are held back, different failures are not: the text
            # before "; retrying in ..." names the failure.
            self._problems.error(f"{self.source.describe()}: {message}",
                                 kind=message.split(";", maxsplit=1)[0])
        elif kind == "finished":
            self.get_logger().info(f"source finished: {message}")
        else:
            self.get_logger().info(message)

    # -- executor thread -----------------------------------------------------------------
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if request.data == self._capture.running:
            response.success = True
            response.message = f"capture already {'enabled' if request.data else 'disabled'}"
            return response
        if request.data:
            self._flowing = False
            self._restart_pending = self._stamper is not None
            self._capture.start()
        else:
            self._capture.stop()
            if self._stamper is not None:
                self._publish_chunks(self._stamper.flush())
        response.success = True
        response.message = f"capture {'enabled' if request.data else 'disabled'}"
        self.get_logger().info(response.message)
        return response

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        if self.source_name != "tone":
            return
        for param in params:
            if param.name in ("tone.frequency_hz", "tone.amplitude"):
                attr = "frequency_hz" if param.name.endswith("frequency_hz") else "amplitude"
                setattr(self.source, attr, float(param.value))

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._recent if now - t <= 5.0]
            chunks = self._chunks
        errors, last_error = self._problems.errors, self._problems.last_error
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 else 0.0
        state = self._capture.state
        stamper = self._stamper
        level = diagnostics.OK
        if state in (CaptureState.BACKOFF, CaptureState.OPENING) and errors:
            level = diagnostics.ERROR
        elif state is CaptureState.RUNNING and self._chunks and rate == 0.0:
            level = diagnostics.WARN
        self._diag.publish(level, f"{state.value}: {self.source.describe()}", {
            "state": state.value,
            "source": self.source.describe(),
            "format": self.audio_format.describe(),
            "source_format": self.source.format.describe(),
            "chunks_published": chunks,
            "chunk_rate_hz": rate,
            "overflows": self.source.overflows,
            **self.source.diagnostics(),
            "reanchors": stamper.reanchors if stamper else 0,
            "clock_drift_ms": (stamper.drift_ns / 1e6) if stamper else 0.0,
            "errors": errors,
            "last_error": last_error,
        })

    def destroy_node(self) -> None:
        """Stop capture (closing the source) before the node goes away."""
        self._capture.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``mic_node`` executable."""
    return run_node(MicNode, executable="mic_node", args=args, devices="input",
                    list_devices=lambda: print_devices(output=False),
                    doc=__doc__ or "", params=PARAMS)


if __name__ == "__main__":
    sys.exit(main())
