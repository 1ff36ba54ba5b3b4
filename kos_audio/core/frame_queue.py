"""The playback engine's queue: float frame chunks taken from the head by frame count.

A chunk may carry a mark (the receive time of an utterance's first chunk), reported with the
position it lands at in a pulled block, so the engine can time receive-to-sound latency. The
head may be an interrupt's fade-out (:meth:`FrameQueue.fade_out`); :attr:`FrameQueue.fade_frames`
counts how much of it is left.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from kos_audio.core.convert import Frames


class Taken(NamedTuple):
    """Frames taken from the head of a :class:`FrameQueue`."""

    #: ``(n, channels)`` float32, a new array (``n`` <= what was asked).
    samples: Frames
    #: ``(position in samples, mark)`` of every marked chunk that starts in ``samples``.
    marks: list[tuple[int, float]]
    #: How many leading frames of ``samples`` are a fade-out (see :meth:`FrameQueue.fade_out`).
    fade_frames: int


class FrameQueue:
    """Float frame chunks in order, with marks; sizes in frames.

    Chunks are kept as pushed (not copied): the pusher hands over ownership. Not thread-safe:
    the engine calls it under its lock.

    Args:
        channels: the width of every chunk pushed.

    """

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self._chunks: deque[tuple[Frames, float | None]] = deque()
        self._offset = 0  # frames of the head chunk already taken
        #: Frames queued.
        self.frames = 0
        #: Leading queued frames that are an interrupt's fade-out (not counted as played).
        self.fade_frames = 0

    def push(self, samples: Frames, mark: float | None = None) -> None:
        """Append ``(n, channels)`` float32 frames; ``mark`` is reported when they are taken."""
        if len(samples):
            self._chunks.append((samples, mark))
            self.frames += len(samples)

    def take(self, frames: int) -> Taken:
        """Up to ``frames`` frames from the head, with the marks of chunks starting in them."""
        n = min(frames, self.frames)
        out = np.empty((n, self.channels), np.float32)
        marks: list[tuple[int, float]] = []
        pos = 0
        while pos < n:
            chunk, mark = self._chunks[0]
            if self._offset == 0 and mark is not None:
                marks.append((pos, mark))
            k = min(n - pos, len(chunk) - self._offset)
            out[pos : pos + k] = chunk[self._offset : self._offset + k]
            pos += k
            self._advance(k, len(chunk))
        self.frames -= n
        fade = min(n, self.fade_frames)
        self.fade_frames -= fade
        return Taken(out, marks, fade)

    def drop_oldest(self, frames: int) -> int:
        """Drop up to ``frames`` frames from the head; returns how many went."""
        dropped = 0
        while dropped < frames and self._chunks:
            chunk, _ = self._chunks[0]
            k = min(frames - dropped, len(chunk) - self._offset)
            dropped += k
            self._advance(k, len(chunk))
        self.frames -= dropped
        self.fade_frames = max(0, self.fade_frames - dropped)
        return dropped

    def fade_out(self, frames: int) -> None:
        """Keep only the first ``frames`` frames, ramped linearly down to silence; marks go.

        The kept frames become :attr:`fade_frames`. ``frames`` beyond what is queued keeps all.
        """
        head = self.take(frames).samples
        self.clear()
        if len(head):
            ramp = np.linspace(1.0, 0.0, len(head) + 2, dtype=np.float32)[1:-1]
            self.push(head * ramp[:, None])
        self.fade_frames = len(head)

    def clear(self) -> int:
        """Drop everything; returns how many frames went."""
        dropped = self.frames
        self._chunks.clear()
        self._offset = 0
        self.frames = 0
        self.fade_frames = 0
        return dropped

    def _advance(self, frames: int, head_frames: int) -> None:
        self._offset += frames
        if self._offset == head_frames:
            self._chunks.popleft()
            self._offset = 0
