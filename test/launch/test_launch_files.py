"""Every launch file through the real ``ros2 launch`` (Jazzy launch/launch_ros), as on a robot.

Each test starts ``ros2 launch kos_audio <file> <documented arguments>`` in a session of its
own, in a namespace of its own, and checks what README.md's launch table promises: the nodes
(names), their topics and services with the remaps, the parameter files loaded (every value of
``config/*.yaml`` read back through the node's ``get_parameters`` service), arguments taken as
typed (``device:=3`` and ``sink:=null`` stay the strings ``"3"`` and ``"null"``), audio flowing
where it should and a service answered. Then Ctrl-C (SIGINT to the process group, as a terminal
sends it): exit 0, no traceback, no node escalated to SIGTERM/SIGKILL, and no process of the
session left.
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, wait_until
from kos_testing.signals import tone_chunks
from ros2_helpers import (
    assert_config_loaded,
    get_parameters,
    launch,
    require_ros2,
    ros2,
    ros2_env,
    wait_for_endpoints,
    wait_for_nodes,
    wait_recorder_has_format,
)
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from kos_audio.core import AudioFormat, SampleFormat
from kos_audio.ros.messages import audio_info

SPEECH = AudioFormat(16000, 1, SampleFormat.S16LE)


@pytest.fixture(autouse=True)
def _ros2_cli() -> None:
    require_ros2()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """HOME of the launched processes: default recording dir and ~/.ros/log land here."""
    path = tmp_path / "home"
    path.mkdir()
    return path



def say(ros: Any, topic: str, seconds: float) -> None:
    """Publish ``seconds`` of speech on ``topic`` (format on ``<topic>_info``), once the node
    under test subscribes."""
    info = ros.publisher(AudioInfo, f"{topic}_info", LATCHED)
    audio = ros.publisher(AudioData, topic)
    ros.wait_for_subscribers(audio, timeout_s=30)
    ros.wait_for_subscribers(info, timeout_s=30)
    info.publish(audio_info(SPEECH))
    for chunk in tone_chunks(SPEECH, seconds):
        audio.publish(AudioData(data=chunk))


def names(namespace: str, *relative: str) -> list[str]:
    return [f"{namespace}/{name}" for name in relative]


MIC_TOPICS = ("audio", "audio_stamped", "audio_info")


# -------------------------------------------------------------------------- mic.launch.py


def test_mic_launch_with_tone_and_device_index(ros: Any, namespace: str, home: Path) -> None:
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    info = ros.subscribe(AudioInfo, "audio_info", LATCHED)
    # device:=3 with source:=tone: the parameter is checked, no device is opened.
    with launch("mic.launch.py", "source:=tone", "device:=3",
                f"namespace:={namespace.strip('/')}", env=ros2_env(home)) as run:
        mic = f"{namespace}/mic"
        wait_for_nodes(ros, [mic], session=run)
        wait_for_endpoints(ros, mic, publishes=names(namespace, *MIC_TOPICS),
                           serves=[f"{mic}/enable"])
        assert get_parameters(ros, mic, "source", "device") == {
            "source": ("string", "tone"), "device": ("string", "3")}
        assert_config_loaded(ros, mic, "mic.yaml", overridden=["source", "device"])
        chunks = stamped.wait_for(5, timeout_s=30)
        assert chunks[-1].header.frame_id == "microphone"  # config/mic.yaml
        assert len(chunks[-1].audio.data) == 320 * 2  # 20 ms of 16 kHz S16LE mono
        got = info.wait_for(1, timeout_s=30)[0]
        assert (got.sample_rate, got.channels, got.sample_format) == (16000, 1, "S16LE")
        answer = ros.call(SetBool, "mic/enable", SetBool.Request(data=True), timeout_s=30)
        assert answer.success, answer.message
        # The CLI reads it back as a user would. --no-daemon: a new daemon races discovery;
        # the CLI's own discovery window (--spin-time, default 0.5 s) is too short on a busy
        # 2-core machine: "Node not found" although the node answers.
        shown = ros2("param", "get", "--no-daemon", "--spin-time", "5", mic, "device",
                     env=ros2_env(home))
        assert shown.returncode == 0, shown.stdout
        assert shown.stdout.strip() == "String value is: 3", shown.stdout
        run.assert_clean_ctrl_c()


def test_mic_launch_with_a_users_config(ros: Any, namespace: str, home: Path,
                                        tmp_path: Path) -> None:
    # As users write YAML: integers for the float parameters chunk_ms and tone.frequency_hz.
    config = tmp_path / "my_mic.yaml"
    config.write_text("/**:\n  ros__parameters:\n    source: tone\n    sample_rate: 8000\n"
                      "    chunk_ms: 40\n    frame_id: head_mic\n"
                      "    tone:\n      frequency_hz: 880\n")
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    with launch("mic.launch.py", f"config:={config}", "source:=tone",
                f"namespace:={namespace.strip('/')}", env=ros2_env(home)) as run:
        mic = f"{namespace}/mic"
        wait_for_nodes(ros, [mic], session=run)
        assert get_parameters(ros, mic, "chunk_ms", "tone.frequency_hz", "sample_rate") == {
            "chunk_ms": ("double", 40.0), "tone.frequency_hz": ("double", 880.0),
            "sample_rate": ("integer", 8000)}
        chunk = stamped.wait_for(3, timeout_s=30)[-1]
        assert chunk.header.frame_id == "head_mic"
        assert len(chunk.audio.data) == 320 * 2  # 40 ms of 8 kHz S16LE mono
        run.assert_clean_ctrl_c()


# ---------------------------------------------------------------------- speaker.launch.py


SPEAKER_OVERRIDDEN = ("sink", "device", "file.path")


def test_speaker_launch_null_sink(ros: Any, namespace: str, home: Path) -> None:
    speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
    with launch("speaker.launch.py", "sink:=null", "device:=3", "audio_topic:=tts/audio",
                f"namespace:={namespace.strip('/')}", env=ros2_env(home)) as run:
        speaker = f"{namespace}/speaker"
        wait_for_nodes(ros, [speaker], session=run)
        ends = wait_for_endpoints(
            ros, speaker,
            subscribes=names(namespace, "tts/audio", "tts/audio_info", "background/audio",
                             "background/audio_info", "interrupt"),
            publishes=names(namespace, "is_speaking"),
            serves=[f"{speaker}/interrupt", f"{speaker}/pause"])
        assert f"{namespace}/audio" not in ends.subscriptions  # remapped to tts/audio
        assert get_parameters(ros, speaker, "sink", "device") == {
            "sink": ("string", "null"), "device": ("string", "3")}
        assert_config_loaded(ros, speaker, "speaker.yaml", overridden=SPEAKER_OVERRIDDEN)
        say(ros, "tts/audio", 3.0)
        wait_until(lambda: any(m.data for m in speaking.messages), 30, "is_speaking true")
        answer = ros.call(Trigger, "speaker/interrupt", Trigger.Request(), timeout_s=30)
        assert answer.success and answer.message.startswith("interrupted"), answer.message
        wait_until(lambda: not speaking.messages[-1].data, 10, "is_speaking false")
        run.assert_clean_ctrl_c()


def test_speaker_launch_file_sink(ros: Any, namespace: str, home: Path,
                                  tmp_path: Path) -> None:
    path = tmp_path / "said.wav"
    speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
    with launch("speaker.launch.py", "sink:=file", f"file_path:={path}",
                f"namespace:={namespace.strip('/')}", env=ros2_env(home)) as run:
        speaker = f"{namespace}/speaker"
        wait_for_nodes(ros, [speaker], session=run)
        # audio_topic defaults to audio, info_topic to <audio_topic>_info
        wait_for_endpoints(ros, speaker, subscribes=names(namespace, "audio", "audio_info"),
                           publishes=names(namespace, "is_speaking"))
        assert get_parameters(ros, speaker, "sink", "file.path") == {
            "sink": ("string", "file"), "file.path": ("string", str(path))}
        say(ros, "audio", 1.0)
        wait_until(lambda: any(m.data for m in speaking.messages), 30, "is_speaking true")
        wait_until(lambda: not speaking.messages[-1].data, 30, "is_speaking false (played)")
        run.assert_clean_ctrl_c()
    with wave.open(str(path)) as wav:  # finished by the Ctrl-C: the header says what it holds
        frames, rate, width = wav.getnframes(), wav.getframerate(), wav.getsampwidth()
        channels = wav.getnchannels()
        assert len(wav.readframes(frames)) == frames * channels * width
    assert frames >= rate  # at least the second of speech
    assert path.stat().st_size == 44 + frames * channels * width


# --------------------------------------------------------------------- recorder.launch.py


def test_recorder_launch(ros: Any, namespace: str, home: Path, tmp_path: Path) -> None:
    # A mic_node publishing under mic/, as kos_audio.launch.py remaps it.
    mic = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace,
                      params={"source": "tone"},
                      remaps={t: f"mic/{t}" for t in MIC_TOPICS})
    # output_dir:=2024, relative to the launch's working directory: stays the text "2024".
    with mic, launch("recorder.launch.py", "audio_topic:=mic/audio_stamped",
                     "info_topic:=mic/audio_info", "output_dir:=2024",
                     f"namespace:={namespace.strip('/')}", env=ros2_env(home),
                     cwd=tmp_path) as run:
        recorder = f"{namespace}/recorder"
        wait_for_nodes(ros, [recorder], session=run)
        wait_for_endpoints(ros, recorder,
                           subscribes=names(namespace, "mic/audio_stamped", "mic/audio_info"),
                           serves=[f"{recorder}/start", f"{recorder}/stop"])
        assert get_parameters(ros, recorder, "output_dir") == {
            "output_dir": ("string", "2024")}
        assert_config_loaded(ros, recorder, "recorder.yaml", overridden=["output_dir"])
        wait_recorder_has_format(ros, recorder)
        started = ros.call(Trigger, "recorder/start", Trigger.Request(), timeout_s=30)
        assert started.success, started.message
        path = Path(started.message)
        assert path.parent == tmp_path / "2024"
        wait_until(lambda: path.exists() and path.stat().st_size > 44 + 16000, 30,
                   "half a second recorded")
        stopped = ros.call(Trigger, "recorder/stop", Trigger.Request(), timeout_s=30)
        assert stopped.success and stopped.message == str(path), stopped.message
        run.assert_clean_ctrl_c()
    with wave.open(str(path)) as wav:
        assert wav.getnframes() >= 8000


# --------------------------------------------------------------------- kos_audio.launch.py


def test_kos_audio_launch(ros: Any, namespace: str, home: Path) -> None:
    mic_stamped = ros.subscribe(AudioDataStamped, "mic/audio_stamped")
    with launch("kos_audio.launch.py", "mic_source:=tone", "sink:=null", "mic_device:=3",
                "speaker_device:=3", f"namespace:={namespace.strip('/')}",
                env=ros2_env(home)) as run:
        mic, speaker, recorder = names(namespace, "mic", "speaker", "recorder")
        wait_for_nodes(ros, [mic, speaker, recorder], session=run)
        wait_for_endpoints(ros, mic, publishes=names(namespace, *(f"mic/{t}" for t in
                                                                  MIC_TOPICS)))
        ends = wait_for_endpoints(
            ros, speaker, subscribes=names(namespace, "tts/audio", "tts/audio_info",
                                           "background/audio", "interrupt"),
            publishes=names(namespace, "is_speaking"),
            serves=[f"{speaker}/interrupt", f"{speaker}/pause"])
        # The speaker never plays the microphone.
        assert not {t for t in ends.subscriptions if t.startswith(f"{namespace}/mic/")}, ends
        wait_for_endpoints(ros, recorder,
                           subscribes=names(namespace, "mic/audio_stamped", "mic/audio_info"),
                           serves=[f"{recorder}/start", f"{recorder}/stop"])
        assert get_parameters(ros, mic, "source", "device") == {
            "source": ("string", "tone"), "device": ("string", "3")}
        assert get_parameters(ros, speaker, "sink", "device") == {
            "sink": ("string", "null"), "device": ("string", "3")}
        assert_config_loaded(ros, mic, "mic.yaml", overridden=["source", "device"])
        assert_config_loaded(ros, speaker, "speaker.yaml", overridden=["sink", "device"])
        assert_config_loaded(ros, recorder, "recorder.yaml")
        mic_stamped.wait_for(5, timeout_s=30)
        wait_recorder_has_format(ros, recorder)
        started = ros.call(Trigger, "recorder/start", Trigger.Request(), timeout_s=30)
        assert started.success, started.message
        path = Path(started.message)
        assert path.parent == home / ".ros/kos_audio/recordings"  # config/recorder.yaml
        stopped = ros.call(Trigger, "recorder/stop", Trigger.Request(), timeout_s=30)
        assert stopped.success, stopped.message
        answer = ros.call(Trigger, "speaker/interrupt", Trigger.Request(), timeout_s=30)
        assert answer.success, answer.message
        run.assert_clean_ctrl_c()
    assert path.with_suffix(".json").exists()


def test_kos_audio_launch_with_a_node_failing_at_start(ros: Any, namespace: str,
                                                       home: Path) -> None:
    with launch("kos_audio.launch.py", "mic_source:=bogus", "sink:=null",
                f"namespace:={namespace.strip('/')}", env=ros2_env(home)) as run:
        speaker, recorder = names(namespace, "speaker", "recorder")
        run.wait_output("[ERROR] [mic_node-1]: process has died")
        wait_for_nodes(ros, [speaker, recorder], session=run)  # the rest run
        answer = ros.call(Trigger, "speaker/interrupt", Trigger.Request(), timeout_s=30)
        assert answer.success, answer.message
        code = run.interrupt()
        out = run.output
        assert "bogus" in out, out  # the mic said why, in one line
        assert "Traceback" not in out, out
        assert run.leftovers() == [], f"left running: {run.leftovers()}\n{out}"
        assert out.count("process has finished cleanly") == 2, out  # speaker and recorder
        assert code == 0, f"exit {code}:\n{out}"


# -------------------------------------------------------------------- kos_bridge.launch.py


def test_kos_bridge_launch(ros: Any, namespace: str, home: Path,
                           make_kos_server: Callable[..., Any]) -> None:
    server = make_kos_server()
    mic_stamped = ros.subscribe(AudioDataStamped, "mic/audio_stamped")
    speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
    with launch("kos_bridge.launch.py", f"kos_address:={server.address}",
                f"namespace:={namespace.strip('/')}", env=ros2_env(home)) as run:
        mic, speaker = names(namespace, "mic", "speaker")
        wait_for_nodes(ros, [mic, speaker], session=run)
        wait_for_endpoints(ros, mic, publishes=names(namespace, *(f"mic/{t}" for t in
                                                                  MIC_TOPICS)))
        wait_for_endpoints(ros, speaker, subscribes=names(namespace, "tts/audio",
                                                          "tts/audio_info"),
                           publishes=names(namespace, "is_speaking"),
                           serves=[f"{speaker}/interrupt"])
        assert get_parameters(ros, mic, "source", "kos.address") == {
            "source": ("string", "kos"), "kos.address": ("string", server.address)}
        assert get_parameters(ros, speaker, "sink", "kos.address") == {
            "sink": ("string", "kos"), "kos.address": ("string", server.address)}
        # kos.output_latency_s is the speaker's alone
        assert_config_loaded(ros, mic, "kos.yaml", overridden=["kos.output_latency_s"])
        assert_config_loaded(ros, mic, "mic.yaml", overridden=["source"])
        assert_config_loaded(ros, speaker, "kos.yaml")
        assert_config_loaded(ros, speaker, "speaker.yaml", overridden=["sink"])
        mic_stamped.wait_for(10, timeout_s=30)  # the robot's microphone, from the server
        say(ros, "tts/audio", 3.0)
        wait_until(lambda: any(m.data for m in speaking.messages), 30, "is_speaking true")
        wait_until(lambda: bool(server.play_streams()), 30, "a PlayAudio stream")
        answer = ros.call(Trigger, "speaker/interrupt", Trigger.Request(), timeout_s=30)
        assert answer.success, answer.message
        run.assert_clean_ctrl_c()
    # Both gRPC streams were closed, not left open.
    assert server.wait_record_outcome(0, timeout_s=5) != "open"
    assert server.wait_play_outcome(0, timeout_s=5) != "open"


# ------------------------------------------------------------------- virtual_mic.launch.py


def test_virtual_mic_launch_listening(ros: Any, namespace: str, home: Path,
                                      make_resonite_server: Callable[..., Any]) -> None:
    server = make_resonite_server()
    heard = ros.subscribe(AudioDataStamped, "resonite/audio_stamped")
    speaking = ros.subscribe(Bool, "virtual_mic/is_speaking", LATCHED)
    with launch("virtual_mic.launch.py", f"resonite_socket:={server.socket_path}",
                "listen:=true", f"namespace:={namespace.strip('/')}",
                env=ros2_env(home)) as run:
        virtual_mic, ears = names(namespace, "virtual_mic", "resonite_ears")
        wait_for_nodes(ros, [virtual_mic, ears], session=run)
        wait_for_endpoints(ros, virtual_mic,
                           subscribes=names(namespace, "tts/audio", "tts/audio_info"),
                           publishes=names(namespace, "virtual_mic/is_speaking"),
                           serves=[f"{virtual_mic}/interrupt"])
        wait_for_endpoints(ros, ears, publishes=names(namespace, *(f"resonite/{t}" for t in
                                                                   MIC_TOPICS)))
        socket = str(server.socket_path)
        assert get_parameters(ros, virtual_mic, "sink", "resonite.socket") == {
            "sink": ("string", "resonite_mic"), "resonite.socket": ("string", socket)}
        assert get_parameters(ros, ears, "source", "resonite.socket") == {
            "source": ("string", "resonite_speaker"), "resonite.socket": ("string", socket)}
        assert_config_loaded(ros, virtual_mic, "resonite.yaml", overridden=["resonite.socket"])
        assert_config_loaded(ros, ears, "mic.yaml", overridden=["source"])
        heard.wait_for(10, timeout_s=30)  # what the avatar hears
        say(ros, "tts/audio", 3.0)
        wait_until(lambda: any(m.data for m in speaking.messages), 30, "is_speaking true")
        wait_until(lambda: bool(server.played_chunks()), 30, "speech reaching Resonite")
        answer = ros.call(Trigger, "virtual_mic/interrupt", Trigger.Request(), timeout_s=30)
        assert answer.success, answer.message
        run.assert_clean_ctrl_c()
