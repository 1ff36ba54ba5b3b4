"""The pre-roll: the last few seconds of audio, kept while not recording."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from kos_audio.core.recording.recording import Chunk
from kos_audio.core.stamping import NS_PER_S


class PreRoll:
    """A ring of recent chunks covering at least ``max_s`` seconds (0 keeps nothing).

    Memory is bounded by ``max_s`` plus one chunk. Not thread-safe: the writer thread owns it.
    """

    def __init__(self, max_s: float) -> None:
        self.max_ns = max(0, round(max_s * NS_PER_S))
        self._chunks: deque[Chunk] = deque()
        self._ns = 0

    @property
    def duration_s(self) -> float:
        """Audio held (s); may exceed ``max_s`` by less than one chunk."""
        return self._ns / NS_PER_S

    def push(self, chunk: Chunk) -> None:
        """Keep ``chunk``; forget the oldest chunks no longer needed."""
        if not self.max_ns:
            return
        self._chunks.append(chunk)
        self._ns += chunk.duration_ns
        while self._chunks and self._ns - self._chunks[0].duration_ns >= self.max_ns:
            self._ns -= self._chunks.popleft().duration_ns

    def take(self) -> list[Chunk]:
        """The most recent audio, at most ``max_s`` long, oldest first; empties the ring.

        The oldest chunk is cut to fit and its stamp moved accordingly.
        """
        chunks = list(self._chunks)
        excess_ns = self._ns - self.max_ns
        self.clear()
        if chunks and excess_ns > 0:
            first = chunks[0]
            rate = first.format.sample_rate_hz
            drop = -(-excess_ns * rate // NS_PER_S)  # ceil: never more than max_s
            if drop >= first.frames:
                chunks.pop(0)
            else:
                cut = drop * first.format.frame_bytes
                chunks[0] = replace(first, data=first.data[cut:],
                                    stamp_ns=first.stamp_ns + drop * NS_PER_S // rate)
        return chunks

    def clear(self) -> None:
        """Forget everything."""
        self._chunks.clear()
        self._ns = 0
