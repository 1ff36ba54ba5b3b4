"""Streaming sample-rate conversion with soxr that keeps its filter state across chunks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import soxr

if TYPE_CHECKING:  # convert imports this module
    from kos_audio.core.convert import Frames



class StreamResampler:
    """Resamples a stream chunk by chunk with no clicks or lost samples at chunk boundaries.

    soxr keeps the filter history between calls, so feeding a signal in pieces gives the same
    output (to float rounding) as feeding it whole. The output lags the input by the filter's
    delay (a few ms at ``HQ``); :meth:`flush` returns the tail at the end of a stream. The
    output is aligned so that output sample ``k`` is the input at time ``k / out_rate_hz``,
    which is what sample-count stamping needs.

    Not thread-safe: one stream, one thread.
    """

    def __init__(
        self, in_rate_hz: int, out_rate_hz: int, channels: int, *, quality: str = "HQ"
    ) -> None:
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self.channels = channels
        self._quality = quality
        self._stream: soxr.ResampleStream | None = None
        self.reset()

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and samples pass unchanged."""
        return self.in_rate_hz == self.out_rate_hz

    def process(self, frames: Frames) -> Frames:
        """Resample the next ``(frames, channels)`` float32 chunk.

        May return fewer frames than the ratio implies while the filter fills.
        """
        if self._stream is None:
            return frames
        out: Frames = self._stream.resample_chunk(np.ascontiguousarray(frames, np.float32))
        return out

    def flush(self) -> Frames:
        """Return what the filter still holds (end of stream) and start a fresh stream."""
        if self._stream is None:
            return np.zeros((0, self.channels), np.float32)
        tail: Frames = self._stream.resample_chunk(np.zeros((0, self.channels), np.float32),
                                                   last=True)
        self.reset()
        return tail

    def reset(self) -> None:
        """Drop the filter state (after a discontinuity the old history is meaningless)."""
        self._stream = (
            None
            if self.passthrough
            else soxr.ResampleStream(
                self.in_rate_hz, self.out_rate_hz, self.channels, dtype="float32",
                quality=self._quality,
            )
        )


#: Half-width of :class:`PolyphaseResampler`'s windowed-sinc kernel, in samples of the lower
#: of the two rates: the output lags the input by this much (1.5 ms at 16 kHz).
HALF_WIDTH = 24
#: Kaiser window beta of the kernel: about 80 dB stop-band attenuation.
KAISER_BETA = 8.0
#: :class:`PolyphaseResampler` keeps one kernel phase per output position in a period of
#: ``out / gcd(in, out)`` outputs; rate pairs needing more are not supported (every common pair
#: needs at most 640: 11025 -> 48000 Hz).
MAX_PHASES = 1024


