"""Recorder: ros2 launch kos_audio recorder.launch.py [audio_topic:=mic/audio_stamped]
[info_topic:=mic/audio_info] [output_dir:=~/recordings] [namespace:=robot1].

Then: ros2 service call /recorder/start std_srvs/srv/Trigger  (and .../stop).
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    # Text as typed: a directory named 2024 stays "2024".
    output_dir = ParameterValue(LaunchConfiguration("output_dir"), value_type=str)
    default_config = Path(get_package_share_directory("kos_audio")) / "config" / "recorder.yaml"
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=str(default_config),
                              description="recorder_node parameter file"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node (and of relative topics)"),
        DeclareLaunchArgument("audio_topic", default_value="audio_stamped",
                              description="topic to record (AudioDataStamped; AudioData with "
                                          "input.stamped: false in the config)"),
        DeclareLaunchArgument("info_topic", default_value="audio_info",
                              description="the AudioInfo topic describing audio_topic"),
        DeclareLaunchArgument("output_dir", default_value="~/.ros/kos_audio/recordings",
                              description="where recordings go (overrides the file)"),
        Node(
            package="kos_audio",
            executable="recorder_node",
            name="recorder",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("config"),
                        {"output_dir": output_dir}],
            remappings=[("audio_stamped", LaunchConfiguration("audio_topic")),
                        ("audio", LaunchConfiguration("audio_topic")),
                        ("audio_info", LaunchConfiguration("info_topic"))],
            output="screen",
        ),
    ])
