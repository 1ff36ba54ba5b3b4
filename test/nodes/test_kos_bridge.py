"""The KOS bridge end to end: mic_node ``source: kos`` and speaker_node ``sink: kos``.

Real parts only: the nodes run as child processes over real DDS, the KOS SoundService is a real
gRPC server on loopback in this process (test/servers/kos_sound_server.py), and a RosProbe is
the other side of the topics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import soxr
from audio_common_msgs.msg import AudioData, AudioDataStamped
from diagnostic_msgs.msg import DiagnosticArray
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, Collected, wait_until
from mic_helpers import gaps
from servers.kos_sound_server import Capabilities, KosSoundServer, record_signal
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from kos_audio.backends.kos_sink import DEFAULT_LEAD_S

MIC = "kos_audio.nodes.mic_node"
SPEAKER = "kos_audio.nodes.speaker_node"
RATE = 16_000


def mic(namespace: str, server: KosSoundServer, **params: Any) -> NodeProcess:
    return NodeProcess(MIC, namespace=namespace, params={
        "source": "kos", "kos.address": server.address, "kos.timeout_s": 2.0, **params})


def joined(msgs: list[AudioDataStamped]) -> bytes:
    return b"".join(bytes(m.audio.data) for m in msgs)


def first_frame(data: bytes, rate: int = RATE, bits: int = 16, channels: int = 1) -> int:
    """The signal frame ``data`` starts at (messages published before DDS matched the probe
    are not received, so the first one received may be any chunk)."""
    chunk = 320  # published chunks start at multiples of 20 ms from the stream's frame 0
    head = data[: chunk * bits // 8 * channels]
    for start in range(0, 60 * rate, chunk):
        if record_signal(rate, bits, channels, start, chunk) == head:
            return start
    raise AssertionError("the data is not the server's signal at any chunk boundary")


def diag_values(diags: Collected[DiagnosticArray], name: str) -> list[dict[str, str]]:
    return [{kv.key: kv.value for kv in s.values}
            for d in diags.messages for s in d.status if s.name == name]


# ---------------------------------------------------------------------------- mic via KOS


def test_mic_publishes_the_kos_signal_exactly(
        ros: Any, namespace: str, make_kos_server: Callable[..., KosSoundServer]) -> None:
    server = make_kos_server()
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    with mic(namespace, server):
        msgs = stamped.wait_for(50, timeout_s=30)[:50]
    assert all(len(m.audio.data) == 640 for m in msgs)  # 20 ms chunks from 37 ms server chunks
    data = joined(msgs)
    assert data == record_signal(RATE, 16, 1, first_frame(data), len(data) // 2)
    assert gaps(msgs, RATE) == [0] * 49
    assert server.record_streams()[0].config == (RATE, 16, 1)


def test_mic_resamples_when_the_robot_only_offers_other_rates(
        ros: Any, namespace: str, make_kos_server: Callable[..., KosSoundServer]) -> None:
    server = make_kos_server(recording=Capabilities((48_000,), (32,), (1,)))
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    with mic(namespace, server) as node:
        msgs = stamped.wait_for(50, timeout_s=30)[:50]
    assert server.record_streams()[0].config == (48_000, 32, 1)
    assert "delivers 48000 Hz 1 ch S32LE; converting to 16000 Hz 1 ch S16LE" in node.output
    assert all(len(m.audio.data) == 640 for m in msgs)
    assert gaps(msgs, RATE) == [0] * 49
    got = np.frombuffer(joined(msgs), "<i2") / 32768.0
    # The independent reference: soxr's one-shot resampling of the whole known signal. The
    # first message received may be any 20 ms chunk (see first_frame): try each.
    source = np.frombuffer(record_signal(48_000, 32, 1, 0, 3 * (len(got) + 320 * 200)), "<i4")
    expected = soxr.resample(source / 2**31, 48_000, RATE, "HQ")
    middle = slice(400, len(got) - 400)  # away from the filter's start-up
    errors = [np.max(np.abs(got[middle] - expected[k * 320 :][: len(got)][middle]))
              for k in range(200)]
    assert min(errors) < 2e-3
    assert sorted(errors)[1] > 0.1  # one alignment matches, the others do not
    assert np.std(got[middle]) > 0.05  # a real signal, not silence that trivially matches


def test_mic_reconnects_after_a_server_restart_and_re_anchors(
        ros: Any, namespace: str, make_kos_server: Callable[..., KosSoundServer]) -> None:
    server = make_kos_server()
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    diags = ros.subscribe(DiagnosticArray, "/diagnostics")
    with mic(namespace, server) as node:
        stamped.wait_for(10, timeout_s=30)
        server.stop()
        time.sleep(1.0)  # down for a while: the node backs off, does not spin
        before = len(stamped.messages)
        server.start()
        wait_until(lambda: len(server.record_streams()) >= 2, 15, "a second RecordAudio")
        msgs = stamped.wait_for(before + 25, timeout_s=15)
        name = f"{namespace.lstrip('/')}/mic"
        wait_until(lambda: any(int(v.get("errors", 0)) >= 1 and int(v["reanchors"]) >= 1
                               for v in diag_values(diags, name)), 10, "errors in diagnostics")
        assert node.alive()
    # Attempts while the server was down are few: exponential back-off (0.2, 0.4, 0.8 s ...)
    # gives at most 4 in that second, a hot loop thousands.
    assert 1 <= node.output.count("retrying in") <= 5
    assert len(server.record_streams()) == 2
    jumps = [i for i, g in enumerate(gaps(msgs, RATE)) if g != 0]
    assert len(jumps) == 1  # one new timeline, starting after the outage
    assert gaps(msgs, RATE)[jumps[0]] > 0.9 * 10**9
    # The new stream starts at the signal's frame 0 again and arrives exactly.
    after = joined(msgs[jumps[0] + 1 :])
    assert after == record_signal(RATE, 16, 1, 0, len(after) // 2)


def test_mic_disable_stops_recording_and_enable_restarts(
        ros: Any, namespace: str, make_kos_server: Callable[..., KosSoundServer]) -> None:
    server = make_kos_server()
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    with mic(namespace, server):
        stamped.wait_for(5, timeout_s=30)
        assert ros.call(SetBool, "mic/enable", SetBool.Request(data=False)).success
        assert server.stop_recording_calls == 1
        assert server.wait_record_outcome(0, 5).outcome == "stopped"
        time.sleep(0.3)
        count = len(stamped.messages)
        time.sleep(0.5)
        assert len(stamped.messages) == count
        assert ros.call(SetBool, "mic/enable", SetBool.Request(data=True)).success
        stamped.wait_for(count + 10, timeout_s=10)
        assert len(server.record_streams()) == 2
    # Shutdown (SIGINT) stops the second recording the same way.
    assert server.stop_recording_calls == 2
    assert server.wait_record_outcome(1, 5).outcome == "stopped"


def test_mic_logs_and_counts_server_errors_and_keeps_running(
        ros: Any, namespace: str, make_kos_server: Callable[..., KosSoundServer]) -> None:
    server = make_kos_server()
    server.faults.record_error_after_chunks = 3
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    diags = ros.subscribe(DiagnosticArray, "/diagnostics")
    with mic(namespace, server) as node:
        wait_until(lambda: len(server.record_streams()) >= 2, 20, "a reconnect after the error")
        server.faults.record_error_after_chunks = None
        count = len(stamped.messages)
        stamped.wait_for(count + 20, timeout_s=15)
        name = f"{namespace.lstrip('/')}/mic"
        wait_until(lambda: any(int(v.get("server_errors", 0)) >= 1
                               for v in diag_values(diags, name)), 10, "server_errors")
        assert node.alive()
    assert "HARDWARE_FAILURE: microphone unplugged" in node.output


# ---------------------------------------------------------------------------- speaker via KOS


def speaker(namespace: str, server: KosSoundServer, **params: Any) -> NodeProcess:
    return NodeProcess(SPEAKER, namespace=namespace, params={
        "sink": "kos", "kos.address": server.address, **params})


def tts(seconds: float, seed: int = 7) -> bytes:
    """Known S16LE mono "speech" at 16 kHz: noise-like, no zero samples."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    return (rng.integers(1, 12_000, n) * rng.choice([-1, 1], n)).astype("<i2").tobytes()


