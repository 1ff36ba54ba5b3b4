"""Real-time pacing for sources and sinks that have no hardware clock (tone, file, servers).

:class:`RealTimePacer` keeps a frame count in step with the monotonic clock;
:class:`PacedPuller` is the clock of a sink: a thread pulling one block per block period.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kos_audio.core.interfaces import PlaybackBlock, PullCallback
from kos_audio.core.stamping import NS_PER_S

#: A paced sink that falls further behind than this (s) skips ahead instead of bursting.
MAX_CATCH_UP_S = 0.5


class RealTimePacer:
    """Keeps a frame count in step with the monotonic clock.

    Frame ``n`` is due at ``start + n / rate`` on ``time.monotonic_ns()``; its capture (or
    play) time on the system clock is ``wall_start + n / rate``. Computed from the count, never
    accumulated, so pacing does not drift. Not thread-safe except :meth:`cancel`.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._cancel = threading.Event()
        self.restart()

    def restart(self) -> None:
        """Frame 0 is now."""
        self._mono0 = time.monotonic_ns()
        self._wall0 = time.time_ns()
        self._cancel.clear()

    def offset_ns(self, frames: int) -> int:
        """Duration of ``frames`` frames in ns."""
        return frames * NS_PER_S // self.sample_rate_hz

    def wall_time_ns(self, frame: int) -> int:
        """System-clock time of frame ``frame``."""
        return self._wall0 + self.offset_ns(frame)

    def lag_ns(self, frame: int) -> int:
        """How late (ns, negative = early) it is now for frame ``frame``."""
        return time.monotonic_ns() - (self._mono0 + self.offset_ns(frame))

    def wait_until(self, frame: int, timeout_s: float) -> bool:
        """Sleep until frame ``frame`` is due; False if ``timeout_s`` or a cancel came first."""
        early_s = -self.lag_ns(frame) / NS_PER_S
        if early_s <= 0:
            return True
        if early_s > timeout_s:
            self._cancel.wait(timeout_s)
            return False
        return not self._cancel.wait(early_s)

    def cancel(self) -> None:
        """Wake a :meth:`wait_until` now (from any thread)."""
        self._cancel.set()


class PacedPuller:
    """The clock of a sink that has none: one pull every ``block_frames / rate`` s of real time.

    Runs on its own thread and hands each block to ``consume``.

    Block ``k`` is pulled when it is due to start sounding (``k * block`` after :meth:`start`).
    A wake-up later than ``late_frames`` (default one block) while audio is playing counts as an
    underrun (a device would have glitched); falling more than :data:`MAX_CATCH_UP_S` behind
    restarts the timeline instead of bursting to catch up.

    Args:
        sample_rate_hz: the sink's rate.
        block_frames: frames per pull.
        consume: receives each block on the pacing thread; may block briefly (a file write),
            never for long (that would be an underrun).
        name: the thread's name.
        late_frames: lateness (frames) that counts as an underrun; None = one block. A sink
            that keeps a lead downstream passes the lead: only being later than it starves.
        playing: called on the pacing thread before each pull: is audio playing downstream
            (a late pull then is an underrun)? None = the previous block had audible frames.

    """

    def __init__(
        self, sample_rate_hz: int, block_frames: int,
        consume: Callable[[PlaybackBlock], None], *, name: str = "kos_audio-paced-sink",
        late_frames: int | None = None, playing: Callable[[], bool] | None = None,
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.block_frames = block_frames
        self._consume = consume
        self._name = name
        self._late_frames = block_frames if late_frames is None else late_frames
        self._playing = playing
        self._pacer = RealTimePacer(sample_rate_hz)
        self._thread: threading.Thread | None = None
        self._running = False
        self.underruns = 0
        self.error: Exception | None = None

    def start(self, pull: PullCallback) -> None:
        """Start pulling from ``pull`` now."""
        if self._thread is not None:
            return
        self._running = True
        self.error = None
        self._pacer.restart()
        self._thread = threading.Thread(target=self._run, args=(pull,), name=self._name,
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the thread; returns once it has ended (idempotent, any thread)."""
        thread, self._thread = self._thread, None
        self._running = False
        self._pacer.cancel()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _run(self, pull: PullCallback) -> None:
        frame = 0
        audible = False
        late_ns = self._pacer.offset_ns(self._late_frames)
        while self._running:
            if not self._pacer.wait_until(frame, 0.5):
                continue
            lag_ns = self._pacer.lag_ns(frame)
            playing = audible if self._playing is None else self._playing()
            if lag_ns > MAX_CATCH_UP_S * 1e9:
                self._pacer.restart()
                frame = 0
                self.underruns += int(playing)
            elif lag_ns > late_ns and playing:
                self.underruns += 1
            block = pull(self.block_frames)
            audible = block.audible_frames > 0
            try:
                self._consume(block)
            except Exception as err:  # handed to the supervisor via AudioSink.check()
                self.error = err
                self._running = False
                return
            frame += self.block_frames
