"""mic_node as a real process, heard by a real rclpy node over DDS."""

import time
from typing import Any

import numpy as np
import pytest
from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, wait_until
from mic_helpers import gaps, pcm16, peak_hz, stamps_ns
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from std_srvs.srv import SetBool

MIC = "kos_audio.nodes.mic_node"


def mic(namespace: str, **params: Any) -> NodeProcess:
    return NodeProcess(MIC, namespace=namespace, params={"source": "tone", **params})


def test_tone_arrives_with_exact_contiguous_stamps(ros: Any, namespace: str) -> None:
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    plain = ros.subscribe(AudioData, "audio")
    with mic(namespace, **{"tone.frequency_hz": 1000.0, "tone.amplitude": 0.25}) as node:
        msgs = stamped.wait_for(100, timeout_s=30)[:100]
        plain.wait_for(100, timeout_s=10)
    assert node.proc is not None
    assert all(len(m.audio.data) == 640 for m in msgs)  # 20 ms of 16 kHz S16LE
    assert gaps(msgs, 16000) == [0] * 99
    assert {m.header.frame_id for m in msgs} == {"microphone"}
    now = time.time_ns()
    assert abs(stamps_ns(msgs)[0] - now) < 60 * 10**9  # ROS time, not a counter from zero
    x = pcm16(msgs) / 32768.0
    assert peak_hz(x, 16000) == pytest.approx(1000.0, abs=2)
    assert np.max(np.abs(x)) == pytest.approx(0.25, abs=0.001)
    first_plain = bytes(plain.messages[0].data)
    assert first_plain in {bytes(m.audio.data) for m in stamped.messages}


def test_audio_info_is_latched_for_late_subscribers(ros: Any, namespace: str) -> None:
    params = {"sample_rate": 48000, "channels": 2, "sample_format": "F32LE", "chunk_ms": 10.0}
    with mic(namespace, **params):
        stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
        stamped.wait_for(5, timeout_s=30)
        late = ros.subscribe(AudioInfo, "audio_info", LATCHED)  # after the node published it
        info = late.wait_for(1, timeout_s=10)[0]
    assert (info.channels, info.sample_rate, info.sample_format) == (2, 48000, "F32LE")
    assert info.coding_format == "wave"
    assert info.bitrate == 48000 * 2 * 32
    assert len(stamped.messages[0].audio.data) == 480 * 2 * 4


def test_enable_service_stops_and_restarts_capture(ros: Any, namespace: str) -> None:
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    with mic(namespace):
        stamped.wait_for(10, timeout_s=30)
        off = ros.call(SetBool, "mic/enable", SetBool.Request(data=False))
        assert off.success and "disabled" in off.message
        time.sleep(0.3)  # in flight
        count = len(stamped.messages)
        time.sleep(1.0)
        assert len(stamped.messages) == count
        assert ros.call(SetBool, "mic/enable", SetBool.Request(data=False)).success
        on = ros.call(SetBool, "mic/enable", SetBool.Request(data=True))
        assert on.success and "enabled" in on.message
        stamped.wait_for(count + 20, timeout_s=10)
    msgs = stamped.messages
    jumps = [i for i, g in enumerate(gaps(msgs, 16000)) if g != 0]
    assert len(jumps) == 1  # the pause shows as exactly one stamp jump
    assert gaps(msgs, 16000)[jumps[0]] > 0.9 * 10**9


def test_tone_frequency_can_change_at_run_time(ros: Any, namespace: str) -> None:
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    with mic(namespace):
        stamped.wait_for(5, timeout_s=30)
        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=2000.0)
        req = SetParameters.Request(parameters=[ParameterMsg(name="tone.frequency_hz",
                                                             value=value)])
        assert ros.call(SetParameters, "mic/set_parameters", req).results[0].successful
        stamped.clear()
        msgs = stamped.wait_for(50, timeout_s=10)
        ro = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=8000)
        req = SetParameters.Request(parameters=[ParameterMsg(name="sample_rate", value=ro)])
        result = ros.call(SetParameters, "mic/set_parameters", req).results[0]
    assert peak_hz(pcm16(msgs[10:50]) / 32768.0, 16000) == pytest.approx(2000, abs=2)
    assert not result.successful and "read-only" in result.reason


