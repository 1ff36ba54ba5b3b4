"""The ``main()`` every kos_audio node shares: init, spin, clean shutdown, clear errors."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from kos_audio.errors import KosAudioError


def run_node(make_node: Callable[[], Node], *, executable: str,
             args: list[str] | None = None, devices: str = "") -> int:
    """Run one node until Ctrl-C or shutdown; the process exit code.

    A :class:`KosAudioError` while the node is built (a refused parameter, a missing library)
    is printed as one line naming ``executable``, exit code 2, instead of a traceback.
    With ``devices`` ``"input"`` or ``"output"``, ``--list-devices`` prints those devices
    instead, before ROS starts.
    """
    argv = sys.argv if args is None else args
    if devices and "--list-devices" in argv:
        return print_devices(output=devices == "output")
    rclpy.init(args=argv)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except KosAudioError as err:
        print(f"[{executable}] error: {err}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def print_devices(*, output: bool) -> int:
    """Print the PortAudio input (or output) devices: index, name, channels, default rate."""
    try:
        from kos_audio.backends.device import list_devices
    except ImportError as err:
        print(f"cannot list devices: {err}", file=sys.stderr)
        return 1
    kind = "out ch" if output else "in ch"
    print(f"{'index':>5}  {'name':<40} {kind:>6} {'rate (Hz)':>9}  host API")
    for d in list_devices():
        channels = d.max_output_channels if output else d.max_input_channels
        if channels > 0:
            print(f"{d.index:>5}  {d.name:<40} {channels:>6} "
                  f"{d.default_sample_rate_hz:>9.0f}  {d.host_api}")
    return 0
