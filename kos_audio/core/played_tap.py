"""What a sink plays, as stamped chunks: the echo reference and the robot's side of a recording.

:class:`PlayedTap` takes every block a sink pulls (on the sink's real-time thread: a copy and
a queue put, nothing else) with the time its first frame leaves the speaker, and turns them
into sample-accurately stamped chunks on a consumer thread, through the same
:class:`~kos_audio.core.stamping.ChunkStamper` the microphone uses. So the played stream has
the mic's properties: contiguous stamps while the sink runs, a new timeline (a stamp jump) when
it restarts or the tap was off, the start time estimated as the earliest of the blocks'
"leaves the speaker" times.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import CapturedBlock
from kos_audio.core.stamping import ChunkStamper, StampedChunk

#: Blocks waiting for the consumer before the tap drops (about 2 s of 20 ms blocks); a drop
#: starts a new timeline, so a subscriber sees it as a stamp gap.
MAX_QUEUED_BLOCKS = 100
#: Audio (s) held back at each new timeline while its start time is estimated.
SETTLE_S = 0.2


@dataclass(frozen=True, slots=True)
class _Played:
    samples: npt.NDArray[np.float32]
    fmt: AudioFormat
    dac_ns: int
    discontinuity: bool


class PlayedTap:
    """Queue of played blocks (sink thread) -> stamped chunks (consumer thread).

    Args:
        sample_format: the format chunks are encoded in (rate and channels are the sink's).
        chunk_ms: duration of one chunk (ms), at the sink's rate.
        clock_offset_ns: returns (ROS time - system time) in ns, read at each anchor so
            stamps are on the ROS clock, like the microphone's.

    Attributes:
        enabled: while False, :meth:`push` drops blocks at no cost (nobody listens); the next
            block after it is set again starts a new timeline. Set from any thread.
        dropped: blocks dropped because the consumer fell behind.

    """

    def __init__(self, sample_format: SampleFormat = SampleFormat.S16LE,
                 chunk_ms: float = 20.0, *,
                 clock_offset_ns: Callable[[], int] = lambda: 0) -> None:
        self.sample_format = sample_format
        self._clock_offset_ns = clock_offset_ns
        self.chunk_ms = chunk_ms
        self.enabled = False
        self.dropped = 0
        self._queue: queue.SimpleQueue[_Played] = queue.SimpleQueue()
        self._gap = True  # the next block pushed starts a new timeline
        self._stamper: ChunkStamper | None = None

    def push(self, samples: npt.NDArray[np.float32], fmt: AudioFormat, dac_ns: int) -> None:
        """One block the sink is about to play (sink thread; never blocks).

        Args:
            samples: float32 ``(frames, channels)`` in ``fmt``'s rate and channels; copied.
            fmt: the sink's format (its rate and channels count here).
            dac_ns: system time (``time.time_ns()`` domain) when its first frame leaves the
                speaker.

        """
        if not self.enabled:
            self._gap = True
            return
        if self._queue.qsize() >= MAX_QUEUED_BLOCKS:
            self.dropped += 1
            self._gap = True
            return
        self._queue.put(_Played(np.array(samples, np.float32), fmt, dac_ns, self._gap))
        self._gap = False

    def take(self, timeout_s: float) -> list[tuple[AudioFormat, StampedChunk]]:
        """Stamped chunks of what was played since the last call, each with its format.

        Consumer thread. The format changes when the sink reopens in another one. Waits up
        to ``timeout_s`` for the first block; returns [] if none came.
        """
        try:
            played = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return []
        out: list[tuple[AudioFormat, StampedChunk]] = []
        while True:
            out.extend(self._stamp(played))
            try:
                played = self._queue.get_nowait()
            except queue.Empty:
                return out

    def _stamp(self, played: _Played) -> list[tuple[AudioFormat, StampedChunk]]:
        source = AudioFormat(played.fmt.sample_rate_hz, played.fmt.channels, SampleFormat.F32LE)
        out: list[tuple[AudioFormat, StampedChunk]] = []
        stamper = self._stamper
        if stamper is None or stamper.source != source:
            if stamper is not None:
                out.extend((stamper.target, c) for c in stamper.flush())
            target = AudioFormat(source.sample_rate_hz, source.channels, self.sample_format)
            stamper = self._stamper = ChunkStamper(
                source, target, target.frames_for_ms(self.chunk_ms), settle_s=SETTLE_S,
                clock_offset_ns=self._clock_offset_ns)
        block = CapturedBlock(played.samples.tobytes(), played.dac_ns, played.discontinuity)
        out.extend((stamper.target, c) for c in stamper.push(block))
        return out
