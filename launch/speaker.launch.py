"""Speaker playback: ros2 launch kos_audio speaker.launch.py [sink:=device] [device:=3]
[namespace:=robot1] [audio_topic:=tts/audio] [sink:=file file_path:=/tmp/out.wav].

Starts speaker_node (name ``speaker``). Publish audio_common_msgs/AudioData on
``audio_topic`` and its format (AudioInfo) on ``info_topic``, which defaults to
``<audio_topic>_info`` (e.g. ``tts/audio_info``; or set input.* in the config); stop it
with: ros2 service call /speaker/interrupt std_srvs/srv/Trigger
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def text(name: str) -> ParameterValue:
    """A launch argument as the string typed: ``null``, ``3`` or ``true`` stay text."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def generate_launch_description() -> LaunchDescription:
    audio_topic = LaunchConfiguration("audio_topic")
    default_config = Path(get_package_share_directory("kos_audio")) / "config" / "speaker.yaml"
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=str(default_config),
                              description="speaker_node parameter file"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its topics"),
        DeclareLaunchArgument("sink", default_value="device",
                              description="device | file | null | kos | resonite_mic "
                                          "(overrides the file)"),
        DeclareLaunchArgument("device", default_value="",
                              description="output device name or index (overrides the file)"),
        DeclareLaunchArgument("audio_topic", default_value="audio",
                              description="AudioData topic to play (e.g. tts/audio)"),
        DeclareLaunchArgument("info_topic", default_value=[audio_topic, "_info"],
                              description="AudioInfo topic describing audio_topic"),
        DeclareLaunchArgument("file_path", default_value="",
                              description="sink:=file: the file written (.wav, .flac, .ogg; "
                                          "overrides the file)"),
        Node(
            package="kos_audio",
            executable="speaker_node",
            name="speaker",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("config"),
                        {"sink": text("sink"), "device": text("device"),
                         "file.path": text("file_path")}],
            remappings=[("audio", audio_topic),
                        ("audio_stamped", [audio_topic, "_stamped"]),
                        ("audio_info", LaunchConfiguration("info_topic"))],
            output="screen",
        ),
    ])
