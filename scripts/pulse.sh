#!/usr/bin/env bash
# A private PulseAudio server that gives PortAudio real devices with no sound card.
#
#   scripts/pulse.sh start [DIR]   start it (DIR default: .run/pulse) and print the environment
#   scripts/pulse.sh env [DIR]     print the environment (eval "$(scripts/pulse.sh env)")
#   scripts/pulse.sh stop [DIR]    stop it
#
# Devices: sink "speaker" (default output; what is played shows on "speaker.monitor"),
# source "mic" = monitor of sink "micfeed" (default input: play into "micfeed" and a node
# captures it), sink "arrayfeed" + source "array" with 8 channels (a mic array).
# ALSA PCMs for PortAudio: default (pulse), speaker_monitor, micfeed, mic, array, arrayfeed.
set -euo pipefail
cmd=${1:-start}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${2:-${KOS_AUDIO_PULSE_DIR:-$root/.run/pulse}}

print_env() {
  cat <<ENV
export PULSE_SERVER=unix:$dir/native
export PULSE_RUNTIME_PATH=$dir
export PULSE_STATE_PATH=$dir
export PULSE_COOKIE=$dir/cookie
export PULSE_CLIENTCONFIG=$dir/client.conf
export ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:$dir/asound.conf
ENV
}

running() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

case "$cmd" in
  env) print_env ;;
  stop)
    if running; then kill "$(cat "$dir/pid")"; fi
    rm -f "$dir/pid" ;;
  start)
    command -v pulseaudio >/dev/null || { echo "pulseaudio is not installed: run scripts/setup.sh" >&2; exit 1; }
    mkdir -p "$dir"
    if running; then print_env; exit 0; fi
    cat > "$dir/server.pa" <<PA
load-module module-native-protocol-unix socket=$dir/native auth-anonymous=1
load-module module-null-sink sink_name=speaker rate=48000 channels=2 norewinds=1 sink_properties=device.description=speaker
load-module module-null-sink sink_name=micfeed rate=48000 channels=1 norewinds=1 sink_properties=device.description=micfeed
load-module module-remap-source source_name=mic master=micfeed.monitor channels=1 source_properties=device.description=mic
load-module module-null-sink sink_name=arrayfeed rate=48000 channels=8 norewinds=1 sink_properties=device.description=arrayfeed
load-module module-remap-source source_name=array master=arrayfeed.monitor channels=8 source_properties=device.description=array
set-default-sink speaker
set-default-source mic
PA
    echo "autospawn = no" > "$dir/client.conf"
    pcm() { # name, pulse device, description
      printf 'pcm.%s { type pulse device "%s" hint { show on description "%s" } }\n' "$1" "$2" "$3"
    }
    {
      echo 'pcm.!default { type pulse hint { show on description "PulseAudio default" } }'
      echo 'ctl.!default { type pulse }'
      pcm speaker speaker "virtual speaker"
      pcm speaker_monitor speaker.monitor "what the virtual speaker played"
      pcm micfeed micfeed "feed of the virtual microphone"
      pcm mic mic "virtual microphone"
      pcm arrayfeed arrayfeed "feed of the virtual 8-channel array"
      pcm array array "virtual 8-channel microphone array"
    } > "$dir/asound.conf"
    # Without systemd/D-Bus the daemon runs in user mode as whoever we are (root in CI).
    env PULSE_RUNTIME_PATH="$dir" PULSE_STATE_PATH="$dir" PULSE_COOKIE="$dir/cookie" \
      HOME="$dir" pulseaudio -n -F "$dir/server.pa" --daemonize=yes --use-pid-file=yes \
      --exit-idle-time=-1 --realtime=no --high-priority=no --log-target="file:$dir/log" \
      --disallow-exit=no
    for _ in $(seq 50); do [ -S "$dir/native" ] && break; sleep 0.05; done
    [ -S "$dir/native" ] || { echo "pulseaudio did not start; see $dir/log" >&2; exit 1; }
    print_env ;;
  *) echo "usage: $0 start|env|stop [DIR]" >&2; exit 2 ;;
esac
