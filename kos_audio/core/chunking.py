"""Exact re-chunking of a stream into blocks of N frames."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kos_audio.errors import AudioFormatError


class FrameChunker:
    """Cuts a stream of frame arrays into chunks of exactly ``chunk_frames`` frames.

    Works on any 2-D array whose first axis is frames: float frames ``(n, channels)`` or raw
    PCM viewed as ``(n, frame_bytes)`` uint8. Frames are never lost or duplicated: what does
    not fill a chunk waits for the next :meth:`push`, or comes out of :meth:`flush`.
    Not thread-safe.
    """

    def __init__(self, chunk_frames: int) -> None:
        if chunk_frames < 1:
            raise AudioFormatError(f"chunk size must be at least one frame, not {chunk_frames}")
        self.chunk_frames = chunk_frames
        self._pending: npt.NDArray[np.generic] | None = None

    def push(self, frames: npt.NDArray[np.generic]) -> list[npt.NDArray[np.generic]]:
        """Add frames; return every chunk completed (possibly none), oldest first."""
        if self._pending is not None and len(self._pending):
            frames = np.concatenate((self._pending, frames))
        whole = len(frames) - len(frames) % self.chunk_frames
        chunks = [frames[i : i + self.chunk_frames] for i in range(0, whole, self.chunk_frames)]
        # Copy the remainder so it does not pin the caller's (possibly large) buffer.
        self._pending = frames[whole:].copy()
        return chunks

    def flush(self) -> npt.NDArray[np.generic] | None:
        """Return the partial chunk (fewer than ``chunk_frames`` frames), if any, and clear."""
        rest, self._pending = self._pending, None
        return rest if rest is not None and len(rest) else None

    def clear(self) -> None:
        """Drop the partial chunk."""
        self._pending = None
