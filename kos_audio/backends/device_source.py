"""A local microphone through PortAudio (python-sounddevice), as a source."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from kos_audio.backends.portaudio import DeviceInfo, DeviceLookup, open_stream, sounddevice
from kos_audio.core.capture import drain
from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import AudioSource, CapturedBlock
from kos_audio.errors import BackendError

#: Blocks waiting for the capture thread before the callback starts dropping (about 2 s at
#: 20 ms); dropping is reported as an overflow and re-anchors the stamps.
MAX_QUEUED_BLOCKS = 100
#: No callback for this long (s) while open means the device is gone.
STALL_TIMEOUT_S = 2.0

class DeviceSource(AudioSource):
    """Captures from a PortAudio input device with a callback stream.

    The PortAudio callback runs on PortAudio's real-time thread and only copies the block,
    computes its capture time (PortAudio's ADC time of the first frame, mapped onto the system
    clock) and puts it on a queue; :meth:`read` takes from the queue on the capture thread. If
    the queue is full or PortAudio reports an input overflow, the next block is flagged as a
    discontinuity and :attr:`overflows` counts it.

    The stream is opened in the requested format when the device accepts it; otherwise at the
    device's default rate and/or its channel count, and :attr:`format` says what is delivered
    (the caller converts).
    """

    def __init__(
        self, requested: AudioFormat, *, device: str, block_frames: int, latency: str | float
    ) -> None:
        self._requested = requested
        self._spec = device
        self._block_frames = block_frames
        self._latency = latency
        self._format = requested
        self._queue: queue.SimpleQueue[CapturedBlock] = queue.SimpleQueue()
        self._stream: Any = None
        self._lock = threading.Lock()
        self._lost = False
        self._last_block_mono = 0.0
        self._lookup = DeviceLookup(device, output=False)
        self.device: DeviceInfo | None = None
        self.overflows = 0
        self.input_latency_s = 0.0

    @property
    def format(self) -> AudioFormat:
        """What the open stream delivers."""
        return self._format

    def open(self) -> None:
        """Open and start the stream.

        Raises:
            BackendError: no such device, or PortAudio refuses every format tried.

        """
        self.device = self._lookup.find()
        stream, self._format = open_stream(
            self.device, output=False,
            rates=[self._requested.sample_rate_hz, round(self.device.default_sample_rate_hz)],
            channels=min(self._requested.channels, self.device.max_input_channels),
            sample_format=self._requested.sample_format,
            block_frames=self._block_frames,
            latency=self._latency, callback=self._callback,
        )
        drain(self._queue)
        self._last_block_mono = time.monotonic()
        self.input_latency_s = float(stream.latency)
        stream.start()
        with self._lock:
            self._stream = stream

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio real-time thread: copy, stamp, enqueue. Nothing that can block.
        now_ns = time.time_ns()
        block_ns = frames * 1_000_000_000 // self._format.sample_rate_hz
        age_s = time_info.currentTime - time_info.inputBufferAdcTime
        # The first frame is at least a block old: the callback cannot run before the block's
        # last frame was captured. PortAudio's ALSA host API through the PulseAudio plugin was
        # measured reporting less (2-14 ms for 20 ms blocks at 48 kHz), so bound it. Without
        # timing from the host API (0), the block ended about now.
        if time_info.inputBufferAdcTime > 0 and 0.0 <= age_s < 1.0:
            capture_ns = now_ns - max(int(age_s * 1e9), block_ns)
        else:
            capture_ns = now_ns - block_ns
        self._last_block_mono = time.monotonic()
        if status.input_overflow:
            self.overflows += 1
            self._lost = True
        if self._queue.qsize() >= MAX_QUEUED_BLOCKS:
            self.overflows += 1
            self._lost = True
            return
        self._queue.put(CapturedBlock(bytes(indata), capture_ns, self._lost))
        self._lost = False

    def read(self, timeout_s: float) -> CapturedBlock | None:
        """The next captured block, or None within ``timeout_s``.

        Raises:
            BackendError: the stream stopped or no audio came for :data:`STALL_TIMEOUT_S`.

        """
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            pass
        with self._lock:
            stream = self._stream
        if stream is None:
            return None  # closed from another thread
        name = self.device.name if self.device else self._spec
        if not stream.active:
            raise BackendError(f"input device {name!r} stopped")
        if time.monotonic() - self._last_block_mono > STALL_TIMEOUT_S + self.input_latency_s:
            raise BackendError(f"input device {name!r} delivered nothing for {STALL_TIMEOUT_S} s")
        return None

    def close(self) -> None:
        """Abort and close the stream (discarding what it holds); idempotent, any thread."""
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except sounddevice.PortAudioError:
                pass  # the device is already gone; nothing left to release

    def diagnostics(self) -> dict[str, object]:
        """``input_latency_ms`` (PortAudio's input latency), as mic_node publishes it."""
        return {"input_latency_ms": self.input_latency_s * 1e3}

    def describe(self) -> str:
        """E.g. ``device 3:'mic'``."""
        if self.device is None:
            return f"device {self._spec or 'default'!r}"
        return f"device {self.device.index}:{self.device.name!r}"
