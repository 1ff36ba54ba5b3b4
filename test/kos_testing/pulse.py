"""The private PulseAudio server (scripts/pulse.sh) for tests, and playing/recording through it
with the PulseAudio command-line tools (not through kos_audio, so they check it independently)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pulse.sh"


class PulseServer:
    """Starts the server in ``directory`` and exports its environment into ``os.environ``
    (so PortAudio in this process and in child processes uses it)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.env: dict[str, str] = {}

    def start(self) -> PulseServer:
        out = subprocess.run([str(SCRIPT), "start", str(self.directory)], check=True,
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                self.env[key] = value
        os.environ.update(self.env)
        return self

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.directory)], check=False)

    def loopback(self, *, source: str = "speaker.monitor", sink: str = "micfeed",
                 latency_ms: int = 60, gain: float = 1.0) -> int:
        """Carry what ``source`` hears into ``sink`` ``latency_ms`` later, scaled by ``gain``
        (an echo path: by default, what the virtual speaker plays reaches the virtual mic).

        Returns the module index for :meth:`unload`.
        """
        env = {**os.environ, **self.env}
        out = subprocess.run(
            ["pactl", "load-module", "module-loopback", f"source={source}", f"sink={sink}",
             f"latency_msec={latency_ms}", "source_dont_move=1", "sink_dont_move=1"],
            check=True, capture_output=True, text=True, env=env)
        module = int(out.stdout.strip())
        if gain != 1.0:
            listing = subprocess.run(["pactl", "list", "sink-inputs"], check=True,
                                     capture_output=True, text=True, env=env).stdout
            for block in listing.split("Sink Input #")[1:]:
                if f"Owner Module: {module}\n" in block:
                    index = block.split(maxsplit=1)[0]
                    # PulseAudio volumes are cubic: 65536 * gain ** (1/3) is linear ``gain``.
                    raw = round(65536 * gain ** (1 / 3))
                    subprocess.run(["pactl", "set-sink-input-volume", index, str(raw)],
                                   check=True, env=env)
                    break
            else:
                raise RuntimeError(f"no sink input of loopback module {module}")
        return module

    def unload(self, module: int) -> None:
        """Unload a module :meth:`loopback` loaded."""
        subprocess.run(["pactl", "unload-module", str(module)], check=True,
                       env={**os.environ, **self.env})

    def play(self, samples: npt.NDArray[np.int16], *, device: str, rate: int,
             channels: int = 1) -> subprocess.Popen[bytes]:
        """Start playing int16 ``samples`` into the sink ``device`` with pacat; returns at once.

        The whole signal goes into the server's buffer before playback starts (the stream's
        target length covers it, and pacat's drain at end of input starts it): the server plays
        it on its own clock, whatever pacat's scheduling. With a short buffer (it was 20 ms) a
        pacat descheduled for longer on a loaded machine or a cold start underran, and the
        null sink inserted silence into the signal (measured: 5-30 ms of zeros 15-625 ms in,
        "Stream underrun" from ``pacat -v``), which the tests then blamed on the capture.
        """
        frames = samples.size // channels
        buffer_ms = frames * 1000 // rate + 100
        proc = subprocess.Popen(
            ["pacat", "--playback", f"--device={device}", "--format=s16le", f"--rate={rate}",
             f"--channels={channels}", f"--latency-msec={buffer_ms}", "--raw"],
            stdin=subprocess.PIPE, env={**os.environ, **self.env})
        assert proc.stdin is not None
        proc.stdin.write(samples.astype("<i2").tobytes())
        proc.stdin.close()
        return proc

    def record(self, *, device: str, rate: int, channels: int = 1) -> subprocess.Popen[bytes]:
        """Start recording int16 from the source ``device`` with parec; read ``stdout``."""
        return subprocess.Popen(
            ["parec", f"--device={device}", "--format=s16le", f"--rate={rate}",
             f"--channels={channels}", "--latency-msec=20", "--raw"],
            stdout=subprocess.PIPE, env={**os.environ, **self.env})
