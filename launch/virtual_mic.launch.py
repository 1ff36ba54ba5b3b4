"""Robot speech into Resonite's virtual microphone:
ros2 launch kos_audio virtual_mic.launch.py [audio_topic:=tts/audio] [listen:=true]

Starts speaker_node (name ``virtual_mic``) with ``sink: resonite_mic``: what the TTS publishes
on ``audio_topic`` (format on ``<audio_topic>_info``) is streamed, paced to real time, into the
Resonite IO ``Microphone`` over its Unix socket, so the avatar speaks. Interrupt it like any
speaker (``interrupt`` topic, ``virtual_mic/interrupt`` service); its ``is_speaking`` is
``virtual_mic/is_speaking`` so it never clashes with a real speaker in the same namespace.

With ``listen:=true`` it also starts mic_node (name ``resonite_ears``) with ``source:
resonite_speaker``: what the avatar hears is published on ``resonite/audio``,
``resonite/audio_stamped`` and ``resonite/audio_info``.

The socket: ``resonite_socket`` if given, else ``RESONITE_IO_SOCKET``, else the single live
``resonite-*.sock`` in ``RESONITE_IO_SOCKET_DIR`` or ``~/.resonite-io``.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

#: What the avatar hears lands under resonite/.
EARS_REMAPS = [("audio", "resonite/audio"), ("audio_stamped", "resonite/audio_stamped"),
               ("audio_info", "resonite/audio_info")]


def generate_launch_description() -> LaunchDescription:
    config = Path(get_package_share_directory("kos_audio")) / "config"
    namespace = LaunchConfiguration("namespace")
    audio_topic = LaunchConfiguration("audio_topic")
    # Forced to a string: an empty argument must stay "" (search), not become a null.
    socket = ParameterValue(LaunchConfiguration("resonite_socket"), value_type=str)
    return LaunchDescription([
        DeclareLaunchArgument("audio_topic", default_value="tts/audio",
                              description="the TTS audio topic (AudioData); its format is "
                                          "read from <audio_topic>_info"),
        DeclareLaunchArgument("resonite_socket", default_value="",
                              description="Resonite IO socket path; '' = RESONITE_IO_SOCKET "
                                          "or the resonite-*.sock search"),
        DeclareLaunchArgument("listen", default_value="false",
                              description="also publish what the avatar hears on "
                                          "resonite/audio (mic_node, source resonite_speaker)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the nodes and their topics"),
        DeclareLaunchArgument("resonite_config", default_value=str(config / "resonite.yaml"),
                              description="Resonite settings of both nodes (resonite.*)"),
        DeclareLaunchArgument("speaker_config", default_value=str(config / "speaker.yaml"),
                              description="speaker_node parameter file (queue, input, qos)"),
        DeclareLaunchArgument("mic_config", default_value=str(config / "mic.yaml"),
                              description="mic_node parameter file (format, chunk_ms, qos)"),
        Node(
            package="kos_audio",
            executable="speaker_node",
            name="virtual_mic",
            namespace=namespace,
            parameters=[LaunchConfiguration("speaker_config"),
                        LaunchConfiguration("resonite_config"),
                        {"sink": "resonite_mic", "resonite.socket": socket}],
            remappings=[("audio", audio_topic),
                        ("audio_info", [audio_topic, "_info"]),
                        ("audio_stamped", [audio_topic, "_stamped"]),
                        ("is_speaking", "virtual_mic/is_speaking")],
            output="screen",
        ),
        Node(
            package="kos_audio",
            executable="mic_node",
            name="resonite_ears",
            namespace=namespace,
            parameters=[LaunchConfiguration("mic_config"),
                        LaunchConfiguration("resonite_config"),
                        {"source": "resonite_speaker", "resonite.socket": socket}],
            remappings=EARS_REMAPS,
            condition=IfCondition(LaunchConfiguration("listen")),
            output="screen",
        ),
    ])