def test_diagnostics_report_running_state(ros: Any, namespace: str) -> None:
    diags = ros.subscribe(DiagnosticArray, "/diagnostics")
    with mic(namespace):
        name = f"{namespace.lstrip('/')}/mic"
        wait_until(lambda: any(s.name == name and any(kv.key == "chunk_rate_hz" and
                                                      float(kv.value) > 45 for kv in s.values)
                               for d in diags.messages for s in d.status), 30,
                   "diagnostics with a chunk rate near 50 Hz")
    status = next(s for d in reversed(diags.messages) for s in d.status if s.name == name)
    values = {kv.key: kv.value for kv in status.values}
    assert values["state"] == "running"
    assert values["errors"] == "0"
    assert status.level == b"\x00"


@pytest.mark.parametrize(("params", "message"), [
    ({"sample_format": "S17LE"}, "sample_format='S17LE' is invalid; choose one of U8, S16LE"),
    ({"sample_rate": 5}, "sample_rate"),
    ({"source": "sdcard"}, "source='sdcard' is invalid; choose one of device, tone, file"),
    ({"chunk_ms": 0.0}, "chunk_ms"),
    ({"qos.reliability": "sometimes"}, "qos.reliability='sometimes' is invalid"),
    ({"encoding": "opus", "sample_rate": 44100},
     "encoding opus: Opus carries S16LE at 8000, 12000, 16000, 24000, 48000 Hz"),
    ({"encoding": "opus", "chunk_ms": 25.0}, "encoding opus: Opus frames are 10, 20, 40, 60 ms"),
])
def test_bad_parameters_are_refused_with_a_clear_message(
        namespace: str, params: dict[str, Any], message: str) -> None:
    node = mic(namespace, **params).start()
    code = node.wait(30)
    assert code == 2
    assert message in node.output
    assert "Traceback" not in node.output


def test_file_source_through_the_node(ros: Any, namespace: str, tmp_path: Any) -> None:
    import soundfile

    ramp = (np.arange(8000) * 5 % 20000 - 10000).astype(np.int16)
    soundfile.write(str(tmp_path / "ramp.wav"), ramp, 8000, subtype="PCM_16")
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    params = {"source": "file", "file.path": str(tmp_path / "ramp.wav"), "sample_rate": 8000,
              "file.loop": False, "autostart": False}
    with NodeProcess(MIC, namespace=namespace, params=params) as node:
        wait_until(lambda: ros.node.count_publishers(f"{namespace}/audio_stamped") > 0, 30,
                   "mic_node publisher discovered")
        assert ros.call(SetBool, "mic/enable", SetBool.Request(data=True)).success
        wait_until(lambda: "finished" in node.output, 30, "end of file reported")
        time.sleep(0.2)
    got = pcm16(stamped.messages)
    assert np.array_equal(got, ramp)  # every sample, bit-exact, then nothing more
    assert gaps(stamped.messages, 8000) == [0] * (len(stamped.messages) - 1)


def test_list_devices_runs_without_ros(pulse: Any) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", MIC, "--list-devices"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert "index" in out and "mic" in out and "array" in out


def test_opus_encoding_sends_one_packet_per_chunk_that_decodes_to_the_tone(
    ros: Any, namespace: str
) -> None:
    pytest.importorskip("av")
    from kos_audio.core.codec import StreamDecoder

    info = ros.subscribe(AudioInfo, "audio_info", LATCHED)
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    params = {"encoding": "opus", "opus.bitrate": 24000, "sample_rate": 48000,
              "tone.frequency_hz": 1000.0, "tone.amplitude": 0.25}
    with mic(namespace, **params):
        msgs = stamped.wait_for(100, timeout_s=30)[:100]
        announced = info.wait_for(1, timeout_s=10)[0]
    assert (announced.coding_format, announced.sample_rate, announced.channels,
            announced.bitrate) == ("opus", 48000, 1, 24000)
    # 20 ms per packet: the stamps advance by exactly one Opus frame each.
    assert set(np.diff(stamps_ns(msgs))) == {20_000_000}
    sizes = [len(m.audio.data) for m in msgs]
    assert max(sizes) < 1920 // 8  # 24 kbit/s: about 60 bytes, not 1920 of PCM
    decoder = StreamDecoder("opus", 48000, 1)
    pcm = b"".join(decoder.decode(bytes(m.audio.data)) for m in msgs)
    x = np.frombuffer(pcm, "<i2")[4800:] / 32768.0  # past the codec's start-up
    assert len(pcm) == 100 * 960 * 2
    assert peak_hz(x, 48000) == pytest.approx(1000.0, abs=2)
    assert np.sqrt(np.mean(x**2)) == pytest.approx(0.25 / np.sqrt(2), rel=0.1)

