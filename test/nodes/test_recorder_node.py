"""recorder_node as a real process: real mic_node audio (or a probe's) over real DDS, real files.

Every file is checked with independent readers (the standard library's ``wave``, ``hashlib``,
``json``) against what a RosProbe received from the same topic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import stat
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, wait_until
from mic_helpers import peak_hz
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from std_srvs.srv import SetBool, Trigger

from kos_audio.core import NS_PER_S, AudioFormat, SampleFormat, from_float
from kos_audio.core.recording import parse_iso8601
from kos_audio.ros.messages import audio_info

REPO = Path(__file__).resolve().parents[2]
MIC = "kos_audio.nodes.mic_node"
RECORDER = "kos_audio.nodes.recorder_node"
RATE = 16000
CHUNK_FRAMES = 320  # mic_node's 20 ms chunks at 16 kHz
CHUNK_S = CHUNK_FRAMES / RATE
SLACK_S = 0.25  # service round trips and executor scheduling on a loaded 2-core machine


def mic(namespace: str, **params: Any) -> NodeProcess:
    return NodeProcess(MIC, namespace=namespace, params={
        "source": "tone", "tone.frequency_hz": 440.0, "tone.amplitude": 0.5, **params})


def hear_from_the_first_chunk(ros: Any, heard: Any) -> None:
    """Enable a mic started with ``autostart=False`` and wait for its first chunk.

    ``heard`` (the probe's audio_stamped subscription) must exist before the call: then the
    probe hears every chunk the mic publishes, so it heard whatever a recording holds. The
    answer of ``~/enable`` proves the mic's publisher has matched that subscription: the probe
    announced it before this service client's response reader, in the same ordered discovery
    stream, and the answer needs that reader matched. (A mic that publishes from its start
    can match the probe after the recorder: a recorder whose executor is still behind on
    those first chunks when the start request comes then starts its file before the probe's
    first chunk, "the probe did not hear it"; measured with a loaded machine: a file starting
    only 2 chunks after the probe's first.)
    """
    response = ros.call(SetBool, "mic/enable", SetBool.Request(data=True), timeout_s=30.0)
    assert response.success, response.message
    heard.wait_for(1, timeout_s=30)


def recorder(namespace: str, out: Path, args: list[str] | None = None,
             **params: Any) -> NodeProcess:
    return NodeProcess(RECORDER, namespace=namespace, args=args,
                       params={"output_dir": str(out), **params})


def call(ros: Any, name: str, timeout_s: float = 20.0) -> Any:
    return ros.call(Trigger, f"recorder/{name}", Trigger.Request(), timeout_s=timeout_s)


def start_timed(ros: Any, timeout_s: float = 20.0) -> tuple[Any, int, int]:
    """Call start until the recorder knows the input format (audio_info arrives on discovery);
    the response and the wall time (ns) the successful call was sent and answered."""
    deadline = time.monotonic() + timeout_s
    while True:
        sent = time.time_ns()
        response = call(ros, "start")
        if response.success or "audio_info" not in response.message:
            return response, sent, time.time_ns()
        assert time.monotonic() < deadline, response.message
        time.sleep(0.1)


def start(ros: Any, timeout_s: float = 20.0) -> Any:
    return start_timed(ros, timeout_s)[0]


def read_wav(path: Path) -> tuple[tuple[int, int, int], bytes]:
    with wave.open(str(path), "rb") as w:
        return (w.getframerate(), w.getnchannels(), w.getsampwidth()), w.readframes(
            w.getnframes())


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def sidecar_of(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".json").read_text())  # type: ignore[no-any-return]


def stamp_ns(msg: AudioDataStamped) -> int:
    return int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)


def timeline(msgs: list[AudioDataStamped], frame_bytes: int = 2) -> tuple[int, bytes, int]:
    """The probe's audio on its stamps' time axis: (first stamp, bytes, stamp gaps).

    An independent statement of the recorder's rule: a chunk stamped later than where the
    previous one ended starts after silence; everything else is appended.
    """
    t0 = stamp_ns(msgs[0])
    out = bytearray()
    gaps = 0
    for m in msgs:
        at = round((stamp_ns(m) - t0) * RATE / NS_PER_S)
        have = len(out) // frame_bytes
        if at > have:
            gaps += 1
            out += bytes((at - have) * frame_bytes)
        out += bytes(m.audio.data)
    return t0, bytes(out), gaps


def stream_from(msgs: list[AudioDataStamped], t0_ns: int, frame_bytes: int = 2) -> bytes:
    """The probe's audio from the frame stamped ``t0_ns`` on."""
    first, data, _ = timeline(msgs, frame_bytes)
    offset = round((t0_ns - first) * RATE / NS_PER_S)
    assert 0 <= offset * frame_bytes < len(data), f"the probe did not hear {t0_ns}"
    return data[offset * frame_bytes:]


def gaps_within(msgs: list[AudioDataStamped], start_ns: int, end_ns: int) -> int:
    """Stamp gaps mic_node itself published inside [start_ns, end_ns) (0 on an idle machine)."""
    inside = [m for m in msgs if start_ns <= stamp_ns(m) < end_ns]
    return timeline(inside)[2] if inside else 0


def check_sidecar(path: Path, frames: int, topic: str) -> dict[str, Any]:
    side = sidecar_of(path)
    assert side["complete"] is True
    assert side["path"] == str(path) and path.is_absolute()
    assert (side["format"], side["sample_rate"], side["channels"], side["sample_format"]) == (
        "wav", RATE, 1, "S16LE")
    assert side["samples"] == frames
    assert side["duration_s"] == pytest.approx(frames / RATE)
    assert side["source_topic"] == topic
    assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    start_ns, end_ns = side["started_at_ns"], side["ended_at_ns"]
    assert end_ns - start_ns == frames * NS_PER_S // RATE
    # The ISO text is exact to the microsecond.
    assert abs(parse_iso8601(side["started_at"]) - start_ns) < 1000
    assert abs(parse_iso8601(side["ended_at"]) - end_ns) < 1000
    assert abs(start_ns - time.time_ns()) < 120 * NS_PER_S  # ROS (wall) time, not from zero
    return side


def wait_for_file(path: Path, timeout_s: float, **expected: Any) -> dict[str, Any]:
    def ready() -> bool:
        with contextlib.suppress(OSError, ValueError):
            side = sidecar_of(path)
            return all(side.get(k) == v for k, v in expected.items())
        return False
    wait_until(ready, timeout_s, f"sidecar of {path} with {expected}")
    return sidecar_of(path)


def wait_for_samples(path: Path, samples: int, timeout_s: float = 15.0) -> None:
    """Poll the in-progress sidecar (rewritten every sync) until the writer has ``samples``."""
    def done() -> bool:
        with contextlib.suppress(OSError, ValueError):
            return int(sidecar_of(path)["samples"]) >= samples
        return False
    wait_until(done, timeout_s, f"{samples} samples written to {path}")


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """A directory nobody may create files in, not even root (ext4's immutable attribute)."""
    path.mkdir()
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("chattr +i is not supported here (filesystem or missing CAP_LINUX_IMMUTABLE)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# ------------------------------------------------------------------------------- tests


def test_start_tone_stop_writes_the_tone_and_a_true_sidecar(
        ros: Any, namespace: str, tmp_path: Path) -> None:
    heard = ros.subscribe(AudioDataStamped, "audio_stamped")
    with mic(namespace, autostart=False), recorder(namespace, tmp_path) as rec:
        hear_from_the_first_chunk(ros, heard)  # the probe hears everything the file will hold
        stopped = call(ros, "stop")
        assert not stopped.success and stopped.message == "not recording"
        t_start_sent = time.monotonic()
        started = start(ros)
        t_started = time.monotonic()
        assert started.success, started.message
        path = Path(started.message)
        assert path.parent == tmp_path and path.name.startswith("recording_")
        again = call(ros, "start")
        assert not again.success and "already recording" in again.message
        time.sleep(2.0)
        t_stop_sent = time.monotonic()
        stopped = call(ros, "stop")
        t_stopped = time.monotonic()
        assert stopped.success, stopped.message
        assert stopped.message == str(path)
        again = call(ros, "stop")
        assert not again.success and again.message == "not recording"
        assert rec.alive()
        unfinished = start(ros)  # left recording: SIGINT must finish it cleanly
        assert unfinished.success, unfinished.message
        time.sleep(0.3)
    assert rec.proc is not None and rec.proc.returncode == 0
    last = sidecar_of(Path(unfinished.message))
    assert last["complete"] is True and last["end_reason"] == "shutdown"
    assert len(read_wav(Path(unfinished.message))[1]) == 2 * last["samples"] > 0
    (rate, channels, width), data = read_wav(path)
    assert (rate, channels, width) == (RATE, 1, 2)
    frames = len(data) // 2
    # N seconds of the tone, +- one chunk (plus the service round trips' own uncertainty).
    assert t_stop_sent - t_started - CHUNK_S - SLACK_S <= frames / RATE
    assert frames / RATE <= t_stopped - t_start_sent + CHUNK_S + SLACK_S
    side = check_sidecar(path, frames, f"{namespace}/audio_stamped")
    assert side["gaps"]["count"] == gaps_within(heard.messages, side["started_at_ns"],
                                                side["ended_at_ns"])
    assert side["end_reason"] == "stopped" and side["error"] is None
    assert side["pre_roll_s"] == 0.0
    # Exactly the samples mic_node published, starting at the recorded start stamp.
    assert data == stream_from(heard.messages, side["started_at_ns"])[: len(data)]
    x = np.frombuffer(data, "<i2") / 32768.0
    assert peak_hz(x, RATE) == pytest.approx(440.0, abs=2)
    assert np.max(np.abs(x)) == pytest.approx(0.5, abs=0.001)


def test_pre_roll_and_max_duration(ros: Any, namespace: str, tmp_path: Path) -> None:
    heard = ros.subscribe(AudioDataStamped, "audio_stamped")
    os.chmod(tmp_path, 0o2770)  # an existing, team-owned output_dir
    with mic(namespace, autostart=False), recorder(namespace, tmp_path, pre_roll_s=1.0,
                                                  max_duration_s=2.0, group_readable=True):
        hear_from_the_first_chunk(ros, heard)
        time.sleep(1.5)  # the recorder's pre-roll fills with the last second
        started, t_sent, t_done = start_timed(ros)
        assert started.success, started.message
        path = Path(started.message)
        side = wait_for_file(path, 10.0, complete=True)  # stops by itself
        stopped = call(ros, "stop")
        assert not stopped.success
        assert "ended by itself (max_duration)" in stopped.message, stopped.message
    _, data = read_wav(path)
    assert len(data) == 2 * 2 * RATE  # exactly max_duration_s
    check_sidecar(path, 2 * RATE, f"{namespace}/audio_stamped")
    assert side["end_reason"] == "max_duration"
    assert side["pre_roll_s"] == pytest.approx(1.0)
    assert mode_of(tmp_path) == 0o2770  # an existing directory is left as it is
    assert mode_of(path) == mode_of(path.with_suffix(".json")) == 0o640
    # The file starts one second before the start request (minus the audio still in flight).
    assert t_sent - NS_PER_S - (CHUNK_S + SLACK_S) * NS_PER_S <= side["started_at_ns"]
    assert side["started_at_ns"] <= t_done - NS_PER_S
    assert data == stream_from(heard.messages, side["started_at_ns"])[: len(data)]


def test_stamp_gaps_are_filled_with_silence(ros: Any, namespace: str, tmp_path: Path) -> None:
    fmt = AudioFormat(RATE, 1, SampleFormat.S16LE)
    diags = ros.subscribe(DiagnosticArray, "/diagnostics")
    info = ros.publisher(AudioInfo, "audio_info", LATCHED)
    info.publish(audio_info(fmt))
    pub = ros.publisher(AudioDataStamped, "audio_stamped")
    t0 = (time.time_ns() // NS_PER_S) * NS_PER_S
    ramp = (np.arange(150 * CHUNK_FRAMES) % 20000).astype("<i2")  # every frame distinct

    def send(first: int, last: int) -> None:
        for i in range(first, last):
            msg = AudioDataStamped()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(
                t0 + i * CHUNK_FRAMES * NS_PER_S // RATE, NS_PER_S)
            msg.audio.data = ramp[i * CHUNK_FRAMES:(i + 1) * CHUNK_FRAMES].tobytes()
            pub.publish(msg)
            time.sleep(0.002)

    with recorder(namespace, tmp_path, sync_period_s=0.1, **{"qos.depth": 1000}) as rec:
        ros.wait_for_subscribers(pub)
        started = start(ros)
        assert started.success, started.message
        path = Path(started.message)
        send(0, 50)
        torn = AudioDataStamped()
        torn.header.stamp.sec, torn.header.stamp.nanosec = divmod(
            t0 + 75 * CHUNK_FRAMES * NS_PER_S // RATE, NS_PER_S)
        torn.audio.data = b"\x01\x02\x03"  # not whole S16LE frames: refused, not written
        pub.publish(torn)
        send(75, 125)  # chunks 50..74 never sent: a 0.5 s stamp jump
        wait_for_samples(path, 125 * CHUNK_FRAMES)
        assert call(ros, "stop").success
        assert "dropping a 3-byte chunk: not whole 16000 Hz 1 ch S16LE frames" in rec.output

        def counted() -> bool:
            return any(kv.key == "bad_chunks" and kv.value == "1"
                       for a in diags.messages for st in a.status
                       if st.name == f"{namespace.strip('/')}/recorder" for kv in st.values)
        wait_until(counted, 10, "bad_chunks=1 on /diagnostics")
        assert rec.alive()
    _, data = read_wav(path)
    side = check_sidecar(path, 125 * CHUNK_FRAMES, f"{namespace}/audio_stamped")
    assert side["gaps"] == {"count": 1, "missing_s": 0.5}
    assert side["started_at_ns"] == t0
    expected = ramp[: 125 * CHUNK_FRAMES].copy()
    expected[50 * CHUNK_FRAMES: 75 * CHUNK_FRAMES] = 0
    assert data == expected.tobytes()  # the time axis matches the stamps, frame for frame


def test_format_change_mid_recording_is_converted(
        ros: Any, namespace: str, tmp_path: Path) -> None:
    mono = AudioFormat(RATE, 1, SampleFormat.S16LE)
    stereo = AudioFormat(48000, 2, SampleFormat.F32LE)
    info = ros.publisher(AudioInfo, "audio_info", LATCHED)
    pub = ros.publisher(AudioDataStamped, "audio_stamped")
    t0 = (time.time_ns() // NS_PER_S) * NS_PER_S

    def tone(fmt: AudioFormat, seconds: float) -> bytes:
        n = round(fmt.sample_rate_hz * seconds)
        x = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / fmt.sample_rate_hz)
        return from_float(np.repeat(x[:, None], fmt.channels, axis=1), fmt.sample_format)

    def send(fmt: AudioFormat, start_ns: int, seconds: float) -> None:
        data = tone(fmt, seconds)
        n = len(data) // fmt.frame_bytes
        step = fmt.frames_for_ms(20)
        for i in range(0, n, step):
            msg = AudioDataStamped()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(
                start_ns + i * NS_PER_S // fmt.sample_rate_hz, NS_PER_S)
            msg.audio.data = data[i * fmt.frame_bytes:(i + step) * fmt.frame_bytes]
            pub.publish(msg)
            time.sleep(0.002)

    with recorder(namespace, tmp_path, sync_period_s=0.1, **{"qos.depth": 1000}) as rec:
        info.publish(audio_info(mono))
        ros.wait_for_subscribers(pub)
        started = start(ros)
        assert started.success, started.message
        path = Path(started.message)
        send(mono, t0, 1.0)
        wait_for_samples(path, RATE)
        info.publish(audio_info(stereo))
        wait_until(lambda: "input format changed" in rec.output, 10, "the new audio_info")
        send(stereo, t0 + NS_PER_S, 1.0)  # contiguous stamps: no gap
        wait_for_samples(path, 2 * RATE - 800)  # the resampler holds ~20 ms until stop
        assert call(ros, "stop").success
    (rate, channels, width), data = read_wav(path)
    assert (rate, channels, width) == (RATE, 1, 2)  # the format fixed at start
    side = sidecar_of(path)
    assert side["source_formats"] == [mono.describe(), stereo.describe()]
    assert side["gaps"]["count"] == 0
    assert abs(len(data) // 2 - 2 * RATE) <= 2  # resampler rounding only
    x = np.frombuffer(data, "<i2") / 32768.0
    second = x[RATE + 400: 2 * RATE - 400]  # away from the switch and the end
    assert peak_hz(second, RATE) == pytest.approx(440.0, abs=2)
    assert np.max(np.abs(second)) == pytest.approx(0.5, abs=0.01)
    assert data[: 2 * RATE] == tone(mono, 1.0)  # the first format passes through untouched


def test_sigkill_leaves_a_readable_wav_that_the_next_start_completes(
        ros: Any, namespace: str, tmp_path: Path) -> None:
    heard = ros.subscribe(AudioDataStamped, "audio_stamped")
    with mic(namespace):
        heard.wait_for(1, timeout_s=30)
        with recorder(namespace, tmp_path) as rec:
            started = start(ros)
            assert started.success, started.message
            path = Path(started.message)
            time.sleep(2.5)
            rec.signal(signal.SIGKILL)
            rec.wait(10)
        # What the killed process left, read by the standard library.
        (rate, channels, width), data = read_wav(path)
        assert (rate, channels, width) == (RATE, 1, 2)
        on_disk = path.stat().st_size - 44
        assert len(data) >= 2 * RATE  # the header covered at least 1 s at the kill...
        assert on_disk - len(data) <= 2 * RATE * (1.0 + SLACK_S)  # ...and lost at most ~1 s
        side = sidecar_of(path)
        assert side["complete"] is False  # the progress written at the last sync
        assert data == stream_from(heard.messages, side["started_at_ns"])[: len(data)]
        # The next start finishes the file: nothing that reached the disk is lost.
        with recorder(namespace, tmp_path) as again:
            side = wait_for_file(path, 20.0, complete=True)
            assert again.alive()
    _, repaired = read_wav(path)
    assert len(repaired) == on_disk - on_disk % 2
    assert repaired[: len(data)] == data
    assert repaired == stream_from(heard.messages, side["started_at_ns"])[: len(repaired)]
    assert side["end_reason"] == "recovered"
    assert side["samples"] == len(repaired) // 2
    assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_prefix_cannot_escape_the_output_dir(ros: Any, namespace: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with recorder(namespace, out, prefix="../escape") as bad:
        assert bad.wait(30) == 2
    assert "prefix" in bad.output and "Traceback" not in bad.output
    config = ["--ros-args", "--params-file", str(REPO / "config" / "recorder.yaml")]
    with mic(namespace), recorder(namespace, out, args=config) as rec:  # the shipped config
        for prefix in ("../escape", "/tmp/abs", "a/b", ".hidden", "", "x" * 101):
            request = SetParameters.Request(
                parameters=[Parameter("prefix", value=prefix).to_parameter_msg()])
            result = ros.call(SetParameters, "recorder/set_parameters", request).results[0]
            assert not result.successful, prefix
            assert "plain file name" in result.reason
        request = SetParameters.Request(
            parameters=[Parameter("prefix", value="take-2.a").to_parameter_msg()])
        assert ros.call(SetParameters, "recorder/set_parameters", request).results[0].successful
        started = start(ros)
        assert started.success, started.message
        assert call(ros, "stop").success
        assert rec.alive()
    path = Path(started.message)
    assert path.parent == out and path.name.startswith("take-2.a_")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing outside
    # Voices are personal data: the shipped config keeps them to their owner.
    assert mode_of(out) == 0o700
    assert mode_of(path) == mode_of(path.with_suffix(".json")) == 0o600


@pytest.mark.parametrize("how", ["immutable_dir", "parent_is_a_file"])
def test_unwritable_output_dir_refuses_start_cleanly(
        ros: Any, namespace: str, tmp_path: Path, how: str) -> None:
    if how == "immutable_dir":
        out = tmp_path / "ro"
        guard = immutable(out)
        reason = "Operation not permitted"
    else:
        (tmp_path / "file").write_text("not a directory")
        out = tmp_path / "file" / "recordings"
        guard = contextlib.nullcontext()
        reason = "Not a directory"
    with guard, mic(namespace), recorder(namespace, out) as rec:
        response = start(ros)
        assert not response.success
        assert reason in response.message and str(out) in response.message
        assert not call(ros, "stop").success
        assert rec.alive()
        assert "Traceback" not in rec.output
    if how == "immutable_dir":
        assert list(out.iterdir()) == []


def test_write_failure_mid_recording_ends_with_a_valid_file_and_an_error(
        ros: Any, namespace: str, tmp_path: Path) -> None:
    """A real failing write(2): RLIMIT_FSIZE makes the kernel refuse to grow the file (EFBIG),
    the same path as a full disk (ENOSPC) -- a short write, then an OSError."""
    heard = ros.subscribe(AudioDataStamped, "audio_stamped")
    diags = ros.subscribe(DiagnosticArray, "/diagnostics")
    limit = 44 + 2 * RATE + 1001  # 1 s of audio, then an odd byte count: a torn frame
    with mic(namespace, autostart=False), recorder(namespace, tmp_path) as rec:
        hear_from_the_first_chunk(ros, heard)
        started = start(ros)
        assert started.success, started.message
        path = Path(started.message)
        assert rec.proc is not None
        hard = resource.prlimit(rec.proc.pid, resource.RLIMIT_FSIZE)[1]
        resource.prlimit(rec.proc.pid, resource.RLIMIT_FSIZE, (limit, hard))
        wait_until(lambda: "ended by itself" in rec.output, 15, "the write error")
        stopped = call(ros, "stop")
        assert not stopped.success
        assert "File too large" in stopped.message and str(path) in stopped.message

        def error_reported() -> bool:
            return any(s.level == DiagnosticStatus.ERROR and "File too large" in s.message
                       for a in diags.messages for s in a.status
                       if s.name.endswith(f"{namespace.strip('/')}/recorder"))
        wait_until(error_reported, 10, "an ERROR diagnostic")
        resource.prlimit(rec.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        again = start(ros)  # the node kept running and records again
        assert again.success, again.message
        assert call(ros, "stop").success
    (rate, _, _), data = read_wav(path)
    assert rate == RATE
    assert len(data) == limit - 44 - 1  # every whole frame that reached the disk
    assert path.stat().st_size == limit - 1  # the torn frame was cut off
    side = sidecar_of(path)
    assert side["complete"] is True and side["end_reason"] == "error"
    assert "File too large" in side["error"]
    assert side["samples"] == len(data) // 2
    assert data == stream_from(heard.messages, side["started_at_ns"])[: len(data)]
