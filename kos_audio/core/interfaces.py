"""The two backend interfaces: :class:`AudioSource` (audio in) and :class:`AudioSink` (audio out).

A backend implements one of these Protocols; nodes pick one by name from
:mod:`kos_audio.backends`. The interfaces are small on purpose: open, move blocks, close,
plus counters, events and ``diagnostics()`` with default implementations, which a backend
inherits by subclassing the Protocol explicitly (every backend in :mod:`kos_audio.backends`
does), so callers never probe a backend with ``getattr``. Reconnection policy lives outside
the backend (:class:`kos_audio.core.capture.CaptureLoop` for sources,
:class:`kos_audio.core.sink_loop.PlaybackLoop` for sinks), so every backend gets the same
back-off and accounting.
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

    Attributes:
        overflows: blocks lost because the consumer was too slow or the device overflowed; a
            running count, never reset by a reopen. Default 0 (a source that cannot overflow).
        on_event: receives ``(kind, message)`` for the source's own reports; None (default)
            drops them. See :data:`EventCallback` for the thread rules.

    """

    overflows: int = 0
    on_event: EventCallback | None = None

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

    def diagnostics(self) -> dict[str, object]:
        """The source's own counters for ``/diagnostics`` (any thread; never blocks).

        Keys are the published names (e.g. ``server_errors``, ``input_latency_ms``); values are
        numbers or strings. Default: none.
        """
        return {}


@dataclass(frozen=True, slots=True)
class PlaybackBlock:
    """What a sink pulls from the playback engine for one period.

    Attributes:
        samples: float32 ``(frames, channels)`` in the sink's negotiated rate and channels,
            within [-1, 1]; silence where nothing is queued. A new array each pull: the sink
            may keep it.
        audible_frames: how many leading frames carry queued audio (speech or background);
            the frames after them are silence. 0: idle, the whole block is silence. A sink
            that sends utterances (KOS ``PlayAudio``) starts one at the first block with
            ``audible_frames > 0`` and ends it after a block with
            ``audible_frames < len(samples)``.
        fade_frames: how many leading frames are the fade-out of an interrupted utterance
            (a few ms after :meth:`~kos_audio.core.playback.PlaybackEngine.interrupt`). A
            device plays them (no click); a sink that already cancelled the utterance
            downstream (KOS, Resonite) drops them, so they cannot start a new one.

    """

    samples: npt.NDArray[np.float32]
    audible_frames: int
    fade_frames: int = 0


#: ``pull(frames)`` -> exactly ``frames`` frames. Called from the sink's real-time thread;
#: never blocks (it takes one short lock), never raises.
PullCallback = Callable[[int], PlaybackBlock]


class AudioSink(Protocol):
    """Where audio goes: a device, a file, a server. The sink's clock sets the pace.

    Life cycle, driven by :class:`kos_audio.core.sink_loop.PlaybackLoop` on its own thread:
    :meth:`open` -> :meth:`start` -> (:meth:`check` every few ms) -> :meth:`close`; after a
    failure (:meth:`open` or :meth:`check` raised ``BackendError``) the loop closes the sink,
    waits a capped exponential back-off and opens it again, so a sink may be opened again
    after :meth:`close`.

    The sink calls ``pull`` from its own real-time thread: a PortAudio callback, or a
    :class:`kos_audio.core.pacing.PacedPuller` thread for sinks without a clock (file,
    network servers), which pulls blocks in real time. That thread only pulls and hands the
    samples on (copy into the device buffer, put on a send queue); it never logs or waits on
    the network. Its format is fixed at construction from the node's request
    (``SinkConfig``); fields left 0/None mean the sink's native choice.

    Attributes:
        on_event: receives ``(kind, message)`` for the sink's own reports (e.g. a stream
            summary); None (default) drops them. See :data:`EventCallback` for the thread
            rules.

    """

    on_event: EventCallback | None = None

    @property
    def format(self) -> AudioFormat:
        """The negotiated format (rate, channels, wire sample format); valid after open."""
        ...

    @property
    def output_latency_s(self) -> float:
        """Seconds from a pull until its first sample is audible.

        Device buffer, network and server buffering; read every few ms by the loop, so it may
        change while running.
        """
        ...

    @property
    def underruns(self) -> int:
        """How many times the sink ran out of samples while audio was playing.

        Device underflow, or the pacing thread too late; a running count, never reset by a
        reopen. Default 0.
        """
        return 0

    @property
    def block_frames(self) -> int:
        """Frames the sink pulls at a time, in :attr:`format`'s rate; valid after :meth:`open`.

        The sink's real period (it may differ from the request: a clamped or device-chosen
        size); the playback loop hands it to the engine.
        """
        ...

    def open(self) -> AudioFormat:
        """Acquire the sink in the requested format, or the closest one it supports.

        Returns:
            The negotiated format; the engine converts everything to it.

        Raises:
            BackendError: it cannot be opened now (retry later).

        """
        ...

    def start(self, pull: PullCallback) -> None:
        """Begin consuming audio by calling ``pull`` at the sink's pace (returns at once)."""
        ...

    def check(self) -> None:
        """Report a sink that broke since :meth:`start`.

        Called every few ms by the loop's thread; must not block.

        Raises:
            BackendError: the device vanished or stalled, the stream or connection failed.

        """
        ...

    def interrupt(self) -> None:
        """Discard audio the sink holds downstream of the engine.

        E.g. cancel the current ``PlayAudio`` stream. Called from any thread right after the
        engine dropped its queue; must not block. A device whose buffer cannot be flushed may
        do nothing: at most :attr:`output_latency_s` of audio then plays out.
        """
        ...

    def close(self) -> None:
        """Stop consuming and release everything; idempotent; safe from any thread."""
        ...

    def describe(self) -> str:
        """One line naming the sink for logs and diagnostics."""
        ...

    def diagnostics(self) -> dict[str, object]:
        """The sink's own counters for ``/diagnostics`` (any thread; never blocks).

        Keys are the published names (e.g. ``server_errors``, ``early_answers``); values are
        numbers or strings. Default: none.
        """
        return {}
