"""Every executable: --help, and SIGINT/SIGTERM as a normal exit (status 0, no traceback,
files finished), as a terminal, ``ros2 launch`` and systemd send them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, wait_recorder_has_format, wait_until
from kos_testing.signals import tone_chunks
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from kos_audio.core import AudioFormat, SampleFormat
from kos_audio.ros.messages import audio_info

BIN = Path(sys.executable).parent
#: launch's grace between its SIGINT and SIGTERM; a node must be gone well before.
LAUNCH_GRACE_S = 5.0


@pytest.mark.parametrize(("executable", "expected"), [
    ("mic_node", ["chunk_ms", "audio_stamped", "--list-devices"]),
    ("speaker_node", ["block_ms", "is_speaking", "--list-devices"]),
    ("recorder_node", ["output_dir", "~/start"]),
    ("audio_monitor", ["--duration"]),
    ("bag_to_wav", ["usage"]),
])
def test_help_prints_usage_and_exits_0(executable: str, expected: list[str]) -> None:
    done = subprocess.run([str(BIN / executable), "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for word in expected:
        assert word in done.stdout, done.stdout
    assert "Traceback" not in done.stderr


def stop_with(node: NodeProcess, signals: list[int]) -> tuple[int | None, float]:
    """Send ``signals`` to the node's process group back to back; exit code and seconds."""
    t0 = time.monotonic()
    for i, sig in enumerate(signals):
        if i:
            time.sleep(0.02)  # the scenario: repeats land while the node cleans up
        node.signal(sig)
    try:
        code: int | None = node.wait(LAUNCH_GRACE_S)
    except subprocess.TimeoutExpired:
        code = None
    elapsed = time.monotonic() - t0
    node.stop()
    return code, elapsed


# SIGINT repeated: a terminal's Ctrl-C reaches the process group, ros2 launch sends its own,
# and users press it again; any thread may take a signal (OpenBLAS's, started by numpy).
SIGNALS = {"sigint": [signal.SIGINT], "sigint_repeated": [signal.SIGINT] * 6,
           "sigterm": [signal.SIGTERM]}


def assert_clean_exit(node: NodeProcess, signals: list[int]) -> None:
    code, elapsed = stop_with(node, signals)
    assert code == 0, f"exit {code} after {elapsed:.2f} s:\n{node.output}"
    assert "Traceback" not in node.output, node.output
    assert "Error" not in node.output, node.output


@pytest.mark.parametrize("how", list(SIGNALS))
def test_mic_node_stops_cleanly(ros: Any, namespace: str, how: str) -> None:
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    node = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace,
                       params={"source": "tone"}).start()
    stamped.wait_for(5, timeout_s=30)  # capturing and publishing when the signal comes
    assert_clean_exit(node, SIGNALS[how])


def test_mic_node_stops_cleanly_while_kos_is_unreachable(namespace: str) -> None:
    node = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace,
                       params={"source": "kos", "kos.address": "127.0.0.1:9",
                               "kos.timeout_s": 5.0}).start()
    wait_until(lambda: "retrying" in node.output, 30, "the first failed connection")
    assert "publishing" not in node.output  # nothing flows: the log must not claim it does
    code, _ = stop_with(node, SIGNALS["sigint_repeated"])
    assert code == 0, node.output
    assert "Traceback" not in node.output, node.output


def test_mic_node_stops_cleanly_while_streaming_from_kos(
        ros: Any, namespace: str, make_kos_server: Callable[..., Any]) -> None:
    server = make_kos_server()
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    node = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace,
                       params={"source": "kos", "kos.address": server.address}).start()
    stamped.wait_for(10, timeout_s=30)
    assert_clean_exit(node, SIGNALS["sigint_repeated"])



