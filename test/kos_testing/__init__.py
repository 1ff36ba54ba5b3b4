"""Test harness of kos_audio: real ROS nodes, real processes, a real PulseAudio server.

Importing this package imports no rclpy; :mod:`kos_testing.ros` does.
"""
