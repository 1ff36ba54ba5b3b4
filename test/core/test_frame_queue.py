"""The playback engine's frame queue, on real arrays."""

from __future__ import annotations

import numpy as np

from kos_audio.core.frame_queue import FrameQueue


def frames(start: int, n: int) -> np.ndarray:
    """``n`` stereo frames numbered from ``start`` (channel 1 is the negative)."""
    x = np.arange(start, start + n, dtype=np.float32)
    return np.stack((x, -x), axis=1)


def test_take_spans_chunks_in_order_and_reports_marks_where_chunks_start() -> None:
    queue = FrameQueue(2)
    queue.push(frames(0, 5), mark=1.5)
    queue.push(frames(5, 5))
    queue.push(frames(10, 5), mark=2.5)
    first = queue.take(3)
    assert np.array_equal(first.samples, frames(0, 3)) and first.marks == [(0, 1.5)]
    second = queue.take(10)  # the rest of chunk 1, chunk 2, part of chunk 3
    assert np.array_equal(second.samples, frames(3, 10)) and second.marks == [(7, 2.5)]
    assert queue.frames == 2
    last = queue.take(100)  # more than queued: what there is
    assert np.array_equal(last.samples, frames(13, 2)) and last.marks == []
    assert queue.frames == 0 and queue.take(4).samples.shape == (0, 2)


def test_drop_oldest_and_clear_count_frames() -> None:
    queue = FrameQueue(2)
    queue.push(frames(0, 4))
    queue.push(frames(4, 4))
    queue.push(np.zeros((0, 2), np.float32), mark=9.0)  # nothing to play: not queued
    assert queue.drop_oldest(6) == 6 and queue.frames == 2
    assert np.array_equal(queue.take(1).samples, frames(6, 1))
    assert queue.drop_oldest(10) == 1 and queue.frames == 0
    queue.push(frames(0, 3))
    assert queue.clear() == 3 and queue.frames == 0


def test_fade_out_keeps_a_ramped_head_marked_as_fade() -> None:
    queue = FrameQueue(2)
    queue.push(np.ones((100, 2), np.float32), mark=1.0)
    queue.take(10)
    queue.fade_out(8)
    assert queue.frames == queue.fade_frames == 8
    taken = queue.take(5)
    assert taken.fade_frames == 5 and taken.marks == []
    ramp = taken.samples[:, 0]
    assert np.all(np.diff(ramp) < 0) and 0 < ramp[-1] < ramp[0] < 1
    assert queue.fade_frames == 3
    assert queue.drop_oldest(2) == 2 and queue.fade_frames == 1
    queue.push(np.ones((4, 2), np.float32))
    assert queue.take(5).fade_frames == 1  # only the fade's last frame, not the new speech
    queue.fade_out(0)
    assert queue.frames == queue.fade_frames == 0
