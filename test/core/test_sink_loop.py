"""The sink loop and the sink registry, on real threads and the real file sink (no ROS, no
device).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from playback_helpers import OUT, feed, peak_hz, tone

from kos_audio.backends import SinkConfig, create_sink
from kos_audio.core import PlaybackEngine, PlaybackLoop, SampleFormat, SinkState
from kos_audio.errors import BackendError


def test_loop_plays_into_a_real_file_in_real_time(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    sink = create_sink("file", SinkConfig(file_path=str(path), sample_rate_hz=16000,
                                          channels=1, sample_format=SampleFormat.S16LE))
    engine = PlaybackEngine(OUT)
    events: list[tuple[str, str]] = []
    loop = PlaybackLoop(sink, engine, on_event=lambda k, m: events.append((k, m)))
    loop.start()
    deadline = time.monotonic() + 5
    while loop.state is not SinkState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.output == sink.format  # the engine converts to what the sink opened
    t0 = time.monotonic()
    feed(engine, tone(440, 0.5))
    while engine.speaking() and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    loop.stop()
    assert elapsed >= 0.45  # paced to real time, not written as fast as possible
    data, rate = soundfile.read(str(path), dtype="float32")
    assert rate == 16000
    loud = np.flatnonzero(np.abs(data) > 0.05)
    assert (loud[-1] - loud[0]) / rate == pytest.approx(0.5, abs=0.01)
    assert peak_hz(data[loud[0] : loud[-1]], 16000) == pytest.approx(440, abs=3)
    assert events[0][0] == "opened"


def test_loop_reopens_a_failing_sink_with_backoff(tmp_path: Path) -> None:
    # A file sink whose directory does not exist yet: open fails until it is created.
    path = tmp_path / "later" / "out.wav"
    sink = create_sink("file", SinkConfig(file_path=str(path)))
    engine = PlaybackEngine(OUT)
    events: list[str] = []
    loop = PlaybackLoop(sink, engine, on_event=lambda k, m: events.append(k))
    loop.start()
    deadline = time.monotonic() + 5
    while not loop.failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loop.failures >= 1 and "cannot write audio file" in loop.last_error
    assert loop.state in (SinkState.BACKOFF, SinkState.OPENING)
    path.parent.mkdir()
    while loop.state is not SinkState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.stop()
    assert loop.state is SinkState.STOPPED and events[:1] == ["error"] and "opened" in events
    assert path.exists()


def test_unknown_sink_and_missing_file_path_are_clear_errors() -> None:
    with pytest.raises(BackendError, match="unknown sink 'nope'; choose one of device"):
        create_sink("nope", SinkConfig())
    with pytest.raises(BackendError, match=r"file\.path"):
        create_sink("file", SinkConfig())
