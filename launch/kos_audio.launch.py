"""The robot's audio bring-up: ros2 launch kos_audio kos_audio.launch.py [namespace:=robot1]
[mic_source:=device] [sink:=device] [mic_device:=3] [speaker_device:=pulse] [aec:=true]
[barge_in:=true].

Starts mic_node (publishing mic/audio, mic/audio_stamped, mic/audio_info) and speaker_node
(playing tts/audio with its format on tts/audio_info, background/audio under it, publishing
is_speaking). The remaps keep the speaker from ever playing the microphone. recorder_node
records mic/audio_stamped on request (recorder/start, recorder/stop). With aec:=true,
echo_canceller publishes mic/clean/* (the microphone without the robot's voice) and
voice_activity; with barge_in:=true the user talking over the robot interrupts it.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

#: mic_node's topics land under mic/; speaker_node plays what the TTS publishes under tts/.
MIC_REMAPS = [("audio", "mic/audio"), ("audio_stamped", "mic/audio_stamped"),
              ("audio_info", "mic/audio_info")]
SPEAKER_REMAPS = [("audio", "tts/audio"), ("audio_stamped", "tts/audio_stamped"),
                  ("audio_info", "tts/audio_info")]
#: recorder_node records the microphone (audio_stamped; audio with input.stamped: false).
RECORDER_REMAPS = [("audio", "mic/audio"), ("audio_stamped", "mic/audio_stamped"),
                   ("audio_info", "mic/audio_info")]


def text(name: str) -> ParameterValue:
    """A launch argument as the string typed: ``null``, ``3`` or ``true`` stay text."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("kos_audio"))
    config = share / "config"
    namespace = LaunchConfiguration("namespace")
    barge_in = ParameterValue(LaunchConfiguration("barge_in"), value_type=bool)
    return LaunchDescription([
        DeclareLaunchArgument("aec", default_value="false",
                              description="echo_canceller: mic/clean/* without the robot's "
                                          "voice, and voice_activity"),
        DeclareLaunchArgument("barge_in", default_value="false",
                              description="the user talking over the robot interrupts it "
                                          "(starts echo_canceller too)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of every node and topic"),
        DeclareLaunchArgument("mic_config", default_value=str(config / "mic.yaml"),
                              description="mic_node parameter file"),
        DeclareLaunchArgument("speaker_config", default_value=str(config / "speaker.yaml"),
                              description="speaker_node parameter file"),
        DeclareLaunchArgument("mic_source", default_value="device",
                              description="mic_node source: device | tone | file | kos"),
        DeclareLaunchArgument("mic_device", default_value="",
                              description="source=device: input device name or index"),
        DeclareLaunchArgument("speaker_device", default_value="",
                              description="sink=device: output device name or index"),
        DeclareLaunchArgument("sink", default_value="device",
                              description="speaker_node sink: device | file | null | kos"),
        Node(
            package="kos_audio",
            executable="mic_node",
            name="mic",
            namespace=namespace,
            parameters=[LaunchConfiguration("mic_config"),
                        {"source": text("mic_source"), "device": text("mic_device")}],
            remappings=MIC_REMAPS,
            output="screen",
        ),
        Node(
            package="kos_audio",
            executable="speaker_node",
            name="speaker",
            namespace=namespace,
            parameters=[LaunchConfiguration("speaker_config"),
                        {"sink": text("sink"), "device": text("speaker_device"),
                         "barge_in.enabled": barge_in}],
            remappings=SPEAKER_REMAPS,
            output="screen",
        ),
        # --- recorder: records the microphone (mic/), never tts/; idle until ~/start -------
        DeclareLaunchArgument("recorder_config", default_value=str(config / "recorder.yaml"),
                              description="recorder_node parameter file"),
        Node(
            package="kos_audio",
            executable="recorder_node",
            name="recorder",
            namespace=namespace,
            parameters=[LaunchConfiguration("recorder_config")],
            remappings=RECORDER_REMAPS,
            output="screen",
        ),
        # --- echo canceller: with aec:=true, or barge_in:=true (which listens to its VAD) ---
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(share / "launch" / "echo_canceller.launch.py")),
            launch_arguments={"namespace": namespace}.items(),
            condition=IfCondition(PythonExpression([
                "'", LaunchConfiguration("aec"), "'.lower() == 'true' or '",
                LaunchConfiguration("barge_in"), "'.lower() == 'true'"])),
        ),
    ])
