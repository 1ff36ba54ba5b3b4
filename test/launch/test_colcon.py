"""colcon (from PyPI) builds the package from this repository as on a robot, plain and
``--symlink-install``, and ``ros2 launch`` runs it from that install.

The workspace is temporary: ``colcon build --base-paths <repo>`` with build, install and log
bases under tmp_path (``tools/`` has a COLCON_IGNORE). Then, in ``bash -c`` with the install's
``setup.bash`` sourced (the venv's bin on PATH, as after ``source .venv/bin/activate``):
``ros2 pkg prefix kos_audio`` is the temporary install, and
``ros2 launch kos_audio mic.launch.py source:=tone`` runs the install's mic_node, which publishes
audio and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from audio_common_msgs.msg import AudioDataStamped
from ros2_helpers import COLCON, ROOT, Session, require, require_ros2, ros2_env, wait_for_nodes


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_ros2()
    require(COLCON, "colcon (colcon-core colcon-ros colcon-python-setup-py "
                    "colcon-package-selection colcon-bash)")


def colcon_build(workspace: Path, *options: str) -> Path:
    """``colcon build`` of kos_audio from the repository into ``workspace``; the install."""
    install = workspace / "install"
    argv = [str(COLCON), "--log-base", str(workspace / "log"), "build",
            "--base-paths", str(ROOT), "--packages-select", "kos_audio",
            "--build-base", str(workspace / "build"), "--install-base", str(install),
            "--event-handlers", "console_direct-", *options]
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=workspace, env=ros2_env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Finished <<< kos_audio" in done.stdout, done.stdout + done.stderr
    print(f"colcon build {' '.join(options)}: {time.monotonic() - t0:.1f} s")
    return install


def sourced(install: Path, command: str) -> list[str]:
    """``command`` in bash with the install's setup.bash sourced."""
    return ["bash", "-c", f"source {shlex.quote(str(install / 'setup.bash'))} && {command}"]


@pytest.mark.parametrize("options", [[], ["--symlink-install"]], ids=["plain", "symlink"])
def test_colcon_build_and_launch_from_its_install(ros: Any, namespace: str, tmp_path: Path,
                                                  options: list[str]) -> None:
    install = colcon_build(tmp_path, *options)
    share = install / "kos_audio/share/kos_audio"
    for exe in ("mic_node", "speaker_node", "recorder_node", "audio_monitor", "bag_to_wav"):
        assert (install / "kos_audio/lib/kos_audio" / exe).exists(), exe
    assert (install / "kos_audio/share/ament_index/resource_index/packages/kos_audio").exists()
    launch_file = share / "launch/mic.launch.py"
    if options:  # the repository's files, linked
        assert launch_file.is_symlink()
        assert launch_file.resolve() == ROOT / "launch/mic.launch.py"
    else:
        assert not launch_file.is_symlink()
        assert launch_file.read_text() == (ROOT / "launch/mic.launch.py").read_text()

    env = ros2_env(home=tmp_path)
    prefix = subprocess.run(sourced(install, "ros2 pkg prefix kos_audio"), env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert prefix.returncode == 0, prefix.stdout + prefix.stderr
    assert prefix.stdout.strip() == str(install / "kos_audio")

    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    command = f"exec ros2 launch kos_audio mic.launch.py source:=tone " \
              f"namespace:={namespace.strip('/')}"
    with Session(sourced(install, command), env=env, cwd=tmp_path) as run:
        wait_for_nodes(ros, [f"{namespace}/mic"], session=run)
        stamped.wait_for(5, timeout_s=30)
        # The node that runs is the install's, not the venv's.
        pid = int(run.output.split("[mic_node-1]: process started with pid [")[1].split("]")[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert str(install / "kos_audio/lib/kos_audio/mic_node").encode() in cmdline, cmdline
        run.assert_clean_ctrl_c()
