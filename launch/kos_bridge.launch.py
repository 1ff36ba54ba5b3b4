"""The K-Scale robot's own microphone and speaker through KOS:
ros2 launch kos_audio kos_bridge.launch.py [kos_address:=localhost:50051] [namespace:=robot1]
[aec:=true] [barge_in:=true].

Starts mic_node with ``source: kos`` (publishing mic/audio, mic/audio_stamped, mic/audio_info
from the robot's RecordAudio stream) and speaker_node with ``sink: kos`` (playing tts/audio,
format on tts/audio_info, through the robot's PlayAudio; publishing is_speaking). Both talk to
the KOS daemon's kos.sound.SoundService at kos_address. The remaps keep the speaker from ever
playing the microphone. aec:=true and barge_in:=true as in kos_audio.launch.py.
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


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("kos_audio"))
    config = share / "config"
    namespace = LaunchConfiguration("namespace")
    barge_in = ParameterValue(LaunchConfiguration("barge_in"), value_type=bool)
    # Text as typed, whatever it looks like.
    address = ParameterValue(LaunchConfiguration("kos_address"), value_type=str)
    return LaunchDescription([
        DeclareLaunchArgument("aec", default_value="false",
                              description="echo_canceller: mic/clean/* without the robot's "
                                          "voice, and voice_activity"),
        DeclareLaunchArgument("barge_in", default_value="false",
                              description="the user talking over the robot interrupts it "
                                          "(starts echo_canceller too)"),
        DeclareLaunchArgument("kos_address", default_value="localhost:50051",
                              description="host:port of the KOS daemon's SoundService"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of both nodes and their topics"),
        DeclareLaunchArgument("kos_config", default_value=str(config / "kos.yaml"),
                              description="KOS settings of both nodes (kos.*)"),
        DeclareLaunchArgument("mic_config", default_value=str(config / "mic.yaml"),
                              description="mic_node parameter file (format, chunk_ms, qos)"),
        DeclareLaunchArgument("speaker_config", default_value=str(config / "speaker.yaml"),
                              description="speaker_node parameter file (format, queue, qos)"),
        Node(
            package="kos_audio",
            executable="mic_node",
            name="mic",
            namespace=namespace,
            parameters=[LaunchConfiguration("mic_config"), LaunchConfiguration("kos_config"),
                        {"source": "kos", "kos.address": address}],
            remappings=MIC_REMAPS,
            output="screen",
        ),
        Node(
            package="kos_audio",
            executable="speaker_node",
            name="speaker",
            namespace=namespace,
            parameters=[LaunchConfiguration("speaker_config"),
                        LaunchConfiguration("kos_config"),
                        {"sink": "kos", "kos.address": address,
                         "barge_in.enabled": barge_in}],
            remappings=SPEAKER_REMAPS,
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
