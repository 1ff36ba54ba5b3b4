"""A sine tone source paced to real time: the embedded default that needs no hardware."""

from __future__ import annotations

import math

import numpy as np

from kos_audio.core.convert import from_float
from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import AudioSource, CapturedBlock
from kos_audio.core.pacing import RealTimePacer

#: Falling further behind real time than this (s) skips ahead instead of bursting to catch up.
MAX_CATCH_UP_S = 1.0


class ToneSource(AudioSource):
    """A sine of ``frequency_hz`` at ``amplitude`` (full scale 1.0), in ``fmt``, on every channel.

    Blocks of ``block_frames`` are released when real time reaches their last frame, like a
    microphone would, and carry their capture time. Frequency and amplitude may be changed
    from any thread while running; the phase stays continuous.
    """

    def __init__(
        self, fmt: AudioFormat, *, frequency_hz: float, amplitude: float, block_frames: int
    ) -> None:
        self._format = fmt
        self.frequency_hz = frequency_hz
        self.amplitude = amplitude
        self._block = block_frames
        self._pacer = RealTimePacer(fmt.sample_rate_hz)
        self._frame = 0
        self._phase = 0.0  # cycles, in [0, 1)

    @property
    def format(self) -> AudioFormat:
        """The format blocks are generated in."""
        return self._format

    def open(self) -> None:
        """Start the tone's timeline now."""
        self._pacer.restart()
        self._frame = 0

    def read(self, timeout_s: float) -> CapturedBlock | None:
        """The next block once it is due; None after ``timeout_s`` or :meth:`close`."""
        discontinuity = False
        if self._pacer.lag_ns(self._frame) > MAX_CATCH_UP_S * 1e9:
            # Stalled (process suspended): a real microphone would have overflowed; say so.
            self._pacer.restart()
            self._frame = 0
            discontinuity = True
        if not self._pacer.wait_until(self._frame + self._block, timeout_s):
            return None
        rate = self._format.sample_rate_hz
        freq, amp = self.frequency_hz, self.amplitude
        cycles = self._phase + freq * np.arange(self._block, dtype=np.float64) / rate
        wave = (amp * np.sin(2.0 * math.pi * cycles)).astype(np.float32)
        self._phase = math.fmod(self._phase + freq * self._block / rate, 1.0)
        frames = np.repeat(wave[:, None], self._format.channels, axis=1)
        block = CapturedBlock(
            from_float(frames, self._format.sample_format),
            capture_time_ns=self._pacer.wall_time_ns(self._frame),
            discontinuity=discontinuity,
        )
        self._frame += self._block
        return block

    def close(self) -> None:
        """Wake a pending :meth:`read`."""
        self._pacer.cancel()

    def describe(self) -> str:
        """E.g. ``tone 440.0 Hz amplitude 0.5``."""
        return f"tone {self.frequency_hz:g} Hz amplitude {self.amplitude:g}"