@pytest.mark.parametrize("how", list(SIGNALS))
def test_speaker_file_sink_is_finished_on_a_signal(ros: Any, namespace: str, tmp_path: Path,
                                                    how: str) -> None:
    path = tmp_path / "said.wav"
    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
    info = ros.publisher(AudioInfo, "audio_info", LATCHED)
    audio = ros.publisher(AudioData, "audio")
    node = NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace, params={
        "sink": "file", "file.path": str(path), "sample_rate": 16000, "channels": 1,
        "sample_format": "S16LE"}).start()
    ros.wait_for_subscribers(audio)
    info.publish(audio_info(fmt))
    for chunk in tone_chunks(fmt, 3.0):  # longer than the test: still speaking at the end
        audio.publish(AudioData(data=chunk))
    wait_until(lambda: any(m.data for m in speaking.messages), 30, "is_speaking true")
    # Half a second of speech written (the data, before the header's next sync).
    wait_until(lambda: path.stat().st_size >= 44 + 16000, 30, "0.5 s of speech in the file")
    assert_clean_exit(node, SIGNALS[how])
    assert speaking.messages[-1].data is False  # said before the node went away
    with wave.open(str(path)) as wav:  # the header states what the file holds
        frames = wav.getnframes()
        assert len(wav.readframes(frames)) == frames * 2
    assert frames >= 0.5 * 16000
    assert path.stat().st_size == 44 + frames * 2


def test_recorder_finishes_its_recording_on_a_signal(ros: Any, namespace: str,
                                                      tmp_path: Path) -> None:
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    mic = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace,
                      params={"source": "tone"}).start()
    recorder = NodeProcess("kos_audio.nodes.recorder_node", namespace=namespace,
                           params={"output_dir": str(tmp_path)}).start()
    try:
        stamped.wait_for(5, timeout_s=30)
        wait_recorder_has_format(ros, f"{namespace}/recorder")  # its audio_info has arrived
        answer = ros.call(Trigger, "recorder/start", Trigger.Request(), timeout_s=30)
        assert answer.success, answer.message
        path = Path(answer.message)
        wait_until(lambda: path.stat().st_size >= 44 + 32000, 30, "1 s recorded")
        assert_clean_exit(recorder, SIGNALS["sigint_repeated"])
    finally:
        mic.stop()
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["complete"] is True
    assert side["end_reason"] == "shutdown"
    with wave.open(str(path)) as wav:
        assert wav.getnframes() == side["samples"] > 0
    assert "dropping audio" not in recorder.output  # idle start-up: no false warning


def _speak(ros: Any, node: NodeProcess, seconds: float) -> None:
    """Publish ``seconds`` of tone to ``node`` and wait until it says it is speaking."""
    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
    info = ros.publisher(AudioInfo, "audio_info", LATCHED)
    audio = ros.publisher(AudioData, "audio")
    ros.wait_for_subscribers(audio)
    info.publish(audio_info(fmt))
    for chunk in tone_chunks(fmt, seconds):
        audio.publish(AudioData(data=chunk))
    wait_until(lambda: any(m.data for m in speaking.messages), 30,
               f"is_speaking true\n{node.output}")


def test_speaker_on_kos_stops_cleanly_mid_utterance(
        ros: Any, namespace: str, make_kos_server: Callable[..., Any]) -> None:
    server = make_kos_server()
    node = NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace, params={
        "sink": "kos", "kos.address": server.address}).start()
    _speak(ros, node, 5.0)  # a PlayAudio stream is open when the signal comes
    assert_clean_exit(node, SIGNALS["sigint_repeated"])


def test_speaker_on_resonite_stops_cleanly_mid_utterance(
        ros: Any, namespace: str, make_resonite_server: Callable[..., Any]) -> None:
    server = make_resonite_server()
    node = NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace, params={
        "sink": "resonite_mic", "resonite.socket": str(server.socket_path)}).start()
    _speak(ros, node, 5.0)
    assert_clean_exit(node, [signal.SIGTERM])


def test_mic_on_resonite_stops_cleanly_while_streaming(
        ros: Any, namespace: str, make_resonite_server: Callable[..., Any]) -> None:
    server = make_resonite_server()
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    node = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params={
        "source": "resonite_speaker", "resonite.socket": str(server.socket_path)}).start()
    stamped.wait_for(10, timeout_s=30)
    assert_clean_exit(node, SIGNALS["sigint_repeated"])
