#!/usr/bin/env bash
# The test suite, on a fresh machine: set up (scripts/setup.sh), then
#   1. the gRPC protocol tests again with the oldest grpcio/protobuf robots have
#      (apt on ROS Jazzy: grpcio 1.51, protobuf 3.21), in their own venv;
#   2. every test with the current versions in .venv (core, backends, protocols, nodes over
#      real DDS, devices through a private PulseAudio server).
# Extra arguments go to the second pytest run (e.g. -k mic, -x).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
venv=${KOS_AUDIO_VENV:-$root/.venv}
cd "$root"
if [ -z "${KOS_AUDIO_SKIP_MATRIX:-}" ]; then
  "$root/scripts/test_grpc_matrix.sh"
fi
exec "$venv/bin/python" -m pytest "$@"