def publish_tts(ros: Any, data: bytes) -> None:
    """Publish ``data`` as 20 ms AudioData chunks at once, as a TTS engine would."""
    pub = ros.publisher(AudioData, "audio")
    ros.wait_for_subscribers(pub, timeout_s=20)
    for i in range(0, len(data), 640):
        pub.publish(AudioData(data=data[i : i + 640]))


def test_speaker_sends_published_tts_to_kos_exactly(
        ros: Any, namespace: str, make_kos_server: Callable[..., KosSoundServer]) -> None:
    server = make_kos_server()
    speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
    data = tts(0.5)
    with speaker(namespace, server, sample_rate=RATE, channels=1, sample_format="S16LE",
                 **{"kos.output_latency_s": 0.2}):
        publish_tts(ros, data)
        record = server.wait_play_outcome(0, 20)
        wait_until(lambda: [m.data for m in speaking.messages][-2:] == [True, False], 10,
                   "is_speaking true, then false")
    assert record.outcome == "answered"
    assert record.config == (RATE, 16, 1)
    assert record.first_message_audio == b""
    lead = round(DEFAULT_LEAD_S * RATE) * 2  # bytes of silence before the speech
    assert record.data[:lead] == bytes(lead)
    assert record.data[lead : lead + len(data)] == data
    assert not any(record.data[lead + len(data):])  # the idle time before the stream closed
    assert len(server.play_streams()) == 1
    # is_speaking stays true until the audio sent has played on the robot: the speech
    # follows the lead, and the robot needs its configured 0.2 s on top.
    mono_to_wall = time.time() - time.monotonic()
    false_at = next(t for t, m in reversed(speaking.timed) if not m.data) / 1e9
    stream_start = record.arrival_s[0] + mono_to_wall
    sounds_until = 0.5 + DEFAULT_LEAD_S + 0.2
    assert sounds_until - 0.1 <= false_at - stream_start <= sounds_until + 1.0


