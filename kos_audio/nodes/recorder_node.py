"""recorder_node: record an audio topic to safe, self-describing files on request.

Subscribes (relative names, so namespaces and remaps apply): ``audio_stamped``
(AudioDataStamped; or ``audio``, AudioData, with ``input.stamped:=false``) and ``audio_info``
(AudioInfo, latched). Services: ``~/start`` and ``~/stop`` (std_srvs/Trigger; the response message
is the file's absolute path, or the reason for refusing). Diagnostics on ``/diagnostics``.

The topic may carry raw PCM (``coding_format: wave``), Opus packets (``opus``, one per
message) or an MP3 byte stream (``mp3``): compressed audio is decoded and the decoded PCM
recorded (the file is PCM WAV/FLAC/OGG). Opus messages lost on the link are concealed by the
decoder, so the file has no hole; they are counted as ``concealed`` in the sidecar and the
diagnostics, not as gaps. A payload that cannot be decoded is dropped, logged and counted
(``corrupt_chunks``).

Each recording is a WAV/FLAC/OGG file plus a JSON sidecar (see
:mod:`kos_audio.core.recording.sidecar`), with a sample-accurate time axis (stamp gaps filled
with silence), an optional pre-roll, an optional duration limit, crash-safe WAV headers
(re-written every ``sync_period_s``) and names that never leave ``output_dir`` nor overwrite.
Incomplete recordings left by a crash are finished when the node starts (``recover``).

Threads: subscription callbacks (executor) copy the bytes (decode them, when compressed: Opus
costs about 1% of a core) and enqueue them; the recorder's writer thread does conversion,
file I/O, hashing and sidecars. A service callback waits for the writer's answer (creating
a file takes milliseconds; stopping also hashes the file, about 0.3 s per 100 MB): meanwhile
arriving audio waits in the subscription's queue (``qos.depth``). A single-threaded executor
on purpose: rclpy's MultiThreadedExecutor delayed audio callbacks by up to a second here, and
its coroutine callbacks busy-wait.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from kos_audio.core import AudioFormat
from kos_audio.core.recording import (
    Chunk,
    Container,
    FileAccess,
    GapPolicy,
    Recorder,
    RecorderConfig,
    RecorderState,
    RecordingError,
    StartRequest,
    prepare_output_dir,
    validate_prefix,
)
from kos_audio.core.recording.recovery import recover_incomplete
from kos_audio.core.stamping import NS_PER_S
from kos_audio.errors import AudioFormatError
from kos_audio.ros import diagnostics
from kos_audio.ros.incoming import IncomingAudio
from kos_audio.ros.messages import time_ns
from kos_audio.ros.params import Param, ParameterError, declare_all, qos_params
from kos_audio.ros.qos import LATCHED_QOS, audio_qos
from kos_audio.ros.runner import run_node
from kos_audio.ros.throttle import ProblemLog

DEFAULT_OUTPUT_DIR = "~/.ros/kos_audio/recordings"
DIAGNOSTICS_PERIOD_S = 1.0
#: Recording without a chunk for this long is reported as a warning.
STALL_S = 2.0
#: Bad-input log lines are repeated at most this often (s); counters count every case.
LOG_THROTTLE_S = 10.0
#: Audio may arrive this long (s) before its audio_info without a warning.
INFO_GRACE_S = 2.0

PARAMS = [
    Param("output_dir", DEFAULT_OUTPUT_DIR,
          "Directory of the recordings ('~' expanded; created if missing)"),
    Param("format", "wav", "File format of the next recording: wav (crash-safe header), "
          "flac (lossless, 8-24 bit) or ogg (Vorbis, lossy)", read_only=False,
          choices=tuple(c.value for c in Container)),
    Param("prefix", "recording", "File name prefix of the next recording: letters, digits, "
          "'.', '_', '-' (no paths)", read_only=False),
    Param("max_duration_s", 0.0, "Recordings stop by themselves at this length (s); 0 = no "
          "limit", read_only=False, float_range=(0.0, 31 * 24 * 3600.0)),
    Param("pre_roll_s", 0.0, "Audio from before the start request included in a recording (s)",
          float_range=(0.0, 600.0)),
    Param("input.stamped", True, "true: record audio_stamped (gaps found from stamps); "
          "false: record audio (AudioData, no stamps)"),
    Param("gap_tolerance_ms", 2.0, "A stamp later than expected by more than this is a gap, "
          "filled with silence (ms)", float_range=(0.0, 1000.0)),
    Param("max_gap_fill_s", 60.0, "Longer stamp jumps are not filled but re-anchor the time "
          "axis (s; 0 = never fill)", float_range=(0.0, 3600.0)),
    Param("sync_period_s", 1.0, "The file is made crash-readable this often (s)",
          float_range=(0.05, 60.0)),
    Param("max_queue_s", 10.0, "Audio the writer may fall behind before chunks are dropped (s)",
          float_range=(0.5, 600.0)),
    Param("group_readable", False, "false: recordings and sidecars are readable by their "
          "owner only (files 0600, a created output_dir 0700; voices are personal data); "
          "true: the owner's group may read them too (0640 / 0750). An existing output_dir "
          "keeps its mode"),
    Param("recover", True, "At start, finish recordings in output_dir left incomplete by a crash"),
    *qos_params(),
]
_RUNTIME = {p.name: p for p in PARAMS if not p.read_only}


class RecorderNode(Node):
    """Records one audio topic on request; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("recorder", **kwargs)
        p = declare_all(self, PARAMS)
        try:
            validate_prefix(p["prefix"])
        except RecordingError as err:
            raise ParameterError(f"parameter prefix refused: {err}") from err
        self._stamped: bool = p["input.stamped"]
        qos = audio_qos(p["qos.reliability"], p["qos.depth"])
        if self._stamped:
            self._sub = self.create_subscription(AudioDataStamped, "audio_stamped",
                                                 self._on_stamped, qos)
        else:
            self._sub = self.create_subscription(AudioData, "audio", self._on_plain, qos)
        self.create_subscription(AudioInfo, "audio_info", self._on_info, LATCHED_QOS)
        self._format: AudioFormat | None = None  # PCM, as decoded; None: no usable info
        self._format_problem = "no audio_info received yet"
        self._lock = threading.Lock()  # counters shared by the executor and the writer thread
        self._bad_chunks = 0
        self._chunks_without_info = 0
        self._first_without_info = 0.0  # monotonic time of the first such chunk; 0 = none
        self._problems = ProblemLog(self.get_logger(), LOG_THROTTLE_S)
        self._incoming = IncomingAudio(self._sub.topic_name, self._problems)
        self._failing = False  # an error since the last successful start: diagnostics ERROR
        self._last_chunk = time.monotonic()

        self.output_dir = Path(p["output_dir"]).expanduser()
        self._recorder = Recorder(RecorderConfig(
            output_dir=self.output_dir, source_topic=self._sub.topic_name,
            pre_roll_s=p["pre_roll_s"],
            gaps=GapPolicy(tolerance_ns=round(p["gap_tolerance_ms"] * 1e6),
                           max_fill_s=p["max_gap_fill_s"]),
            sync_period_s=p["sync_period_s"], max_queue_s=p["max_queue_s"],
            access=FileAccess.of(group_readable=p["group_readable"]),
        ), on_event=self._on_recorder_event).open()
        self._prepare_dir(recover=p["recover"])

        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag = diagnostics.DiagnosticsPublisher(self, hardware_id=str(self.output_dir))
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self.get_logger().info(
            f"ready to record {self._sub.topic_name} into {self.output_dir} "
            f"(pre-roll {p['pre_roll_s']:g} s); call {self.get_fully_qualified_name()}/start")

    def _prepare_dir(self, *, recover: bool) -> None:
        try:
            directory = prepare_output_dir(self.output_dir,
                                           dir_mode=self._recorder.config.access.dir_mode)
        except RecordingError as err:
            # Not fatal: the disk may be mounted later; every start tries again and says why.
            self._error(f"{err}; recordings will fail until it is fixed")
            return
        if not recover:
            return
        for line in recover_incomplete(directory):
            self.get_logger().warning(line)

    # -- executor: audio in ---------------------------------------------------------------
    def _on_stamped(self, msg: AudioDataStamped) -> None:
        self._enqueue(msg.audio.data, time_ns(msg.header.stamp), stamped=True)

    def _on_plain(self, msg: AudioData) -> None:
        self._enqueue(msg.data, None, stamped=False)

    def _enqueue(self, data: Any, stamp_ns: int | None, *, stamped: bool) -> None:
        """Copy and enqueue (never blocks, never touches the disk)."""
        fmt = self._format
        if fmt is None:
            with self._lock:
                self._chunks_without_info += 1
                first = self._first_without_info = self._first_without_info or time.monotonic()
            # At start-up audio often arrives just before the latched audio_info: not worth a
            # warning. Audio without a usable audio_info for INFO_GRACE_S is.
            if time.monotonic() - first >= INFO_GRACE_S:
                self._problems.warning("no-info", f"dropping audio: {self._format_problem}")
            return
        if not len(data):
            return
        decoded = self._incoming.decode(data, stamp_ns)  # corrupt: warned and counted
        if decoded is None or not decoded.pcm:  # (an MP3 piece may complete no frame yet)
            return
        raw = bytes(decoded.pcm)
        if decoded.stamp_ns is not None:
            stamp_ns = decoded.stamp_ns  # earlier than the message's by concealed frames
        if len(raw) % fmt.frame_bytes:
            with self._lock:
                self._bad_chunks += 1
            self._problems.warning(
                "partial-frames",
                f"dropping a {len(raw)}-byte chunk: not whole {fmt.describe()} frames")
            return
        if stamp_ns is None:
            # Unstamped: assume the chunk just finished arriving (for placement only).
            frames = len(raw) // fmt.frame_bytes
            stamp_ns = (self.get_clock().now().nanoseconds
                        - frames * NS_PER_S // fmt.sample_rate_hz)
        self._last_chunk = time.monotonic()
        self._recorder.push(Chunk(raw, fmt, stamp_ns, stamped,
                                  concealed_frames=decoded.concealed_frames,
                                  coding=self._incoming.coding))

    def _on_info(self, info: AudioInfo) -> None:
        old_coding = self._incoming.coding
        try:
            fmt = self._incoming.configure(info)
        except AudioFormatError as err:
            problem = f"audio_info refused: {err}"
            if problem != self._format_problem:  # audio_info is re-sent: say it once
                self._error(problem)
            self._format, self._format_problem = None, problem
            return
        coding = self._incoming.coding
        if fmt != self._format or coding != old_coding:
            old = self._format
            self._format = fmt
            self._first_without_info = 0.0
            if old is not None:
                # A codec change mid-stream is a format change: the decoded PCM is converted
                # to the recording's format, like any other.
                self.get_logger().info(
                    f"input format changed from {old.describe()} ({old_coding}) to "
                    f"{fmt.describe()} ({coding})"
                    + ("; converting to the recording's format" if
                       self._recorder.status.state is RecorderState.RECORDING else ""))

    # -- executor: services and parameters -------------------------------------------------
    def _on_start(self, _request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        request = StartRequest(
            prefix=self.get_parameter("prefix").value,
            container=Container.parse(self.get_parameter("format").value),
            max_duration_s=self.get_parameter("max_duration_s").value)
        fmt = self._format
        try:
            if fmt is None:
                raise RecordingError(f"cannot start: {self._format_problem} on "
                                     f"{self._sub.topic_name.rsplit('/', 1)[0]}/audio_info")
            path = self._recorder.start(request, fmt,
                                        now_ns=self.get_clock().now().nanoseconds)
        except RecordingError as err:
            response.success, response.message = False, str(err)
            self.get_logger().warning(f"start refused: {err}")
            return response
        response.success, response.message = True, str(path)
        with self._lock:
            self._failing = False
        limit = f", stops after {request.max_duration_s:g} s" if request.max_duration_s else ""
        self.get_logger().info(f"recording {fmt.describe()} to {path}{limit}")
        return response

    def _on_stop(self, _request: Trigger.Request, response: Trigger.Response
                 ) -> Trigger.Response:
        try:
            summary = self._recorder.stop()
        except RecordingError as err:
            response.success, response.message = False, str(err)
            self.get_logger().warning(f"stop refused: {err}")
            return response
        if summary.error:
            response.success = False
            response.message = f"{summary.path} ended with an error: {summary.error}"
            self._error(response.message)
            return response
        response.success, response.message = True, str(summary.path)
        gaps = summary.sidecar["gaps"]
        self.get_logger().info(
            f"recorded {summary.duration_s:.3f} s to {summary.path} ({gaps['count']} gaps, "
            f"{gaps['missing_s']:.3f} s filled; "
            f"{summary.sidecar['concealed']['concealed_s']:.3f} s lost and concealed)")
        return response

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for param in params:
            spec = _RUNTIME.get(param.name)
            if spec is None:
                continue
            try:
                spec.check(param.value)
                if param.name == "prefix":
                    validate_prefix(param.value)
            except (ParameterError, RecordingError) as err:
                return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    # -- recorder's writer thread ---------------------------------------------------------
    def _on_recorder_event(self, kind: str, message: str) -> None:
        if kind == "failed":
            self._error(message)
        else:
            self.get_logger().info(message)

    # -- any thread ------------------------------------------------------------------------
    def _error(self, message: str) -> None:
        with self._lock:
            self._failing = True
        self._problems.error(message, kind=message)  # only exact repeats are held back

    def _publish_diagnostics(self) -> None:
        status = self._recorder.status
        with self._lock:
            failing = self._failing
            bad, no_info = self._bad_chunks, self._chunks_without_info
        errors, last_error = self._problems.errors, self._problems.last_error
        recording = status.state is RecorderState.RECORDING
        level, message = diagnostics.OK, status.state.value
        if recording:
            message = f"recording {status.path}"
            if time.monotonic() - self._last_chunk > STALL_S:
                level, message = diagnostics.WARN, f"{message}: no audio for over {STALL_S:g} s"
        elif failing:
            level, message = diagnostics.ERROR, f"{status.state.value}: {last_error}"
        fmt = self._format
        self._diag.publish(level, message, {
            "state": status.state.value,
            "path": str(status.path or ""),
            "duration_s": status.duration_s,
            "gaps": status.gaps,
            "missing_s": status.missing_s,
            "concealed_s": status.concealed_s,
            "concealments": self._incoming.concealments,
            "corrupt_chunks": self._incoming.corrupt,
            "input_coding": self._incoming.coding or "unknown",
            "recordings": status.recordings,
            "dropped_chunks": status.dropped_chunks,
            "queued_s": status.queued_s,
            "bad_chunks": bad,
            "chunks_without_info": no_info,
            "input_topic": self._sub.topic_name,
            "input_format": fmt.describe() if fmt else self._format_problem,
            "output_dir": str(self.output_dir),
            "errors": errors,
            "last_error": last_error,
        })

    def destroy_node(self) -> None:
        """Finish any recording (end reason ``shutdown``) before the node goes away."""
        self._recorder.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``recorder_node`` executable."""
    return run_node(RecorderNode, executable="recorder_node", args=args,
                    doc=__doc__ or "", params=PARAMS)


if __name__ == "__main__":
    sys.exit(main())
