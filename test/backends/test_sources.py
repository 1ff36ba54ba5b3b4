"""Tone and file sources: real-time pacing, capture times, looping, failures."""

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from kos_audio.backends import SourceConfig, create_source
from kos_audio.core import NS_PER_S, AudioFormat, CaptureLoop, SampleFormat, to_float
from kos_audio.core.capture import CaptureState
from kos_audio.errors import BackendError, SourceFinished

FMT = AudioFormat(16000, 1, SampleFormat.S16LE)


def test_tone_is_paced_to_real_time_with_contiguous_capture_times() -> None:
    src = create_source("tone", SourceConfig(format=FMT, block_ms=20, tone_frequency_hz=1000,
                                             tone_amplitude=0.25))
    src.open()
    start = time.monotonic()
    blocks = [src.read(1.0) for _ in range(25)]
    elapsed = time.monotonic() - start
    src.close()
    assert all(b is not None for b in blocks)
    assert 0.4 <= elapsed <= 1.0  # 25 x 20 ms = 0.5 s of audio takes ~0.5 s
    times = [b.capture_time_ns for b in blocks if b]
    assert set(np.diff(times)) == {20 * NS_PER_S // 1000}
    x = to_float(b"".join(b.data for b in blocks if b), FMT)[:, 0]
    assert np.max(np.abs(x)) == pytest.approx(0.25, abs=0.001)
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) * 16000 / len(x) == pytest.approx(1000, abs=4)


def test_tone_read_times_out_and_close_wakes_it() -> None:
    src = create_source("tone", SourceConfig(format=FMT, block_ms=500))
    src.open()
    assert src.read(0.01) is None
    src.close()
    start = time.monotonic()
    assert src.read(2.0) is None
    assert time.monotonic() - start < 0.5


def _write_ramp(
    path: Path, frames: int, rate: int = 16000, subtype: str = "PCM_16"
) -> np.ndarray:
    ramp = (np.arange(frames) % 2000 - 1000).astype(np.int16)
    soundfile.write(str(path), ramp, rate, subtype=subtype)
    return ramp


def test_file_source_loops_on_one_timeline(tmp_path: Path) -> None:
    ramp = _write_ramp(tmp_path / "r.wav", 3000)
    src = create_source("file", SourceConfig(format=FMT, block_ms=50,
                                             file_path=str(tmp_path / "r.wav")))
    src.open()
    assert src.format == FMT  # PCM_16 is read bit-exact
    blocks = [src.read(1.0) for _ in range(5)]  # 5 x 800 frames > one 3000-frame loop
    src.close()
    data = np.frombuffer(b"".join(b.data for b in blocks if b), "<i2")
    assert np.array_equal(data, np.tile(ramp, 2)[:4000])
    times = [b.capture_time_ns for b in blocks if b]
    assert set(np.diff(times)) == {50 * NS_PER_S // 1000}


def test_file_source_without_loop_finishes(tmp_path: Path) -> None:
    _write_ramp(tmp_path / "r.flac", 1000, subtype="PCM_24")
    src = create_source("file", SourceConfig(format=FMT, block_ms=20, file_loop=False,
                                             file_path=str(tmp_path / "r.flac")))
    src.open()
    assert src.format.sample_format is SampleFormat.F32LE  # 24-bit files decode to float
    frames = 0
    with pytest.raises(SourceFinished):
        while True:
            block = src.read(1.0)
            frames += len(block.data) // 4 if block else 0
    assert frames == 1000


def test_missing_or_bad_file_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot open"):
        create_source("file", SourceConfig(format=FMT, file_path=str(tmp_path / "no.wav"))).open()
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(BackendError, match="cannot open"):
        junk = SourceConfig(format=FMT, file_path=str(tmp_path / "junk.wav"))
        create_source("file", junk).open()
    with pytest.raises(BackendError, match="unknown source 'sdcard'"):
        create_source("sdcard", SourceConfig(format=FMT))


def test_capture_loop_retries_until_the_file_appears(tmp_path: Path) -> None:
    path = tmp_path / "later.wav"
    events: list[tuple[str, str]] = []
    blocks = []
    src = create_source("file", SourceConfig(format=FMT, block_ms=20, file_path=str(path)))
    loop = CaptureLoop(src, blocks.append, on_event=lambda k, m: events.append((k, m)))
    loop.start()
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events and events[0][0] == "error" and "retrying" in events[0][1]
    assert loop.state in (CaptureState.BACKOFF, CaptureState.OPENING)
    _write_ramp(path, 16000)
    deadline = time.monotonic() + 5
    while len(blocks) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.stop()
    assert len(blocks) >= 5
    assert blocks[0].discontinuity  # the first block after a failure starts a new timeline
    assert ("reopened" in [k for k, _ in events])
    assert loop.state is CaptureState.STOPPED
