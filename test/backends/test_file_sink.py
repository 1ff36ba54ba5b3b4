"""The speaker's file sink on real files: every sample format in every container, read back with
libsndfile; a WAV readable while it is written and after the writer is killed; reopening after
a real write failure keeps what was written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from kos_audio.backends.file_sink import FileSink
from kos_audio.core.convert import from_float
from kos_audio.core.formats import SampleFormat
from kos_audio.core.interfaces import PlaybackBlock
from kos_audio.errors import BackendError

RATE = 16000
BLOCK_MS = 20.0  # 320 frames: one sync every 50 blocks (exactly 1 s)
ROOT = Path(__file__).resolve().parents[2]

#: What libsndfile must report the file as, per container and requested format (written out
#: here on purpose, not taken from the code under test).
SUBTYPE = {
    "wav": {SampleFormat.U8: "PCM_U8", SampleFormat.S16LE: "PCM_16",
            SampleFormat.S24LE: "PCM_24", SampleFormat.S32LE: "PCM_32",
            SampleFormat.F32LE: "FLOAT"},
    "flac": {SampleFormat.U8: "PCM_S8", SampleFormat.S16LE: "PCM_16",
             SampleFormat.S24LE: "PCM_24", SampleFormat.S32LE: "PCM_24",
             SampleFormat.F32LE: "PCM_24"},
    "ogg": dict.fromkeys(SampleFormat, "VORBIS"),
}
#: The PCM format FLAC keeps each requested format in (WAV and Vorbis: the requested one).
FLAC_PCM = {SampleFormat.S32LE: SampleFormat.S24LE, SampleFormat.F32LE: SampleFormat.S24LE}


def signal_at(start: int, frames: int, channels: int) -> npt.NDArray[np.float32]:
    """A deterministic stereo test signal: frames ``start .. start + frames`` of it."""
    t = (start + np.arange(frames)) / RATE
    cols = [0.6 * np.sin(2 * np.pi * 440 * t),
            0.35 * np.sin(2 * np.pi * 660 * t + 0.3) + 0.2 * np.sin(2 * np.pi * 97 * t)]
    return np.stack(cols[:channels], axis=1).astype(np.float32)


class Feeder:
    """A pull callback: ``total`` frames of :func:`signal_at` (None: endless), then silence."""

    def __init__(self, channels: int, total: int | None, *, offset: int = 0) -> None:
        self.channels = channels
        self.total = total
        self.offset = offset  # where in signal_at this feeder starts
        self.pulled = 0

    def pull(self, frames: int) -> PlaybackBlock:
        audible = frames if self.total is None else max(0, min(frames, self.total - self.pulled))
        samples = np.zeros((frames, self.channels), np.float32)
        samples[:audible] = signal_at(self.offset + self.pulled, audible, self.channels)
        self.pulled += frames
        return PlaybackBlock(samples, audible)

    def wait_pulled(self, frames: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.pulled < frames:
            assert time.monotonic() < deadline, f"only {self.pulled} of {frames} frames pulled"
            time.sleep(0.01)


def as_int32(data: bytes, sample_format: SampleFormat) -> npt.NDArray[np.int32]:
    """Integer PCM bytes as libsndfile reads them with ``dtype='int32'`` (left-justified)."""
    raw = np.frombuffer(data, np.uint8)
    if sample_format is SampleFormat.U8:
        return (raw.astype(np.int32) - 128) << 24
    if sample_format is SampleFormat.S16LE:
        return raw.view("<i2").astype(np.int32) << 16
    if sample_format is SampleFormat.S24LE:
        trip = raw.reshape(-1, 3).astype(np.int32)
        return (trip[:, 0] << 8) | (trip[:, 1] << 16) | (trip[:, 2] << 24)
    assert sample_format is SampleFormat.S32LE
    return raw.view("<i4").astype(np.int32)


def assert_exact(path: Path, expected: npt.NDArray[np.float32], pcm: SampleFormat,
                 frames: int) -> None:
    """``path`` holds ``expected`` encoded as ``pcm`` exactly, then silence, ``frames`` in all."""
    channels = expected.shape[1]
    if pcm is SampleFormat.F32LE:
        data, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
        want = np.frombuffer(from_float(expected, pcm), "<f4").reshape(-1, channels)
        silence: npt.NDArray[np.generic] = np.zeros((frames - len(expected), channels), "<f4")
    else:
        data, _ = soundfile.read(str(path), dtype="int32", always_2d=True)
        want = as_int32(from_float(expected, pcm), pcm).reshape(-1, channels)
        silence = as_int32(from_float(np.zeros((frames - len(expected), channels)), pcm),
                           pcm).reshape(-1, channels)
    assert data.shape == (frames, channels)
    np.testing.assert_array_equal(data[: len(expected)], want)
    np.testing.assert_array_equal(data[len(expected) :], silence)


@pytest.mark.parametrize("container", ["wav", "flac", "ogg"])
@pytest.mark.parametrize("sample_format", list(SampleFormat), ids=lambda f: f.value)
def test_every_format_in_every_container_reads_back(tmp_path: Path, container: str,
                                                    sample_format: SampleFormat) -> None:
    path = tmp_path / f"speaker.{container}"
    sink = FileSink(str(path), sample_rate_hz=RATE, channels=2, sample_format=sample_format,
                    block_ms=BLOCK_MS)
    fmt = sink.open()
    pcm = FLAC_PCM.get(sample_format, sample_format) if container == "flac" else sample_format
    assert (fmt.sample_rate_hz, fmt.channels, fmt.sample_format) == (RATE, 2, pcm)
    assert sink.format == fmt
    total = round(0.3 * RATE)
    feeder = Feeder(2, total)
    sink.start(feeder.pull)
    feeder.wait_pulled(total + 1000)
    sink.check()
    sink.close()
    sink.close()  # idempotent
    assert sink.describe() == f"file {path}"
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels) == (RATE, 2)
    assert info.subtype == SUBTYPE[container][sample_format]
    assert sink.frames_written >= total + 1000
    assert info.frames == sink.frames_written
    expected = signal_at(0, total, 2)
    if container == "ogg":  # lossy: the same waveform, not the same samples
        data, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
        assert len(data) == sink.frames_written
        for ch in range(2):
            corr = np.corrcoef(data[:total, ch], expected[:, ch])[0, 1]
            assert corr > 0.98, (ch, corr)
        assert np.max(np.abs(data[total + 200 :])) < 0.02  # silence after it
    else:
        assert_exact(path, expected, pcm, sink.frames_written)


def test_a_wav_being_written_is_readable_up_to_the_last_sync(tmp_path: Path) -> None:
    path = tmp_path / "speaker.wav"
    sink = FileSink(str(path), sample_rate_hz=RATE, channels=2,
                    sample_format=SampleFormat.S24LE, block_ms=BLOCK_MS)
    sink.open()
    feeder = Feeder(2, None)
    sink.start(feeder.pull)
    try:
        feeder.wait_pulled(round(1.4 * RATE))
        written = sink.frames_written
        info = soundfile.info(str(path))  # before close: the header must not say 0
        data, _ = soundfile.read(str(path), dtype="int32", always_2d=True)
    finally:
        sink.close()
    # Syncs come after every second of audio: 1 s at least, whole seconds, never ahead.
    assert info.frames >= RATE and info.frames % RATE == 0 and info.frames <= written
    assert len(data) == info.frames
    want = as_int32(from_float(signal_at(0, len(data), 2), SampleFormat.S24LE),
                    SampleFormat.S24LE)
    np.testing.assert_array_equal(data, want.reshape(-1, 2))
    assert soundfile.info(str(path)).frames == sink.frames_written  # close finished it


_CHILD = textwrap.dedent("""
    import signal, sys
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from test_file_sink import Feeder
    from kos_audio.backends.file_sink import FileSink
    from kos_audio.core.formats import SampleFormat

    sink = FileSink(sys.argv[1], sample_rate_hz=16000, channels=1,
                    sample_format=SampleFormat.S16LE, block_ms=20.0)
    sink.open()
    sink.start(Feeder(1, None).pull)
    print("started", flush=True)
    signal.pause()  # writes on the pacing thread until the test kills it
