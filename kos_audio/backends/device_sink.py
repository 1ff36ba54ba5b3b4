"""A local sound device as a sink, through PortAudio (python-sounddevice).

sounddevice is imported only through :mod:`kos_audio.backends.portaudio`, so the rest of the
package works without PortAudio.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kos_audio.backends.portaudio import DeviceInfo, DeviceLookup, open_stream, sounddevice
from kos_audio.core.convert import encode_into
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import AudioSink, PullCallback
from kos_audio.errors import BackendError

#: No callback for this long (s, on top of the output latency) while running means the device
#: is gone (PortAudio over PulseAudio stops calling back when the server dies).
STALL_TIMEOUT_S = 1.0
#: Without a requested channel count, a device offering more (ALSA's "default" offers 32) is
#: opened in stereo.
NATIVE_MAX_CHANNELS = 2


class DeviceSink(AudioSink):
    """Plays on a PortAudio output device with a callback stream; the device's clock paces.

    The PortAudio callback runs on PortAudio's real-time thread and only pulls a block from
    the engine, encodes it (float32 to the stream's sample format, saturating) and copies it
    into the device buffer; it never logs, allocates beyond the block, or waits. Failures seen
    there (a stalled or stopped stream, an exception) surface through :meth:`check`.

    Args:
        device: "" = the default output, digits = PortAudio index, else a (unique) name part.
        sample_rate_hz: 0 = the device's default rate.
        channels: 0 = the device's channels, at most :data:`NATIVE_MAX_CHANNELS`.
        sample_format: None = F32LE (PortAudio converts for the hardware).
        block_ms: the callback's period (ms).
        latency: PortAudio's latency hint: ``"high"`` (robust under CPU load), ``"low"``, or
            seconds.

    """

    def __init__(
        self,
        *,
        device: str = "",
        sample_rate_hz: int = 0,
        channels: int = 0,
        sample_format: SampleFormat | None = None,
        block_ms: float = 20.0,
        latency: str | float = "high",
    ) -> None:
        self._spec = device
        self._rate = sample_rate_hz
        self._channels = channels
        self._sample_format = sample_format or SampleFormat.F32LE
        self._block_ms = block_ms
        self._latency_hint = latency
        self._format: AudioFormat | None = None
        self._stream: Any = None
        self._lock = threading.Lock()
        self._pull: PullCallback | None = None
        self._lookup = DeviceLookup(device, output=True)
        self._last_callback = 0.0
        self._audible = False
        self._error: BaseException | None = None
        self._latency_s = 0.0
        self._block_frames = 0
        self._underruns = 0
        self.device: DeviceInfo | None = None

    @property
    def format(self) -> AudioFormat:
        """The open stream's format."""
        if self._format is None:
            raise BackendError(f"{self.describe()} is not open")
        return self._format

    @property
    def output_latency_s(self) -> float:
        """PortAudio's output latency (s).

        Measured per callback (DAC time - now) when the host API reports it, else the
        stream's nominal latency.
        """
        return self._latency_s

    @property
    def block_frames(self) -> int:
        """Frames per callback of the open stream (0 before :meth:`open`)."""
        return self._block_frames

    @property
    def underruns(self) -> int:
        """Output underflows PortAudio reported while audio was playing."""
        return self._underruns

    def open(self) -> AudioFormat:
        """Open (not start) the stream.

        Raises:
            BackendError: no such device, or PortAudio refuses every format tried.

        """
        self.device = self._lookup.find()
        default_rate = round(self.device.default_sample_rate_hz)
        channels = self._channels or min(NATIVE_MAX_CHANNELS, self.device.max_output_channels)
        first = AudioFormat(self._rate or default_rate, channels, self._sample_format)
        stream, fmt = open_stream(
            self.device, output=True, rates=[first.sample_rate_hz, default_rate],
            channels=channels, sample_format=self._sample_format,
            block_frames=first.frames_for_ms(self._block_ms),
            latency=self._latency_hint, callback=self._callback,
        )
        self._format = fmt
        self._block_frames = int(stream.blocksize)
        self._latency_s = float(stream.latency)
        self._error = None
        self._audible = False
        with self._lock:
            self._stream = stream
        return fmt

    def start(self, pull: PullCallback) -> None:
        """Start the stream; PortAudio calls back for every block from now on.

        Raises:
            BackendError: PortAudio cannot start it.

        """
        with self._lock:
            stream = self._stream
        if stream is None:
            raise BackendError(f"{self.describe()} is not open")
        self._pull = pull
        self._last_callback = time.monotonic()
        try:
            stream.start()
        except sounddevice.PortAudioError as err:
            raise BackendError(f"cannot start {self.describe()}: {err}") from err

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's real-time thread: pull, encode, copy. Nothing that can block.
        self._last_callback = time.monotonic()
        if status.output_underflow and self._audible:
            self._underruns += 1
        pull, fmt = self._pull, self._format
        try:
            assert pull is not None and fmt is not None
            block = pull(frames)
            encode_into(block.samples, fmt.sample_format, outdata)
            self._audible = block.audible_frames > 0
        except Exception as err:  # must not escape: PortAudio would abort the stream silently
            outdata[:] = bytes(len(outdata))
            self._error = err
        dac_s = time_info.outputBufferDacTime - time_info.currentTime
        if 0.0 < dac_s < 1.0:
            self._latency_s = dac_s

    def check(self) -> None:
        """Raise :class:`BackendError` if the stream failed, stopped or stalled."""
        name = self.describe()
        if self._error is not None:
            raise BackendError(f"{name}: playback callback failed: {self._error!r}")
        with self._lock:
            stream = self._stream
        if stream is None:
            raise BackendError(f"{name} is not open")
        if not stream.active:
            raise BackendError(f"{name} stopped")
        if time.monotonic() - self._last_callback > STALL_TIMEOUT_S + self._latency_s:
            raise BackendError(f"{name} asked for no audio for {STALL_TIMEOUT_S:g} s")

    def interrupt(self) -> None:
        """Nothing: PortAudio's buffer cannot be flushed without restarting the stream.

        What it holds (at most :attr:`output_latency_s`) is already the engine's fade-out.
        """

    def close(self) -> None:
        """Abort and close the stream (discarding its buffer); idempotent, any thread."""
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except sounddevice.PortAudioError:
                pass  # the device is already gone; nothing left to release

    def describe(self) -> str:
        """E.g. ``output device 7:'default'``."""
        if self.device is None:
            return f"output device {self._spec or 'default'!r}"
        return f"output device {self.device.index}:{self.device.name!r}"
