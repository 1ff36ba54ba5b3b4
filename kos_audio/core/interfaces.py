"""The two backend interfaces: :class:`AudioSource` (audio in) and :class:`AudioSink` (audio out).

A backend implements one of these Protocols; nodes pick one by name from
:mod:`kos_audio.backends`. The interfaces are small on purpose: open, move blocks, close.
Reconnection policy lives outside the backend (:class:`kos_audio.core.capture.CaptureLoop` for
sources), so every backend gets the same back-off and accounting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from kos_audio.core.formats import AudioFormat

#: ``(kind, message)``: a backend reports a notable event (``"overflow"``, ``"reconnect"``...).
#: Called from the backend's own thread; implementations must be quick and thread-safe.
EventCallback = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class CapturedBlock:
    """Consecutive frames from a source, in the source's :attr:`AudioSource.format`.

    Attributes:
        data: interleaved PCM, a whole number of frames.
        capture_time_ns: system-clock time (``time.time_ns()`` domain) at which the first frame
            was captured, when the source knows it (device ADC time, pacing schedule); None
            when it does not.
        discontinuity: frames were lost between the previous block and this one (overflow,
            restart, reconnect); the stamps must start a new timeline here.

    """

    data: bytes
    capture_time_ns: int | None = None
    discontinuity: bool = False


class AudioSource(Protocol):
    """Where audio comes from: a device, a server stream, a generator.

    Life cycle: :meth:`open` -> :meth:`read` ... -> :meth:`close`, all from one capture thread,
    except :meth:`close`, which may be called from another thread to unblock a pending
    :meth:`read`. A source may be opened again after :meth:`close` (reconnect).
    """

    @property
    def format(self) -> AudioFormat:
        """Format of the blocks :meth:`read` returns; valid after :meth:`open`."""
        ...

    def open(self) -> None:
        """Acquire the device/connection and start capturing.

        Raises:
            BackendError: it cannot be opened now (retry later).

        """
        ...

    def read(self, timeout_s: float) -> CapturedBlock | None:
        """The next block, or None if none arrived within ``timeout_s`` seconds.

        Raises:
            BackendError: the source broke (device vanished, stream ended with an error).
            SourceFinished: a finite source has nothing more.

        """
        ...

    def close(self) -> None:
        """Release everything; idempotent; safe from any thread."""
        ...

    def describe(self) -> str:
        """One line naming the source for logs and diagnostics (device name, address...)."""
        ...


@dataclass(frozen=True, slots=True)
class PlaybackBlock:
    """What a sink pulls from the playback engine for one period.

    Attributes:
        samples: float32 ``(frames, channels)`` in the sink's negotiated rate and channels;
            silence where nothing is queued.
        audible_frames: how many leading frames carry queued audio (0: idle, all silence).

    """

    samples: npt.NDArray[np.float32]
    audible_frames: int


#: ``pull(frames)`` -> exactly ``frames`` frames. Called from the sink's real-time thread.
PullCallback = Callable[[int], PlaybackBlock]


class AudioSink(Protocol):
    """Where audio goes: a device, a file, a server. The sink's clock sets the pace.

    The sink calls ``pull`` from its own real-time thread (a PortAudio callback, or a pacer
    thread for sinks without a clock). ``pull`` never blocks.
    """

    @property
    def format(self) -> AudioFormat:
        """The negotiated format (rate, channels, wire sample format); valid after open."""
        ...

    @property
    def output_latency_s(self) -> float:
        """Seconds from a pull until its first sample is audible."""
        ...

    def open(self, preferred: AudioFormat) -> AudioFormat:
        """Acquire the sink, choosing the supported format closest to ``preferred``.

        Raises:
            BackendError: it cannot be opened now (retry later).

        """
        ...

    def start(self, pull: PullCallback) -> None:
        """Begin consuming audio by calling ``pull`` at the sink's pace."""
        ...

    def interrupt(self) -> None:
        """Discard audio the sink holds downstream of the engine (e.g. cancel a stream)."""
        ...

    def close(self) -> None:
        """Stop consuming and release everything; idempotent; safe from any thread."""
        ...

    def describe(self) -> str:
        """One line naming the sink for logs and diagnostics."""
        ...