""")


def test_a_killed_writer_leaves_a_readable_wav(tmp_path: Path) -> None:
    path = tmp_path / "speaker.wav"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), str(ROOT), str(Path(__file__).parent)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "started\n"
        deadline = time.monotonic() + 10
        while True:  # two syncs, and some audio written after the last one
            synced = soundfile.info(str(path)).frames
            if synced >= 2 * RATE and os.path.getsize(path) > 44 + 2 * synced:
                break
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    data, rate = soundfile.read(str(path), dtype="int32", always_2d=True)
    assert rate == RATE
    assert len(data) % RATE == 0 and len(data) >= 2 * RATE  # whole seconds: the syncs
    assert os.path.getsize(path) > 44 + 2 * len(data)  # unsynced audio beyond the header
    want = as_int32(from_float(signal_at(0, len(data), 1), SampleFormat.S16LE),
                    SampleFormat.S16LE)
    np.testing.assert_array_equal(data[:, 0], want)


@pytest.mark.parametrize("container", ["wav", "flac"])
def test_a_reopen_continues_in_a_numbered_file_and_keeps_the_first(tmp_path: Path,
                                                                   container: str) -> None:
    path = tmp_path / f"speaker.{container}"
    (tmp_path / f"speaker.1.{container}").write_bytes(b"not ours")  # never overwritten
    sink = FileSink(str(path), sample_rate_hz=RATE, channels=2,
                    sample_format=SampleFormat.S16LE, block_ms=BLOCK_MS)
    sink.open()
    sink.close()
    sink.open()  # nothing was written yet: the same file again
    assert sink.describe() == f"file {path}"
    first = round(0.25 * RATE)
    feeder = Feeder(2, first)
    sink.start(feeder.pull)
    feeder.wait_pulled(first)
    sink.close()  # what the playback loop does after a failure...
    first_frames = sink.frames_written
    sink.open()  # ...before opening again
    second_path = tmp_path / f"speaker.2.{container}"
    assert sink.current_path == second_path
    assert sink.describe() == f"file {second_path} (continues {path})"
    feeder = Feeder(2, first, offset=first)
    sink.start(feeder.pull)
    feeder.wait_pulled(first)
    sink.close()
    assert (tmp_path / f"speaker.1.{container}").read_bytes() == b"not ours"
    assert_exact(path, signal_at(0, first, 2), SampleFormat.S16LE, first_frames)
    assert_exact(second_path, signal_at(first, first, 2), SampleFormat.S16LE,
                 sink.frames_written - first_frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"speaker.1.{container}", f"speaker.2.{container}", f"speaker.{container}"]


_FAILING_CHILD = textwrap.dedent("""
    import resource, signal, sys, time
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from test_file_sink import Feeder
    from kos_audio.backends.file_sink import FileSink
    from kos_audio.core.formats import SampleFormat
    from kos_audio.errors import BackendError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (48000, hard))  # 1.5 s of 16 kHz S16 mono
    sink = FileSink(sys.argv[1], sample_rate_hz=16000, channels=1,
                    sample_format=SampleFormat.S16LE, block_ms=20.0)
    sink.open()
    feeder = Feeder(1, None)
    sink.start(feeder.pull)
    deadline = time.monotonic() + 10
    while True:
        try:
            sink.check()
        except BackendError as err:
            print("failed:", err, flush=True)
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sink.close()
    first = sink.frames_written
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # room again
    sink.open()
    print("reopened:", sink.describe(), flush=True)
    sink.start(Feeder(1, None, offset=first).pull)
    deadline = time.monotonic() + 10
    while sink.frames_written < first + 4800:  # 0.3 s into the continuation file
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sink.check()
    sink.close()
    print(first, sink.frames_written, flush=True)
