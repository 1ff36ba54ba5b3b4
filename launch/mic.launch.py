"""Microphone capture: ros2 launch kos_audio mic.launch.py [source:=tone] [device:=3]
[namespace:=robot1] [config:=my_mic.yaml].

Starts mic_node (name ``mic``) publishing ``audio``, ``audio_stamped`` and ``audio_info``
(under ``namespace``). ``source`` and ``device`` override the parameter file; both are passed
as text, so ``device:=3`` is device index 3.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def text(name: str) -> ParameterValue:
    """A launch argument as the string typed: ``3``, ``true`` or ``null`` stay text."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def generate_launch_description() -> LaunchDescription:
    default_config = Path(get_package_share_directory("kos_audio")) / "config" / "mic.yaml"
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=str(default_config),
                              description="mic_node parameter file"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its topics"),
        DeclareLaunchArgument("source", default_value="device",
                              description="device | tone | file | kos | resonite_speaker "
                                          "(overrides the file)"),
        DeclareLaunchArgument("device", default_value="",
                              description="input device name or index (overrides the file)"),
        Node(
            package="kos_audio",
            executable="mic_node",
            name="mic",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("config"),
                        {"source": text("source"), "device": text("device")}],
            output="screen",
        ),
    ])
