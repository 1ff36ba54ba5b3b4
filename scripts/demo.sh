#!/usr/bin/env bash
# The main job on the embedded default, on a fresh machine: set up, start mic_node (tone
# source, or the virtual microphone) and show what it publishes until Ctrl-C or --duration.
#
#   scripts/demo.sh [--duration SECONDS] [--source tone|device]
#
# --source device starts the private PulseAudio server and plays a tone into the virtual
# microphone, so mic_node captures through real PortAudio.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=0
source=tone
while (($#)); do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    *) echo "usage: $0 [--duration SECONDS] [--source tone|device]" >&2; exit 2 ;;
  esac
done
"$root/scripts/setup.sh"
venv=${KOS_AUDIO_VENV:-$root/.venv}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$source" = device ]; then "$root/scripts/pulse.sh" stop "$root/.run/demo-pulse"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

params=(-p source:=tone)
if [ "$source" = device ]; then
  eval "$("$root/scripts/pulse.sh" start "$root/.run/demo-pulse")"
  # 30 s of a 440 Hz tone at -6 dBFS into the virtual microphone, looping.
  setsid bash -c 'while true; do
      sox -q -n -t raw -r 48000 -e signed -b 16 -c 1 - synth 30 sine 440 vol 0.5 |
      pacat --playback --device=micfeed --format=s16le --rate=48000 --channels=1 --raw; done' &
  pids+=($!)
  params=(-p source:=device -p device:=mic)
fi
echo "[demo] mic_node (source=$source) publishing on /mic/audio, /mic/audio_stamped, /mic/audio_info"
setsid "$venv/bin/mic_node" --ros-args -r __ns:=/mic "${params[@]}" &
pids+=($!)
monitor=("$venv/bin/audio_monitor")
[ "$duration" != 0 ] && monitor+=(--duration "$duration" --check)
"${monitor[@]}" --ros-args -r __ns:=/mic
