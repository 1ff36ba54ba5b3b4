"""The package as users meet it: metadata, executables, message definitions, launch files,
linters."""

from __future__ import annotations

import ast
import configparser
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

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
    # Only soxr lacks a public rosdep key; the project's own file defines exactly that one.
    own = (ROOT / "rosdep" / "kos_audio.yaml").read_text()
    assert [line for line in own.splitlines() if line and line[0] not in " #"] == [
        "python3-soxr-pip:"]
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
    pytest.importorskip("launch_ros", reason="launch_ros is not installable from PyPI; "
                                             "checked on robots with apt ROS")
    import importlib.util

    for path in sorted((ROOT / "launch").glob("*.launch.py")):
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.generate_launch_description().entities


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
