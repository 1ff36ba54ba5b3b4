"""Speaker playback: ros2 launch kos_audio speaker.launch.py [sink:=device] [device:=...]
[namespace:=robot1] [audio_topic:=tts/audio].

Then publish audio_common_msgs/AudioData on audio_topic (its format on <audio_topic>_info, or
set input.* in the config), and: ros2 service call /speaker/interrupt std_srvs/srv/Trigger
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    default_config = Path(get_package_share_directory("kos_audio")) / "config" / "speaker.yaml"
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=str(default_config),
                              description="speaker_node parameter file"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its topics"),
        DeclareLaunchArgument("sink", default_value="device",
                              description="device | file | null (overrides the file)"),
        DeclareLaunchArgument("device", default_value="",
                              description="output device name or index (overrides the file)"),
        DeclareLaunchArgument("audio_topic", default_value="audio",
                              description="AudioData topic to play (e.g. tts/audio)"),
        DeclareLaunchArgument("info_topic", default_value="audio_info",
                              description="AudioInfo topic describing audio_topic"),
        Node(
            package="kos_audio",
            executable="speaker_node",
            name="speaker",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("config"),
                        {"sink": LaunchConfiguration("sink"),
                         "device": LaunchConfiguration("device")}],
            remappings=[("audio", LaunchConfiguration("audio_topic")),
                        ("audio_info", LaunchConfiguration("info_topic"))],
            output="screen",
        ),
    ])
