"""Running a sink: :class:`PlaybackLoop`, a supervisor that (re)opens it with back-off.

The real-time clock of sinks that have none of their own is
:class:`kos_audio.core.pacing.PacedPuller`.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from kos_audio.core.backoff import Backoff
from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import AudioSink, EventCallback, PlaybackBlock, PullCallback
from kos_audio.core.playback import PlaybackEngine
from kos_audio.errors import KosAudioError

#: While the sink runs, the supervisor looks at least this often (s): sink health, output
#: latency, idle resampler tails. It also wakes when the engine's speech runs out and when the
#: last pulled speech has been heard (is_speaking's falling edge), not on a fixed fine tick:
#: a Python thread waking at 100 Hz costs about 1 % of a core by itself.
HOUSEKEEPING_S = 0.1
#: ``on_played(samples, format, leaves_speaker_ns)``: see :class:`PlaybackLoop`.
PlayedCallback = Callable[[npt.NDArray[np.float32], AudioFormat, int], None]
#: While waiting to reopen the sink, the loop ticks this often (s).
TICK_S = 0.01


class SinkState(enum.Enum):
    """What a :class:`PlaybackLoop`'s sink is doing."""

    STOPPED = "stopped"
    OPENING = "opening"
    RUNNING = "running"
    BACKOFF = "waiting to reopen"


class PlaybackLoop:
    """Keeps a sink open and pulling from a :class:`PlaybackEngine`, on its own thread.

    The thread opens the sink, tells the engine the sink's format and real block period
    (:attr:`AudioSink.block_frames`, which may differ from what was asked), starts the sink with
    :meth:`PlaybackEngine.pull`, then checks the sink's health, copies its output latency into
    the engine, releases idle resampler tails and calls ``on_tick`` every
    :data:`HOUSEKEEPING_S`, when the engine's speech runs out and when it has been heard. When
    the sink fails (``BackendError`` from :meth:`AudioSink.open` or :meth:`AudioSink.check`)
    it is closed and reopened after a capped exponential back-off; the engine keeps its queue
    meanwhile (bounded by ``max_queue_s``).

    Args:
        sink: the sink to run (opened and closed by the loop).
        engine: where the sink pulls from.
        on_event: ``(kind, message)`` on the loop's thread; kinds ``"opened"``, ``"error"``,
            ``"reformat"``.
        on_tick: called every tick on the loop's thread (e.g. to publish is_speaking changes).
        on_played: ``(samples, format, leaves_speaker_ns)`` for every block the sink pulls, on
            the sink's real-time thread (must only copy and queue): what is played, and the
            system time its first frame leaves the speaker (pull time + output latency).

    """

    def __init__(
        self,
        sink: AudioSink,
        engine: PlaybackEngine,
        *,
        on_event: EventCallback,
        on_tick: Callable[[], None] = lambda: None,
        on_played: PlayedCallback | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.sink = sink
        self.engine = engine
        self._on_event = on_event
        self._on_tick = on_tick
        self._on_played = on_played
        self._backoff = backoff or Backoff()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by the engine (speech ran out) and by stop()
        engine.wake = self._wake
        self._thread: threading.Thread | None = None
        self.state = SinkState.STOPPED
        self.failures = 0
        self.last_error = ""

    def start(self) -> None:
        """Start the loop's thread (no-op when running)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, name="kos_audio-playback",
                                        daemon=True)
        self._thread.start()

    def interrupt(self, now_ns: int) -> float:
        """Drop queued speech (engine) and what the sink holds; seconds dropped. Any thread."""
        dropped = self.engine.interrupt(now_ns)
        if self.state is SinkState.RUNNING:
            self.sink.interrupt()
        return dropped

    def stop(self, *, fade_s: float = 0.1, timeout_s: float = 2.0) -> None:
        """Stop cleanly: fade out, close the sink, end the thread.

        What sounds is faded out and given up to ``fade_s`` to leave the device. Never hangs
        longer than about ``timeout_s``.
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self.state is SinkState.RUNNING and self.engine.speaking():
            self.engine.interrupt(time.time_ns())
            self._stop.wait(min(fade_s, self.engine.output_latency_s + 0.05))
        self._stop.set()
        self._wake.set()
        thread.join(timeout_s)
        self.sink.close()
        self.state = SinkState.STOPPED

    def _run(self) -> None:
        while not self._stop.is_set():
            self.state = SinkState.OPENING
            running_since: float | None = None
            try:
                fmt = self.sink.open()
                dropped_s = self.engine.configure(fmt)
                if dropped_s:
                    self._on_event("reformat", f"{self.sink.describe()} reopened as "
                                   f"{fmt.describe()}; dropped {dropped_s:.2f} s queued")
                self.engine.block_s = self.sink.block_frames / fmt.sample_rate_hz
                self.engine.output_latency_s = self.sink.output_latency_s
                self.sink.start(self._pull_for(fmt))
                self.state = SinkState.RUNNING
                running_since = time.monotonic()
                self._on_event("opened", f"{self.sink.describe()} playing {fmt.describe()}, "
                               f"output latency {self.sink.output_latency_s * 1000:.1f} ms")
                self._supervise()
                self._backoff.reset()
            except KosAudioError as err:
                self.failures += 1
                self.last_error = str(err)
                healthy_s = 0.0 if running_since is None else time.monotonic() - running_since
                delay = self._backoff.after_failure(healthy_s)
                self._on_event("error", f"{err}; reopening in {delay:.1f} s")
                self.sink.close()
                self.state = SinkState.BACKOFF
                self._tick_until(time.monotonic() + delay)
        self.sink.close()

    def _pull_for(self, fmt: AudioFormat) -> PullCallback:
        """The engine's pull, and with ``on_played`` every block also handed to it."""
        on_played = self._on_played
        if on_played is None:
            return self.engine.pull
        engine_pull, sink = self.engine.pull, self.sink

        def pull(frames: int) -> PlaybackBlock:
            block = engine_pull(frames)
            # Its first frame leaves the speaker after what the sink still holds.
            on_played(block.samples, fmt, time.time_ns() + int(sink.output_latency_s * 1e9))
            return block

        return pull

    def _supervise(self) -> None:
        """Tick until stopped; raises the sink's ``BackendError`` when it broke."""
        while not self._stop.is_set():
            # Cleared before the engine is asked, so a wake-up after this is never lost.
            self._wake.clear()
            self._wake.wait(self.engine.idle_for(HOUSEKEEPING_S))
            if self._stop.is_set():
                return
            self.sink.check()
            self.engine.output_latency_s = self.sink.output_latency_s
            self._tick()

    def _tick_until(self, deadline: float) -> None:
        # Waiting to reopen still ticks: is_speaking and diagnostics must not freeze.
        while not self._stop.wait(min(TICK_S, max(0.0, deadline - time.monotonic()))):
            self._tick()
            if time.monotonic() >= deadline:
                return

    def _tick(self) -> None:
        self.engine.flush_idle()
        self._on_tick()
