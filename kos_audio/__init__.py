"""kos_audio: the audio layer of a robot, as ROS 2 nodes.

Subpackages, from the inside out:

- :mod:`kos_audio.core`: pure audio (formats, conversion, resampling, chunking, stamping,
  capture loop). No ROS, gRPC or PortAudio import.
- :mod:`kos_audio.backends`: sources and sinks (device, tone, file, KOS, Resonite) behind one
  small interface each way, chosen by name from a registry.
- :mod:`kos_audio.ros`: QoS profiles, parameters, message conversion, diagnostics.
- :mod:`kos_audio.nodes`: the executables (``mic_node``, ...), thin wiring of the above.
"""

__version__ = "0.1.0"