class PolyphaseResampler:
    """Streaming windowed-sinc resampler whose output keeps pace with its input.

    For playback, where the queue's length is the truth about what can be played: every chunk
    yields all the output its input makes computable, so a chunk of ``n`` input frames returns
    ``n * out / in`` frames (+-1), a constant :data:`HALF_WIDTH` samples after the input.
    (soxr's ``HQ`` stream, :class:`StreamResampler`, computes in DFT blocks and returns
    nothing for two or three 20 ms chunks, then 40-60 ms at once: played as it comes, a
    stream fed in real time starves between those bursts.) Output sample ``k`` is the input at
    time ``k / out_rate_hz``, as with :class:`StreamResampler`; :meth:`flush` returns the rest.

    The kernel is a Kaiser-windowed sinc cut off at the lower rate's Nyquist frequency,
    ``2 * HALF_WIDTH`` taps at the lower rate, one phase per output position (``out / gcd``).
    Not thread-safe: one stream, one thread.

    Raises:
        ValueError: the rate pair needs more than :data:`MAX_PHASES` phases
            (see :meth:`supports`).

    """

    @staticmethod
    def supports(in_rate_hz: int, out_rate_hz: int) -> bool:
        """True if the rate pair needs at most :data:`MAX_PHASES` kernel phases."""
        return out_rate_hz // math.gcd(in_rate_hz, out_rate_hz) <= MAX_PHASES

    def __init__(self, in_rate_hz: int, out_rate_hz: int, channels: int) -> None:
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self.channels = channels
        if not self.supports(in_rate_hz, out_rate_hz):
            raise ValueError(f"{in_rate_hz} -> {out_rate_hz} Hz needs more than {MAX_PHASES} "
                             "kernel phases")
        g = math.gcd(in_rate_hz, out_rate_hz)
        self._up, self._down = out_rate_hz // g, in_rate_hz // g
        # Kernel half-width in input samples: wider when downsampling (lower cut-off).
        self._half = math.ceil(HALF_WIDTH * max(1.0, in_rate_hz / out_rate_hz))
        self._taps = 2 * self._half
        self._kernel = self._design()
        self._matrix: npt.NDArray[np.float32] | None = None  # made on first use
        self._buf: Frames = np.zeros((0, channels), np.float32)  # input history and new
        self._base = 0  # input index of _buf[0]
        self._n = 0  # next output index
        self.reset()

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and samples pass unchanged."""
        return self.in_rate_hz == self.out_rate_hz

    def _design(self) -> npt.NDArray[np.float32]:
        # Phase p (output n with n * down % up == p) weights input i - half + 1 + k with the
        # kernel at distance p / up + half - 1 - k input samples.
        cutoff = 0.5 * min(1.0, self.out_rate_hz / self.in_rate_hz)  # cycles per input sample
        phase = np.arange(self._up)[:, None] / self._up
        dist = phase + self._half - 1 - np.arange(self._taps)[None, :]
        window = np.kaiser(2 * 4096 + 1, KAISER_BETA)
        pos = np.clip((dist / self._half + 1) * 4096, 0, 2 * 4096)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * dist) * np.interp(
            pos, np.arange(2 * 4096 + 1), window)
        return np.asarray(kernel, dtype=np.float32)

    def process(self, frames: Frames) -> Frames:
        """Resample the next ``(frames, channels)`` float32 chunk: every output it allows."""
        if self.passthrough:
            return frames
        self._buf = np.concatenate((self._buf, np.asarray(frames, np.float32)))
        return self._compute(len(self._buf) + self._base)

    def flush(self) -> Frames:
        """The output still owed for the input so far (end of stream); starts afresh."""
        if self.passthrough:
            return np.zeros((0, self.channels), np.float32)
        # Outputs are owed up to the input's end; n and the input indices share one origin.
        end = self._base + len(self._buf)
        owed = -(-end * self._up // self._down) - self._n
        self._buf = np.concatenate((self._buf, np.zeros((self._half + 1, self.channels),
                                                        np.float32)))
        tail = self._compute(len(self._buf) + self._base)[: max(0, owed)]
        self.reset()
        return tail

    def reset(self) -> None:
        """Start a fresh stream (the history is zeros)."""
        self._buf = np.zeros((self._taps, self.channels), np.float32)
        self._base = -self._taps  # input index of _buf[0]
        self._n = 0  # next output index

    def _compute(self, have: int) -> Frames:
        """Every output not computed yet whose inputs are among the first ``have``."""
        # Output n needs inputs up to floor(n * down / up) + half.
        last = (have - self._half) * self._up // self._down + 1  # first n not computable
        while last > self._n and (last - 1) * self._down // self._up + self._half >= have:
            last -= 1
        if last <= self._n:
            return np.zeros((0, self.channels), np.float32)
        # Whole periods (up outputs from down inputs) as one matrix product; a partial
        # period at either end with the matrix's rows for it.
        up = self._up
        head_end = min(last, -(-self._n // up) * up)
        periods = (last - head_end) // up
        tail_start = head_end + periods * up
        parts = []
        if head_end > self._n:
            parts.append(self._rows(self._n, head_end))
        if periods:
            parts.append(self._periods(head_end, periods))
        if last > tail_start:
            parts.append(self._rows(tail_start, last))
        self._n = last
        # Keep only the history the next output needs; renumber to keep indices small.
        keep_from = (self._n * self._down) // self._up - self._half + 1 - self._base
        if keep_from > 0:
            self._buf = self._buf[keep_from:]
            self._base += keep_from
        whole = self._n // self._up
        self._n -= whole * self._up
        self._base -= whole * self._down
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _rows(self, first: int, stop: int) -> Frames:
        """Outputs ``first`` .. ``stop - 1``, all within one period."""
        matrix = self._period_matrix()
        q, r0 = divmod(first, self._up)
        r1 = stop - q * self._up
        c0 = r0 * self._down // self._up
        c1 = (r1 - 1) * self._down // self._up + self._taps
        start = q * self._down - self._half + 1 - self._base
        segment = self._buf[start + c0 : start + c1]  # (c1 - c0, channels)
        out: Frames = matrix[r0:r1, c0:c1] @ segment
        return out

    def _periods(self, first: int, periods: int) -> Frames:
        """``periods`` whole periods of outputs from ``first`` (a multiple of ``up``)."""
        matrix = self._period_matrix()
        start = first // self._up * self._down - self._half + 1 - self._base
        span = matrix.shape[1]
        buf = self._buf[start:]
        rows, cols = buf.strides
        segments = np.lib.stride_tricks.as_strided(  # (periods, channels, span), read only
            buf, shape=(periods, self.channels, span), strides=(self._down * rows, cols, rows),
            writeable=False)
        out = segments @ matrix.T  # (periods, channels, up)
        return np.ascontiguousarray(out.transpose(0, 2, 1).reshape(-1, self.channels))

    def _period_matrix(self) -> npt.NDArray[np.float32]:
        """Row r: the weights of output ``q * up + r`` over inputs from ``q * down - half + 1``."""
        if self._matrix is None:
            r = np.arange(self._up)
            offset = r * self._down // self._up
            matrix = np.zeros((self._up, offset[-1] + self._taps), np.float32)
            cols = offset[:, None] + np.arange(self._taps)
            matrix[r[:, None], cols] = self._kernel[(r * self._down) % self._up]
            self._matrix = matrix
        return self._matrix