def test_speaker_interrupt_cancels_the_kos_stream(
        ros: Any, namespace: str, make_kos_server: Callable[..., KosSoundServer]) -> None:
    server = make_kos_server()  # plays 16/48 kHz: with no rate asked, the sink takes 48 kHz mono
    speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
    with speaker(namespace, server) as node:
        publish_tts(ros, tts(4.0))
        wait_until(lambda: server.play_streams() and server.play_streams()[0].message_count
                   > 10, 20, "audio at the server")
        answer = ros.call(Trigger, "speaker/interrupt", Trigger.Request())
        interrupted_at = time.monotonic()
        record = server.wait_play_outcome(0, 5)
        cancel_s = time.monotonic() - interrupted_at
        wait_until(lambda: speaking.messages and not speaking.messages[-1].data, 5,
                   "is_speaking false")
        time.sleep(0.5)
        assert len(server.play_streams()) == 1  # nothing more of the interrupted speech
        assert node.alive()
    assert answer.success and "dropped" in answer.message
    assert record.config == (48_000, 16, 1)
    # The test server may record "answered" for a call the client cancelled (its handler can
    # see the request stream end just before gRPC marks the call cancelled); a stream this side
    # ended instead would carry the 0.3 s idle-close silence at its end.
    assert record.outcome in {"cancelled", "answered"}
    tail = np.frombuffer(record.data, "<i2")
    assert len(tail) - (np.flatnonzero(tail)[-1] + 1) < 0.15 * 48_000
    assert cancel_s < 1.0  # at once (generous for a loaded CI machine)
    assert len(record.data) / (48_000 * 2) < 2.0  # paced: most of the 4 s was never sent
