"""Microphone capture: ros2 launch kos_audio mic.launch.py [source:=tone] [namespace:=robot1]."""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    default_config = Path(get_package_share_directory("kos_audio")) / "config" / "mic.yaml"
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=str(default_config),
                              description="mic_node parameter file"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its topics"),
        DeclareLaunchArgument("source", default_value="device",
                              description="device | tone | file (overrides the file)"),
        DeclareLaunchArgument("device", default_value="",
                              description="input device name or index (overrides the file)"),
        Node(
            package="kos_audio",
            executable="mic_node",
            name="mic",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("config"),
                        {"source": LaunchConfiguration("source"),
                         "device": LaunchConfiguration("device")}],
            output="screen",
        ),
    ])
