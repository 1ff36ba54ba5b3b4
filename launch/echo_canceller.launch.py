"""The microphone without the robot's own voice:
ros2 launch kos_audio echo_canceller.launch.py [namespace:=robot1].

Starts echo_canceller beside mic_node and speaker_node (as kos_audio.launch.py and
kos_bridge.launch.py place them, which include this file with aec:=true). It reads
mic/audio_stamped + mic/audio_info and what the speaker played (played/audio_stamped +
played/audio_info), and publishes mic/clean/audio_stamped, mic/clean/audio,
mic/clean/audio_info (the microphone's stamps, mono) and voice_activity (std_msgs/Bool), which
speaker_node's barge-in listens to.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

#: In: the microphone (mic/). Out: mic/clean/. played/ and voice_activity stay as named.
ECHO_REMAPS = [("audio_stamped", "mic/audio_stamped"), ("audio_info", "mic/audio_info"),
               ("clean/audio", "mic/clean/audio"),
               ("clean/audio_stamped", "mic/clean/audio_stamped"),
               ("clean/audio_info", "mic/clean/audio_info")]


def generate_launch_description() -> LaunchDescription:
    config = Path(get_package_share_directory("kos_audio")) / "config"
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the mic and speaker nodes"),
        DeclareLaunchArgument("echo_config", default_value=str(config / "echo_canceller.yaml"),
                              description="echo_canceller parameter file"),
        Node(
            package="kos_audio",
            executable="echo_canceller",
            name="echo_canceller",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("echo_config")],
            remappings=ECHO_REMAPS,
            output="screen",
        ),
    ])
