"""ROS 2 glue shared by the nodes: QoS profiles, parameters, messages, diagnostics."""
