"""The ``main()`` every kos_audio node shares: init, spin, clean shutdown, clear errors.

Shutdown is the part robots exercise most (Ctrl-C in a terminal, ``ros2 launch`` sending
SIGINT to the process group and then its own SIGINT, systemd's SIGTERM), so it is done here
once, not with rclpy's default handlers: those raise KeyboardInterrupt in whatever the main
thread runs, including the thread joins of a node's own cleanup. Instead SIGINT and SIGTERM
get a handler that does nothing but wake the main thread through Python's wakeup fd, the
executor spins on a worker thread, and the main thread sleeps in a read of that fd. The first
signal ends the spin, then the node cleans up (streams closed, files finished) undisturbed by
any further signal, and the process exits 0. (Blocking the signals instead does not work:
threads started before ``main()``, such as OpenBLAS's at ``import numpy``, would still take
them.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from kos_audio.errors import KosAudioError
from kos_audio.ros.params import Param

#: The signals that end a node normally.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def run_node(make_node: Callable[[], Node], *, executable: str,
             args: list[str] | None = None, devices: str = "",
             list_devices: Callable[[], int] | None = None,
             doc: str = "", params: Sequence[Param] = ()) -> int:
    """Run one node until SIGINT/SIGTERM or shutdown; the process exit code.

    ``--help`` (or ``-h``) before ``--ros-args`` prints ``doc`` and the ``params`` table and
    returns 0. ``--list-devices`` runs ``list_devices`` (which prints the ``devices``, e.g.
    ``"input"``, and returns the exit code) instead, before ROS starts. A
    :class:`KosAudioError` while the node is built (a refused parameter, a missing library)
    is printed as one line naming ``executable``, exit code 2, instead of a traceback. An
    exception escaping a callback ends the node with its traceback and exit code 1.

    Must be called from the main thread (Python runs signal handlers there), once: on return
    SIGINT and SIGTERM are ignored, since the process is expected to exit.
    """
    argv = sys.argv if args is None else args
    own_args = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "--help" in own_args or "-h" in own_args:
        print(usage(executable, doc=doc, params=params, devices=devices))
        return 0
    if list_devices is not None and "--list-devices" in own_args:
        return list_devices()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for sig in STOP_SIGNALS:
        # Python writes the signal to wake_w in its C handler, from whichever thread took it;
        # this Python-level handler then runs on the main thread and must not raise.
        signal.signal(sig, _ignore)
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    node: Node | None = None
    failure: list[BaseException] = []
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)

        def spin() -> None:
            try:
                executor.spin()
            except ExternalShutdownException:
                pass
            except BaseException as err:  # reported by the main thread, with its traceback
                failure.append(err)
            finally:
                # Wakes the main thread when the spin ends by itself (rclpy.shutdown, a crash).
                with contextlib.suppress(OSError):
                    os.write(wake_w, b"\0")

        spinner = threading.Thread(target=spin, name="kos_audio-executor", daemon=True)
        spinner.start()
        os.read(wake_r, 1)  # a signal, or the spin's end
        executor.shutdown(timeout_sec=1.0)
        spinner.join(1.0)
    except KosAudioError as err:
        print(f"[{executable}] error: {err}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        # The process is on its way out: a further stop signal must not kill it during the
        # interpreter's finalisation, which puts Python-level handlers back to SIG_DFL (but
        # leaves SIG_IGN alone).
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        signal.set_wakeup_fd(previous_fd)
        os.close(wake_r)
        os.close(wake_w)
    if failure:
        raise failure[0]
    return 0


def _ignore(_signum: int, _frame: object) -> None:
    """The Python-level handler of the stop signals: the wakeup fd already did the work."""


def usage(executable: str, *, doc: str, params: Sequence[Param], devices: str = "") -> str:
    """The ``--help`` text: synopsis, ``doc`` (topics, services), the parameter table."""
    lines = [f"usage: {executable} [--help]"
             + (" [--list-devices]" if devices else "")
             + " [--ros-args -p NAME:=VALUE ... -r FROM:=TO ...]", ""]
    if doc:
        lines += [doc.strip(), ""]
    if devices:
        lines += [f"--list-devices    print the PortAudio {devices} devices and exit", ""]
    if params:
        lines.append("parameters (name, default, description):")
        width = max(len(p.name) for p in params)
        for p in params:
            changeable = "" if p.read_only else " [settable at run time]"
            lines.append(f"  {p.name:<{width}}  {p.default!r:<12} {p.description}{changeable}")
    return "\n".join(lines)
