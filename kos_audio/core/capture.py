"""Capture side of the core: a source on its own thread, and its blocks made into chunks.

:class:`CaptureLoop` runs and reconnects a source; :class:`ChunkStamper` turns its blocks into
format-converted, exactly sized, sample-accurately stamped chunks.
"""

from __future__ import annotations

import dataclasses
import enum
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kos_audio.core.backoff import Backoff
from kos_audio.core.chunking import FrameChunker
from kos_audio.core.converter import StreamConverter
from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import AudioSource, CapturedBlock, EventCallback
from kos_audio.core.stamping import NS_PER_S, SampleClock
from kos_audio.errors import KosAudioError, SourceFinished

#: A source clock that disagrees with the system clock by more than this (ns) is re-anchored.
#: Device clocks drift by tens of ppm (about 0.1-0.2 s an hour); capture-time jitter through
#: PulseAudio is a few tens of ms, so this threshold never fires on jitter alone.
MAX_DRIFT_NS = 200_000_000


@dataclass(frozen=True, slots=True)
class StampedChunk:
    """A chunk ready to publish: target-format PCM and the time of its first frame."""

    data: bytes
    frames: int
    stamp_ns: int


class ChunkStamper:
    """Source blocks in, stamped target-format chunks of ``chunk_frames`` out.

    The stamp of a chunk is the clock time of its first frame: ``t0 + n / rate`` where ``t0`` is
    the capture time of the first frame after the latest anchor and ``n`` counts target frames
    since then. Anchors happen at the first block, at every block flagged as a discontinuity,
    and when the source clock has drifted more than :data:`MAX_DRIFT_NS` from the system clock.
    Before a new anchor, what is pending is flushed as a short final chunk of the old timeline,
    so no frame is lost by re-anchoring. Not thread-safe: the capture thread owns it.

    Args:
        source: format of incoming blocks.
        target: format of outgoing chunks.
        chunk_frames: frames per outgoing chunk (target rate).
        clock_offset_ns: returns (ROS time - system time) in ns, read at each anchor so
            stamps are on the ROS clock.

    """

    def __init__(
        self,
        source: AudioFormat,
        target: AudioFormat,
        chunk_frames: int,
        *,
        clock_offset_ns: Callable[[], int] = lambda: 0,
    ) -> None:
        self.source = source
        self.target = target
        self._converter = StreamConverter(source, target)
        self._chunker = FrameChunker(chunk_frames)
        self._clock = SampleClock(target.sample_rate_hz)
        self._clock_offset_ns = clock_offset_ns
        self._in_t0_ns = 0  # system time of the first source frame since the anchor
        self._in_frames = 0  # source frames since the anchor
        self.reanchors = 0
        self.drift_ns = 0

    def push(self, block: CapturedBlock) -> list[StampedChunk]:
        """Convert, chunk and stamp one block; return the chunks completed, oldest first.

        Raises:
            AudioFormatError: the block is not a whole number of source frames.

        """
        frames_in = self.source.frames_in(len(block.data))
        capture_ns = block.capture_time_ns
        if capture_ns is None:
            # Unknown capture time: assume the block just finished arriving.
            capture_ns = time.time_ns() - frames_in * NS_PER_S // self.source.sample_rate_hz
        out: list[StampedChunk] = []
        if self._clock.anchored and not block.discontinuity:
            expected = self._in_t0_ns + self._in_frames * NS_PER_S // self.source.sample_rate_hz
            if block.capture_time_ns is not None:
                self.drift_ns = capture_ns - expected
        if not self._clock.anchored or block.discontinuity or abs(self.drift_ns) > MAX_DRIFT_NS:
            if self._clock.anchored:
                self.reanchors += 1
                out.extend(self.flush())
            self._in_t0_ns = capture_ns
            self._in_frames = 0
            self.drift_ns = 0
            self._clock.anchor(capture_ns + self._clock_offset_ns())
        self._in_frames += frames_in
        self._emit(self._converter.process(block.data), out)
        return out

    def flush(self) -> list[StampedChunk]:
        """End the current timeline: return the resampler tail and the partial chunk."""
        out: list[StampedChunk] = []
        self._emit(self._converter.flush(), out)
        rest = self._chunker.flush()
        if rest is not None:
            out.append(self._stamp(rest))
        self._converter.reset()
        return out

    def _emit(self, data: bytes, out: list[StampedChunk]) -> None:
        if not data:
            return
        raw = np.frombuffer(data, np.uint8).reshape(-1, self.target.frame_bytes)
        out.extend(self._stamp(chunk) for chunk in self._chunker.push(raw))

    def _stamp(self, chunk: npt.NDArray[np.generic]) -> StampedChunk:
        frames = len(chunk)
        return StampedChunk(chunk.tobytes(), frames, self._clock.take(frames))


