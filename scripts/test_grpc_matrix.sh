#!/usr/bin/env bash
# Run test/protocols with the OLDEST grpcio/protobuf that robots have (no ROS needed).
#
# ROS 2 Jazzy robots get python3-grpcio 1.51.1 and python3-protobuf 3.21.12 (python package
# version 4.21.12) and python3-numpy 1.26.4 from apt; this script pins the same versions from
# PyPI in .venv-grpc-old/ at the repo root (created once, reused while the pins and the Python
# version are unchanged)
# and runs the wire-layer tests there, once with protobuf's default backend (upb) and once with
# the pure-Python backend (what PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python selects, the
# other code path an apt install may take), then with the system Python's apt packages when it
# has them. The current PyPI versions are covered by the main .venv.
#
# Usage: scripts/test_grpc_matrix.sh [extra pytest args]
# Env:   PYTHON (default python3) builds the venv (3.10 or 3.11: grpcio 1.51.1 has no wheel for
#        newer Pythons); KOS_MATRIX_VENV (default <repo>/.venv-grpc-old) is where;
#        KOS_MATRIX_REBUILD=1 forces a rebuild.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KOS_MATRIX_VENV:-$repo/.venv-grpc-old}"
python="${PYTHON:-python3}"
python_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    || { echo "PYTHON=$python does not run" >&2; exit 2; }
case "$python_version" in
    3.10|3.11) ;;
    *) echo "the old-gRPC matrix needs Python 3.10 or 3.11 (grpcio 1.51.1 wheels), not" \
            "$python_version: set PYTHON" >&2; exit 2 ;;
esac
pins=(
    "grpcio==1.51.1"
    "protobuf==4.21.12"
    "numpy==1.26.4"
    "soxr"  # the audio core resamples: lets the KOS/Resonite backend tests run here too
    "pytest"
    "pytest-timeout"
)
stamp="$venv/.kos-matrix-pins"
wanted="$(printf '%s\n' "${pins[@]}")"
venv_python_version() {
    "$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

if [[ "${KOS_MATRIX_REBUILD:-0}" == 1 || ! -x "$venv/bin/python" || ! -f "$stamp" \
      || "$(cat "$stamp")" != "$wanted" || "$(venv_python_version)" != "$python_version" ]]; then
    echo "== building $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
    printf '%s\n' "$wanted" > "$stamp"
fi

versions_py='
import sys

import google.protobuf
import grpc
import numpy
import pytest
from google.protobuf.internal import api_implementation

print(f"python {sys.version.split()[0]}, grpcio {grpc.__version__}, "
      f"protobuf {google.protobuf.__version__} ({api_implementation.Type()}), "
      f"numpy {numpy.__version__}, pytest {pytest.__version__}")
'

cd "$repo"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
"$venv/bin/python" -c "$versions_py"
echo "== test/protocols, protobuf backend: default"
"$venv/bin/python" -m pytest test/protocols -q -p no:cacheprovider "$@"
echo "== test/protocols, protobuf backend: python"
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python \
    "$venv/bin/python" -m pytest test/protocols -q -p no:cacheprovider "$@"

# Debian/Ubuntu's own builds (python3-grpcio, python3-protobuf with its cpp backend) when the
# system Python has them and pytest (apt-get install python3-grpcio python3-protobuf
# python3-numpy python3-pytest). On a ROS 2 Jazzy robot this is the runtime the nodes get.
system_python=/usr/bin/python3
if [[ -x "$system_python" ]] \
        && "$system_python" -c 'import grpc, google.protobuf, numpy, pytest' 2>/dev/null; then
    echo "== test/protocols, system $system_python (apt packages)"
    "$system_python" -c "$versions_py"
    "$system_python" -m pytest test/protocols -q -p no:cacheprovider "$@"
else
    echo "== skipped the system-Python pass: $system_python lacks grpc/protobuf/numpy/pytest"
fi
