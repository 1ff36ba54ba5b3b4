#!/usr/bin/env bash
# The test suite, on a fresh machine: set up (scripts/setup.sh), then
#   1. the gRPC protocol tests again with the oldest grpcio/protobuf robots have
#      (apt on ROS Jazzy: grpcio 1.51, protobuf 3.21), in their own venv (<venv>-grpc-old) on
#      the same Python (3.10 and 3.11 only: grpcio 1.51 has no wheel for 3.12 and newer);
#   2. every test with the current versions in the venv (core, backends, protocols, nodes over
#      real DDS, devices through a private PulseAudio server).
# Extra arguments go to the second pytest run (e.g. -k mic, -x).
#
# Environment: as scripts/setup.sh (KOS_AUDIO_VENV, KOS_AUDIO_ROS_DISTRO, PYTHON,
# KOS_AUDIO_REBUILD, KOS_AUDIO_ROS2_CLI); KOS_AUDIO_SKIP_MATRIX=1 leaves out step 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
venv=${KOS_AUDIO_VENV:-$root/.venv}
cd "$root"
if [ -z "${KOS_AUDIO_SKIP_MATRIX:-}" ]; then
  # The venv's own interpreter (setup.sh made the venv with it and remembers its version).
  version=$(sed -n 's/^python=//p' "$venv/.kos_audio-venv")
  base=$(sed -n 's/^home *= *//p' "$venv/pyvenv.cfg")/python$version
  case $version in
    3.10|3.11) PYTHON=$base KOS_MATRIX_VENV=$venv-grpc-old "$root/scripts/test_grpc_matrix.sh" ;;
    *) echo "[test] no old-gRPC matrix on Python $version: grpcio 1.51.1 has no wheel for it" \
            "(it runs on 3.10 and 3.11)" ;;
  esac
fi
exec "$venv/bin/python" -m pytest "$@"