def drain(pending: queue.SimpleQueue[Any]) -> None:
    """Discard what ``pending`` holds.

    Blocks a source queued before it was closed must not reach the next stream's timeline.
    """
    while True:
        try:
            pending.get_nowait()
        except queue.Empty:
            return


class CaptureState(enum.Enum):
    """What a :class:`CaptureLoop` is doing."""

    STOPPED = "stopped"
    OPENING = "opening"
    RUNNING = "running"
    BACKOFF = "waiting to reopen"
    FINISHED = "finished"


class CaptureLoop:
    """Runs an :class:`AudioSource` on a dedicated thread and hands every block on.

    The thread opens the source, reads blocks and calls ``on_block`` with each; when the source
    fails (``BackendError``) it is closed and reopened after a capped exponential back-off, and
    the first block after a reopen is flagged as a discontinuity. ``on_block`` runs on the
    capture thread, never on a real-time audio callback nor the ROS executor: it may publish.

    Args:
        source: the source to run (opened and closed by the loop).
        on_block: receives each block, on the capture thread.
        on_event: receives ``(kind, message)`` for failures and recoveries, on the capture
            thread; kinds: ``"error"``, ``"reopened"``, ``"finished"``.

    """

    def __init__(
        self,
        source: AudioSource,
        on_block: Callable[[CapturedBlock], None],
        *,
        on_event: EventCallback,
        backoff: Backoff | None = None,
        read_timeout_s: float = 0.25,
    ) -> None:
        self.source = source
        self._on_block = on_block
        self._on_event = on_event
        self._backoff = backoff or Backoff()
        self._read_timeout_s = read_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = CaptureState.STOPPED
        self.failures = 0
        self.blocks = 0

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None

    def start(self) -> None:
        """Start the capture thread (no-op when running)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kos_audio-capture", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop capturing and close the source; returns once the thread has ended."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self.source.close()  # unblocks a pending read
        thread.join(timeout_s)
        self.state = CaptureState.STOPPED

    def _run(self) -> None:
        discontinuity = False
        while not self._stop.is_set():
            self.state = CaptureState.OPENING
            opened_at = time.monotonic()
            try:
                self.source.open()
                if discontinuity:
                    self._on_event("reopened", f"{self.source.describe()} reopened")
                opened_at = time.monotonic()
                self.state = CaptureState.RUNNING
                discontinuity = self._pump(discontinuity)
            except SourceFinished as err:
                self.state = CaptureState.FINISHED
                self._on_event("finished", str(err) or f"{self.source.describe()} finished")
                self.source.close()
                return
            except KosAudioError as err:
                self.failures += 1
                discontinuity = True
                healthy_s = time.monotonic() - opened_at if self.state is CaptureState.RUNNING \
                    else 0.0
                delay = self._backoff.after_failure(healthy_s)
                self._on_event("error", f"{err}; retrying in {delay:.1f} s")
                self.source.close()
                self.state = CaptureState.BACKOFF
                self._stop.wait(delay)
        self.source.close()

    def _pump(self, discontinuity: bool) -> bool:
        """Read until stopped; return whether the next block starts a new timeline."""
        while not self._stop.is_set():
            block = self.source.read(self._read_timeout_s)
            if block is None:
                continue
            if discontinuity and not block.discontinuity:
                block = dataclasses.replace(block, discontinuity=True)
            discontinuity = False
            self.blocks += 1
            try:
                self._on_block(block)
            except KosAudioError as err:
                # A bad block must not stop capture; the consumer reports what it was.
                self._on_event("error", f"block dropped: {err}")
        return discontinuity