""")


def test_a_real_write_failure_then_reopen_keeps_the_first_part(tmp_path: Path) -> None:
    path = tmp_path / "speaker.wav"
    out = subprocess.run(
        [sys.executable, "-c", _FAILING_CHILD, str(path), str(ROOT), str(Path(__file__).parent)],
        capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert out[0].startswith(f"failed: file {path} failed: write failed after")
    assert "File too large" in out[0]
    second = tmp_path / "speaker.1.wav"
    assert out[1] == f"reopened: file {second} (continues {path})"
    first, total = map(int, out[2].split())
    assert first == (48000 - 44) // 2  # the last whole frame that fit
    assert_exact(path, signal_at(0, first, 1), SampleFormat.S16LE, first)
    assert_exact(second, signal_at(first, total - first, 1), SampleFormat.S16LE, total - first)


def test_open_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"file\.path"):
        FileSink("")
    sink = FileSink(str(tmp_path / "speaker.mp3"))
    with pytest.raises(BackendError, match=r"unknown extension '\.mp3'; use one of \.wav"):
        sink.open()
    with pytest.raises(BackendError, match=r"cannot write audio file .*No such file"):
        FileSink(str(tmp_path / "missing" / "speaker.wav")).open()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(BackendError, match=r"cannot write audio file .*Permission denied"):
            FileSink(str(locked / "speaker.flac")).open()
    assert not list(tmp_path.glob("speaker*"))
