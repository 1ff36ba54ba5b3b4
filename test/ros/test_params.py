"""Parameters as users type them: real nodes, --ros-args, YAML files, set-parameter calls."""

from pathlib import Path
from typing import Any

import pytest
from audio_common_msgs.msg import AudioDataStamped
from kos_testing.procs import NodeProcess
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters

from kos_audio.ros.params import coerce


@pytest.mark.parametrize(("default", "typed", "meant"), [
    (20.0, 40, 40.0),            # chunk_ms:=40
    (20.0, 40.5, 40.5),
    (16000, 16000.0, 16000),     # sample_rate:=16000.0
    (16000, 16000.5, 16000.5),   # not integral: left for rclpy to refuse
    ("", 3, "3"),                # device:=3
    ("", 2.5, "2.5"),
    ("device", None, "null"),    # sink:=null through YAML
    ("", True, "true"),          # frame_id:=true
    ("", False, "false"),
    (True, 1, 1),                # a bool is not guessed from a number
    (1.0, True, True),           # nor a number from a bool
    ("x", [1, 2], [1, 2]),
])
def test_coerce_reads_the_spelling_the_user_meant(default: Any, typed: Any, meant: Any) -> None:
    result = coerce(default, typed)
    assert result == meant
    assert type(result) is type(meant)


def _value(param: ParameterValue) -> Any:
    return {ParameterType.PARAMETER_DOUBLE: param.double_value,
            ParameterType.PARAMETER_INTEGER: param.integer_value,
            ParameterType.PARAMETER_STRING: param.string_value,
            ParameterType.PARAMETER_BOOL: param.bool_value}[param.type]


def _get(ros: Any, node: str, names: list[str]) -> dict[str, tuple[int, Any]]:
    answer = ros.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=names))
    return {n: (v.type, _value(v)) for n, v in zip(names, answer.values, strict=True)}


def test_command_line_values_as_typed(ros: Any, namespace: str) -> None:
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    typed = ["-p", "source:=tone", "-p", "chunk_ms:=40", "-p", "sample_rate:=16000.0",
             "-p", "device:=3", "-p", "frame_id:=true", "-p", "tone.amplitude:=1"]
    with NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, ros_args=typed) as node:
        msg = stamped.wait_for(1, timeout_s=30)[0]
        values = _get(ros, "mic", ["chunk_ms", "sample_rate", "device", "frame_id",
                                   "tone.amplitude"])
    assert values == {
        "chunk_ms": (ParameterType.PARAMETER_DOUBLE, 40.0),
        "sample_rate": (ParameterType.PARAMETER_INTEGER, 16000),
        "device": (ParameterType.PARAMETER_STRING, "3"),
        "frame_id": (ParameterType.PARAMETER_STRING, "true"),
        "tone.amplitude": (ParameterType.PARAMETER_DOUBLE, 1.0),
    }, node.output
    assert len(msg.audio.data) == 640 * 2  # 40 ms of 16 kHz S16LE
    assert msg.header.frame_id == "true"


def test_yaml_file_values_as_typed(ros: Any, namespace: str, tmp_path: Path) -> None:
    params = tmp_path / "speaker.yaml"
    # What a user writes: bare numbers for floats and strings, null for the null sink.
    params.write_text("/**:\n  ros__parameters:\n    sink: null\n    block_ms: 10\n"
                      "    volume: 1\n    device: 3\n    max_queue_s: 5\n")
    with NodeProcess("kos_audio.nodes.speaker_node", namespace=namespace,
                     ros_args=["--params-file", str(params)]) as node:
        values = _get(ros, "speaker", ["sink", "block_ms", "volume", "device", "max_queue_s"])
    assert values == {
        "sink": (ParameterType.PARAMETER_STRING, "null"),
        "block_ms": (ParameterType.PARAMETER_DOUBLE, 10.0),
        "volume": (ParameterType.PARAMETER_DOUBLE, 1.0),
        "device": (ParameterType.PARAMETER_STRING, "3"),
        "max_queue_s": (ParameterType.PARAMETER_DOUBLE, 5.0),
    }, node.output


def _set(ros: Any, node: str, name: str, value: ParameterValue) -> Any:
    request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)])
    return ros.call(SetParameters, f"{node}/set_parameters", request).results[0]


def test_run_time_set_takes_an_integer_for_a_float(ros: Any, namespace: str) -> None:
    # ros2 param set /mic tone.frequency_hz 880 sends an INTEGER.
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    with NodeProcess("kos_audio.nodes.mic_node", namespace=namespace,
                     params={"source": "tone"}) as node:
        stamped.wait_for(1, timeout_s=30)
        result = _set(ros, "mic", "tone.frequency_hz",
                      ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=880))
        values = _get(ros, "mic", ["tone.frequency_hz"])
        wrong = _set(ros, "mic", "tone.frequency_hz",
                     ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="high"))
        out_of_range = _set(ros, "mic", "tone.amplitude",
                            ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=3))
        assert node.alive(), node.output
    assert result.successful, result.reason
    assert values == {"tone.frequency_hz": (ParameterType.PARAMETER_DOUBLE, 880.0)}
    assert not wrong.successful
    assert not out_of_range.successful


def test_a_wrong_type_is_one_clear_line(namespace: str) -> None:
    node = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace,
                       ros_args=["-p", "chunk_ms:=fast"]).start()
    code = node.wait(30)
    assert code == 2, node.output
    assert "chunk_ms" in node.output
    assert "Traceback" not in node.output
