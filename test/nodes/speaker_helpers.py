"""The speaker_node harness shared by the speaker tests: signals, a parec recording of the
virtual speaker, a speaker_node process with the probe's ends of its topics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from diagnostic_msgs.msg import DiagnosticArray
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, RosProbe, wait_until
from std_msgs.msg import Bool, Empty

MODULE = "kos_audio.nodes.speaker_node"
MONITOR_RATE = 48000


# -- signals and analysis ------------------------------------------------------------------
def tone(freq: float, seconds: float, *, rate: int = 16000, channels: int = 1,
         amp: float = 0.5, fmt: str = "S16LE") -> bytes:
    n = round(seconds * rate)
    x = amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    x = np.repeat(x[:, None], channels, axis=1)
    if fmt == "F32LE":
        return x.astype("<f4").tobytes()
    return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()


def chunks(data: bytes, frame_bytes: int, frames: int) -> list[bytes]:
    step = frame_bytes * frames
    return [data[i : i + step] for i in range(0, len(data), step)]


def loud_span(x: np.ndarray, rate: int, threshold: float = 0.05) -> tuple[float, float]:
    """Start and end (s) of the audible part of ``x``."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    assert len(loud), "nothing audible was recorded"
    return loud[0] / rate, (loud[-1] + 1) / rate


def loud_seconds(x: np.ndarray, rate: int, threshold: float = 0.05) -> float:
    """Total audible time: 5 ms windows whose peak exceeds ``threshold``."""
    win = rate // 200
    peaks = np.abs(x[: len(x) // win * win]).reshape(-1, win).max(axis=1)
    return float(np.count_nonzero(peaks > threshold) * win / rate)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def amplitude_at(x: np.ndarray, freq: float, rate: int) -> float:
    """Amplitude of the ``freq`` component of ``x`` (least squares on sin/cos)."""
    t = np.arange(len(x)) / rate
    return float(2 * np.hypot(np.mean(x * np.sin(2 * np.pi * freq * t)),
                              np.mean(x * np.cos(2 * np.pi * freq * t))))


# -- harness -------------------------------------------------------------------------------
class Recording:
    """parec on the virtual speaker's monitor, read on a thread."""

    def __init__(self, pulse: Any) -> None:
        self.proc = pulse.record(device="speaker.monitor", rate=MONITOR_RATE)
        self._data = bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):  # type: ignore[attr-defined]
            self._data.extend(chunk)

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(5)
        self._thread.join(5)
        n = len(self._data) // 2 * 2
        return np.frombuffer(bytes(self._data[:n]), "<i2").astype(np.float32) / 32768.0


class Speaker:
    """A speaker_node process and the probe's ends of its topics and services."""

    def __init__(self, ros: RosProbe, namespace: str, stamped: bool = False,
                 **params: Any) -> None:
        self.ros = ros
        self.namespace = namespace
        self.node = NodeProcess(MODULE, namespace=namespace,
                                params={"input.stamped": stamped, **params}).start()
        self.speaking = ros.subscribe(Bool, "is_speaking", LATCHED)
        self.diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
        topic = "audio_stamped" if stamped else "audio"
        self.audio = ros.publisher(AudioDataStamped if stamped else AudioData, topic)
        self.info = ros.publisher(AudioInfo, "audio_info", LATCHED)
        self.background = ros.publisher(AudioData, "background/audio")
        self.background_info = ros.publisher(AudioInfo, "background/audio_info", LATCHED)
        self.interrupt_topic = ros.publisher(Empty, "interrupt")
        try:
            self.speaking.wait_for(1, 20)  # the latched initial false: the node is up
            # Every publisher matched, else early messages could be lost (a latched one only
            # keeps its last).
            for pub in (self.audio, self.info, self.background, self.background_info,
                        self.interrupt_topic):
                ros.wait_for_subscribers(pub, timeout_s=10)
        except AssertionError:
            self.node.stop()
            raise AssertionError(f"speaker_node did not come up:\n{self.node.output}") from None
        assert self.speaking.messages[0].data is False

    def send(self, data: bytes, *, stamp_ns: int | None = None) -> None:
        if isinstance(self.audio.msg_type(), AudioDataStamped):
            msg = AudioDataStamped()
            ns = time.time_ns() if stamp_ns is None else stamp_ns
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
            msg.audio.data = data
            self.audio.publish(msg)
        else:
            self.audio.publish(AudioData(data=data))

    def send_info(self, *, rate: int, channels: int, fmt: str, coding: str = "wave",
                  background: bool = False) -> None:
        info = AudioInfo(channels=channels, sample_rate=rate, sample_format=fmt,
                         coding_format=coding)
        (self.background_info if background else self.info).publish(info)

    def speaking_changes(self) -> list[tuple[int, bool]]:
        return [(t, m.data) for t, m in self.speaking.timed]

    def wait_speaking(self, value: bool, after: int = 0, timeout_s: float = 10) -> int:
        """Time (time.time_ns) of the first is_speaking == value received after ``after``."""
        found: list[int] = []

        def seen() -> bool:
            found[:] = [t for t, v in self.speaking_changes() if v is value and t > after]
            return bool(found)

        wait_until(seen, timeout_s, f"is_speaking {value}")
        return found[0]

    def status(self) -> dict[str, str]:
        """The latest diagnostics values of this node."""
        name = f"{self.namespace.lstrip('/')}/speaker"
        for msg in reversed(self.diagnostics.messages):
            for status in msg.status:
                if status.name == name:
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def wait_status(self, predicate: Callable[[dict[str, str]], bool],
                    timeout_s: float = 10) -> dict[str, str]:
        try:
            wait_until(lambda: bool(self.status()) and predicate(self.status()), timeout_s,
                       "diagnostics condition")
        except AssertionError:
            raise AssertionError(f"timed out waiting for a diagnostics condition; last: "
                                 f"{self.status()}\nnode output:\n{self.node.output}") from None
        return self.status()

    def call(self, srv: type, name: str, **fields: Any) -> Any:
        return self.ros.call(srv, f"speaker/{name}", srv.Request(**fields))

    def stop(self) -> int | None:
        return self.node.stop()
