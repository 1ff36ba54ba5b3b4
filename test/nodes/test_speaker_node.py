"""speaker_node as a real process over real DDS; sound checked in real files, and through the
private PulseAudio server's speaker monitor recorded with parec (independent of kos_audio).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from audio_common_msgs.msg import AudioData
from diagnostic_msgs.msg import DiagnosticArray
from kos_testing.procs import NodeProcess
from kos_testing.ros import RosProbe, wait_until
from speaker_helpers import (
    MODULE,
    MONITOR_RATE,
    Recording,
    Speaker,
    amplitude_at,
    chunks,
    loud_seconds,
    loud_span,
    peak_hz,
    tone,
)
from std_msgs.msg import Empty
from std_srvs.srv import SetBool, Trigger


def read_file(path: Path) -> tuple[np.ndarray, int]:
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data[:, 0], rate


# -- no device: file sink ------------------------------------------------------------------
def test_bad_parameter_exits_with_one_line(namespace: str) -> None:
    node = NodeProcess(MODULE, namespace=namespace, params={"sink": "nope"}).start()
    assert node.wait(30) == 2
    assert "[speaker_node] error: parameter sink='nope' is invalid" in node.output
    node = NodeProcess(MODULE, namespace=namespace, params={"sink": "file"}).start()
    assert node.wait(30) == 2
    assert "file.path" in node.output


def test_ros_drivers_style_input_then_format_change(make_speaker: Callable[..., Speaker],
                                                    tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    speaker = make_speaker(sink="file", **{"file.path": str(path), "sample_rate": 16000,
                                           "channels": 1, "input.sample_rate": 22050,
                                           "input.channels": 2})
    # Like ros-drivers' audio_capture without audio_info: the input.* parameters apply.
    for chunk in chunks(tone(700, 0.5, rate=22050, channels=2), 4, 441):
        speaker.send(chunk)
    speaker.wait_speaking(True)
    # A format change mid-stream applies from the next chunk (audio_info and audio are
    # separate topics: the chunks go once the node has taken the new format).
    speaker.send_info(rate=48000, channels=1, fmt="F32LE")
    speaker.wait_status(lambda s: s["input_format"] == "48000 Hz 1 ch F32LE")
    second_sent = time.time_ns()
    for chunk in chunks(tone(1200, 0.5, rate=48000, fmt="F32LE"), 4, 960):
        speaker.send(chunk)
    # The second part has played out: is_speaking fell after it was sent, and after the
    # first part's own end (when the speaker was silent in between, that came first).
    wait_until(lambda: float(speaker.status().get("played_s", 0)) >= 0.99, 10,
               "both parts played")
    speaker.wait_speaking(False, after=second_sent)
    assert speaker.stop() == 0
    x, rate = read_file(path)
    assert rate == 16000
    start, end = loud_span(x, rate)
    # Both parts, nothing lost or doubled (the speaker may fall silent between them).
    assert loud_seconds(x, rate) == pytest.approx(1.0, abs=0.03)
    first = x[round(start * rate) : round((start + 0.45) * rate)]
    second = x[round((end - 0.45) * rate) : round(end * rate)]
    assert peak_hz(first, rate) == pytest.approx(700, abs=5)
    assert peak_hz(second, rate) == pytest.approx(1200, abs=5)


def test_every_kind_of_bad_input_is_counted_and_valid_audio_still_plays(
        make_speaker: Callable[..., Speaker], tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    speaker = make_speaker(sink="file", **{"file.path": str(path), "sample_rate": 16000,
                                           "channels": 1})
    good = tone(440, 0.02)
    speaker.send(good + b"\x07")  # odd byte count
    speaker.send(good[:-2] + b"\x01\x02\x03")  # not a whole number of frames
    time.sleep(0.15)
    for bad_info in ({"rate": 16000, "channels": 1, "fmt": "S17LE"},  # unknown format
                     {"rate": 5, "channels": 1, "fmt": "S16LE"},  # absurd rate
                     {"rate": 16000, "channels": 0, "fmt": "S16LE"},  # absurd channels
                     {"rate": 16000, "channels": 1, "fmt": "S16LE", "coding": "flac"}):
        # audio_info is another topic: without a pause either could overtake the other.
        speaker.send_info(**bad_info)
        time.sleep(0.15)
        speaker.send(good)  # dropped: its format is not known
        time.sleep(0.15)
    speaker.send_info(rate=16000, channels=1, fmt="F32LE")
    time.sleep(0.15)
    x = np.full(320, 0.25, np.float32)
    x[[1, 2, 3, 10]] = [np.nan, np.inf, -np.inf, np.nan]
    speaker.send(x.tobytes())
    speaker.send(x.tobytes()[:-1])  # and a broken float frame
    time.sleep(0.15)
    speaker.send_info(rate=16000, channels=1, fmt="S16LE")
    time.sleep(0.15)
    for chunk in chunks(tone(440, 0.5), 2, 320):
        speaker.send(chunk)
    status = speaker.wait_status(lambda s: int(s["dropped_invalid_chunks"]) >= 4
                                 and int(s["repaired_chunks"]) >= 4
                                 and float(s["played_s"]) > 0.5)
    assert int(status["invalid_infos"]) == 4
    assert int(status["dropped_invalid_chunks"]) == 4
    assert int(status["repaired_chunks"]) == 4
    assert int(status["non_finite_samples"]) == 8  # twice 4 NaN/Inf
    assert speaker.node.alive()
    output = speaker.node.output
    for words in ("S17LE", "sample rate 5 Hz", "channel count 0", "'flac' is unknown",
                  "not a whole number of 2-byte frames", "NaN/Inf samples replaced"):
        assert words in output, words
    speaker.wait_status(lambda s: s["state"] == "idle")
    assert speaker.stop() == 0
    x, rate = read_file(path)
    assert np.isfinite(x).all()
    start, end = loud_span(x, rate, threshold=0.3)  # the valid 0.5 s tone is all there
    assert end - start >= 0.5
    tail = x[round((end - 0.5) * rate) : round(end * rate)]
    assert peak_hz(tail, rate) == pytest.approx(440, abs=5)


def test_stamped_interrupt_drops_late_chunks_by_stamp(make_speaker: Callable[..., Speaker],
                                                      tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    speaker = make_speaker(stamped=True, sink="file",
                           **{"file.path": str(path), "sample_rate": 16000, "channels": 1,
                              "interrupt.fence_ms": 200.0})
    made_ns = time.time_ns()  # the producer made the whole utterance now
    parts = chunks(tone(440, 3.0), 2, 320)
    for chunk in parts[:100]:
        speaker.send(chunk, stamp_ns=made_ns)
    t_true = speaker.wait_speaking(True)
    time.sleep(0.5)
    speaker.interrupt_topic.publish(Empty())  # the topic, not the service
    t_false = speaker.wait_speaking(False, after=t_true, timeout_s=2)
    assert (t_false - t_true) / 1e9 < 1.5
    time.sleep(0.4)  # past the fence: only the stamps tell these chunks are late
    for chunk in parts[100:]:
        speaker.send(chunk, stamp_ns=made_ns)
    time.sleep(0.2)
    t_answer = time.time_ns()
    for chunk in chunks(tone(1000, 0.3), 2, 320):  # the next answer, made after the interrupt
        speaker.send(chunk)
    # The next answer has played out when is_speaking turns false after it started. (Not
    # "played_s > 0.8": the interrupted part plays 0.50 s or a 20 ms block more, depending on
    # whether the sink's pull falls just before or after the interrupt; with 0.50 s the total
    # stayed at 0.800 and the wait timed out, about 1 run in 6 to 20.)
    speaker.wait_speaking(False, after=speaker.wait_speaking(True, after=t_answer))
    speaker.wait_status(lambda s: int(s["dropped_late_chunks"]) == len(parts) - 100
                        and s["state"] == "idle")
    status = speaker.status()
    assert int(status["interrupts"]) == 1
    assert float(status["dropped_interrupt_s"]) > 0.3
    assert speaker.stop() == 0
    x, rate = read_file(path)
    first_start, _ = loud_span(x, rate)
    # Split at the silence between the interrupted utterance and the next one.
    loud = np.abs(x) > 0.05
    gap = np.flatnonzero(np.convolve(loud, np.ones(1600), "same") == 0)
    gap = gap[gap > first_start * rate]
    assert len(gap), "no silence after the interrupt"
    cut = gap[0]
    interrupted = x[:cut]
    after = x[cut:]
    _, first_end = loud_span(interrupted, rate)
    assert 0.3 < first_end - first_start < 1.2  # stopped about 0.5 s in, not 3 s
    second_start, second_end = loud_span(after, rate)
    assert second_end - second_start == pytest.approx(0.3, abs=0.03)
    assert peak_hz(after[round(second_start * rate) : round(second_end * rate)],
                   rate) == pytest.approx(1000, abs=10)  # no 440 Hz after the interrupt


def test_queue_overflow_drops_oldest(make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(sink="null", max_queue_s=0.5)
    for chunk in chunks(tone(440, 2.0), 2, 1600):
        speaker.send(chunk)
    # 2 s sent at once into a 0.5 s queue: about 1.5 s must go, the oldest first. (Waiting for
    # most of it, rather than reading the first status above 1 s, keeps this independent of how
    # the messages are spread in time on a loaded machine.)
    status = speaker.wait_status(lambda s: float(s["dropped_overflow_s"]) > 1.3)
    assert float(status["dropped_overflow_s"]) <= 1.6
    assert "queue full (0.5 s): dropped the oldest" in speaker.node.output
    # Shutting down mid-utterance cuts cleanly and promptly. (The first utterance plays out
    # first: sent while it still sounds, the second would raise no new is_speaking.)
    first = speaker.wait_speaking(True)
    speaker.wait_speaking(False, after=first)
    t_sent = time.time_ns()
    for chunk in chunks(tone(440, 2.0), 2, 1600):
        speaker.send(chunk)
    speaker.wait_speaking(True, after=t_sent)
    t0 = time.monotonic()
    assert speaker.stop() == 0
    assert time.monotonic() - t0 < 5
    assert "Traceback" not in speaker.node.output


# -- the virtual speaker (PulseAudio) ------------------------------------------------------
@pytest.mark.device
def test_clip_is_heard_at_the_right_frequency_and_length(
        pulse: Any, make_speaker: Callable[..., Speaker]) -> None:
    recording = Recording(pulse)
    speaker = make_speaker(sink="device")
    t_pub = time.time_ns()
    for chunk in chunks(tone(440, 1.0), 2, 320):
        speaker.send(chunk)
    t_true = speaker.wait_speaking(True)
    t_false = speaker.wait_speaking(False, after=t_true)
    time.sleep(0.2)
    x = recording.stop()
    start, end = loud_span(x, MONITOR_RATE)
    assert end - start == pytest.approx(1.0, abs=0.02)
    assert peak_hz(x[round(start * MONITOR_RATE) : round(end * MONITOR_RATE)],
                   MONITOR_RATE) == pytest.approx(440, abs=2)
    assert loud_seconds(x, MONITOR_RATE) == pytest.approx(1.0, abs=0.03)  # no gaps
    # The 1 s clip cannot have left the device before 1 s after it was published: is_speaking
    # must not turn false earlier; and it turns false soon after.
    speaking_s = (t_false - t_pub) / 1e9
    assert 1.0 <= speaking_s < 1.6
    status = speaker.wait_status(lambda s: s["state"] == "idle")
    assert status["sink_state"] == "running" and float(status["output_latency_ms"]) > 0
    assert int(status["underruns"]) == 0 and float(status["latency_p50_ms"]) > 0


@pytest.mark.device
def test_interrupt_stops_within_a_block_and_late_chunks_stay_silent(
        pulse: Any, make_speaker: Callable[..., Speaker]) -> None:
    recording = Recording(pulse)
    speaker = make_speaker(sink="device")
    parts = chunks(tone(440, 5.0), 2, 320)
    t_pub = time.monotonic()
    for chunk in parts[:200]:  # 4 s now, the last second after the interrupt
        speaker.send(chunk)
    speaker.wait_speaking(True)
    time.sleep(1.0 - (time.monotonic() - t_pub))
    response = speaker.call(Trigger, "interrupt")
    t_answered = time.monotonic()
    t_asked = time.time_ns()
    assert response.success and response.message.startswith("interrupted: played ")
    played_s = float(response.message.split("played ")[1].split(" s")[0])
    dropped_s = float(response.message.split("dropped ")[1].split(" s")[0])
    assert 2.5 < dropped_s < 3.1
    # What was played and what was dropped make the 4 s sent (the fade is neither).
    assert played_s + dropped_s == pytest.approx(4.0, abs=0.05)
    speaker.wait_speaking(False, after=t_asked - 200_000_000, timeout_s=1)
    for chunk in parts[200:]:  # late chunks of the interrupted utterance
        speaker.send(chunk)
    time.sleep(1.0)
    x = recording.stop()
    status = speaker.wait_status(lambda s: int(s["dropped_late_chunks"]) == len(parts) - 200)
    start, end = loud_span(x, MONITOR_RATE)
    # Sound cannot start before publishing; it must end within one block + the device's
    # latency (+ the 5 ms fade and scheduling slack) of the interrupt's answer.
    block_s, latency_s = 0.02, float(status["output_latency_ms"]) / 1000
    assert 0.7 < end - start <= (t_answered - t_pub) + block_s + latency_s + 0.1
    assert loud_seconds(x, MONITOR_RATE) == pytest.approx(end - start, abs=0.03)


@pytest.mark.device
def test_pause_and_resume_keep_every_sample(pulse: Any,
                                            make_speaker: Callable[..., Speaker]) -> None:
    recording = Recording(pulse)
    speaker = make_speaker(sink="device")
    for chunk in chunks(tone(440, 1.0), 2, 320):
        speaker.send(chunk)
    t_true = speaker.wait_speaking(True)
    time.sleep(0.4)
    assert speaker.call(SetBool, "pause", data=True).message.startswith("paused with")
    t_paused = speaker.wait_speaking(False, after=t_true, timeout_s=1)
    time.sleep(0.6)
    assert speaker.call(SetBool, "pause", data=True).message == "already paused"
    assert speaker.call(SetBool, "pause", data=False).message.startswith("resumed with")
    t_resumed = speaker.wait_speaking(True, after=t_paused)
    speaker.wait_speaking(False, after=t_resumed)
    time.sleep(0.2)
    x = recording.stop()
    start, end = loud_span(x, MONITOR_RATE)
    assert end - start > 1.4  # there was a pause in the middle
    assert loud_seconds(x, MONITOR_RATE) == pytest.approx(1.0, abs=0.03)


@pytest.mark.device
def test_background_is_ducked_under_speech_and_loud_input_saturates(
        pulse: Any, make_speaker: Callable[..., Speaker]) -> None:
    recording = Recording(pulse)
    speaker = make_speaker(sink="device")
    speaker.send_info(rate=16000, channels=1, fmt="S16LE", background=True)
    speaker.send_info(rate=16000, channels=1, fmt="F32LE")
    time.sleep(0.2)
    background = chunks(tone(300, 4.0, amp=0.5), 2, 1600)  # 100 ms chunks
    t0 = time.monotonic()
    for i, chunk in enumerate(background):
        time.sleep(max(0.0, t0 + i * 0.1 - 0.2 - time.monotonic()))  # 200 ms ahead
        speaker.background.publish(AudioData(data=chunk))
        if i == 10:  # 1 s in: speech at unity
            for part in chunks(tone(1000, 1.0, amp=0.5, fmt="F32LE"), 4, 320):
                speaker.send(part)
        if i == 30:  # 3 s in: speech louder than full scale (a float producer's bug)
            for part in chunks(tone(1000, 0.5, amp=1.6, fmt="F32LE"), 4, 320):
                speaker.send(part)
    time.sleep(0.8)
    x = recording.stop()
    # Find the speech by its 1 kHz energy in 50 ms windows.
    win = MONITOR_RATE // 20
    n = len(x) // win
    windows = x[: n * win].reshape(n, win)
    speech = np.array([amplitude_at(w, 1000, MONITOR_RATE) for w in windows])
    bg = np.array([amplitude_at(w, 300, MONITOR_RATE) for w in windows])
    on = np.flatnonzero(speech > 0.2)
    first = on[on < on[0] + 30]  # the unity utterance (1 s = 20 windows)
    inner = first[3:-3]  # away from the edges and the duck's attack
    assert np.median(speech[inner]) == pytest.approx(0.5, abs=0.03)  # speech at unity
    assert np.median(bg[inner]) == pytest.approx(0.5 * 0.15, abs=0.02)  # ducked
    before = bg[max(0, first[0] - 10) : first[0] - 1]
    assert np.median(before) == pytest.approx(0.5 * 0.5, abs=0.03)  # background alone
    after = bg[first[-1] + 14 : first[-1] + 24]  # past hold + release
    assert np.median(after) == pytest.approx(0.25, abs=0.03)
    loud = x[on[-5] * win : (on[-5] + 4) * win]
    # Saturated, never wrapped: no jump across the scale (wrapping flips +1 to -1).
    assert np.abs(loud).max() > 0.95
    assert np.abs(np.diff(x)).max() < 0.5
    status = speaker.wait_status(lambda s: int(s["clipped_samples"]) > 0)
    assert float(status["dropped_background_s"]) == 0.0


@pytest.mark.device
def test_vanished_device_is_reopened_with_backoff(ros: RosProbe, namespace: str,
                                                  tmp_path: Path) -> None:
    import shutil
    import subprocess

    from kos_testing.pulse import SCRIPT, PulseServer

    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed; run scripts/setup.sh")
    # A server of this test alone (the session's must not go away): not PulseServer.start(),
    # which would export its environment into this process.
    server = PulseServer(tmp_path / "pulse")

    def start_server() -> None:
        out = subprocess.run([str(SCRIPT), "start", str(server.directory)], check=True,
                             capture_output=True, text=True).stdout
        server.env = dict(line[len("export "):].split("=", 1) for line in out.splitlines()
                          if line.startswith("export "))

    start_server()
    node = NodeProcess(MODULE, namespace=namespace, params={"sink": "device"},
                       env=server.env).start()
    try:
        diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
        audio = ros.publisher(AudioData, "audio")
        name = f"{namespace.lstrip('/')}/speaker"

        def status() -> tuple[int, dict[str, str]]:
            for msg in reversed(diagnostics.messages):
                for s in msg.status:
                    if s.name == name:
                        return s.level[0], {kv.key: kv.value for kv in s.values}
            return -1, {}

        wait_until(lambda: status()[1].get("sink_state") == "running", 20, "sink running")
        server.stop()  # the device vanishes
        wait_until(lambda: status()[0] == 2 and int(status()[1]["sink_failures"]) >= 1, 10,
                   f"sink failure reported; last {status()}")
        assert status()[1]["sink_state"] in ("waiting to reopen", "opening")
        assert node.alive()
        time.sleep(1.0)  # a few back-off rounds against a missing server
        start_server()
        wait_until(lambda: status()[1].get("sink_state") == "running", 15,
                   f"sink reopened; last {status()}")
        recording = Recording(server)
        ros.wait_for_subscribers(audio)
        time.sleep(0.3)
        for chunk in chunks(tone(440, 0.5), 2, 320):
            audio.publish(AudioData(data=chunk))
        wait_until(lambda: float(status()[1]["played_s"]) >= 0.5
                   and status()[1]["state"] == "idle", 10, "clip played")
        time.sleep(0.2)
        x = recording.stop()
        start, end = loud_span(x, MONITOR_RATE)
        assert end - start == pytest.approx(0.5, abs=0.03)
        assert "reopening in" in node.output
        assert node.stop() == 0
    finally:
        node.stop()
        server.stop()
