"""The recording core on real files: WAV/FLAC/OGG, time axis, pre-roll, naming, crash safety.

Files are read back with independent readers: the standard library's ``wave`` and libsndfile
(``soundfile``). OS errors are real: a write refused by the kernel (``RLIMIT_FSIZE`` via
``prlimit``, and ``/dev/full``), a SIGKILLed writer process, planted symlinks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from kos_audio.core import NS_PER_S, AudioFormat, SampleFormat, from_float
from kos_audio.core.recording import (
    GROUP_READABLE,
    Chunk,
    Container,
    EndReason,
    FileAccess,
    GapPolicy,
    PreRoll,
    Recorder,
    RecorderConfig,
    RecorderState,
    Recording,
    RecordingError,
    RecordingOptions,
    StartRequest,
    WavWriter,
    claim_new_file,
    claim_path,
    iso8601,
    parse_iso8601,
    prepare_output_dir,
    read_sidecar,
    repair_wav,
    validate_prefix,
)
from kos_audio.core.recording.recovery import recover_incomplete

MONO16 = AudioFormat(16000, 1, SampleFormat.S16LE)
T0 = 1_750_000_000 * NS_PER_S


def ramp(frames: int, fmt: AudioFormat = MONO16, start: int = 0) -> bytes:
    """Distinct, exactly representable samples (a slow ramp) in ``fmt``."""
    x = ((np.arange(start, start + frames) % 2000) - 1000) / 1024.0
    return from_float(np.repeat(x[:, None], fmt.channels, axis=1).astype(np.float32),
                      fmt.sample_format)


def chunks(n: int, frames: int = 320, fmt: AudioFormat = MONO16, t0: int = T0,
           first: int = 0) -> list[Chunk]:
    rate = fmt.sample_rate_hz
    return [Chunk(ramp(frames, fmt, i * frames), fmt, t0 + i * frames * NS_PER_S // rate)
            for i in range(first, first + n)]


def new_recording(tmp_path: Path, fmt: AudioFormat = MONO16, **options: object) -> Recording:
    claimed = claim_new_file(prepare_output_dir(tmp_path), "rec", str(
        getattr(options.get("container"), "value", "wav")))
    return Recording(claimed, fmt, RecordingOptions(**options))  # type: ignore[arg-type]


def wav_frames(path: Path) -> tuple[tuple[int, int, int], bytes]:
    with wave.open(str(path), "rb") as w:
        return (w.getframerate(), w.getnchannels(), w.getsampwidth()), w.readframes(
            w.getnframes())


# ------------------------------------------------------------------------------ naming


@pytest.mark.parametrize("prefix", ["recording", "take-2.b_c", "A", "x" * 100])
def test_plain_prefixes_are_accepted(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "../x", "..", "a/b", "/abs", ".hidden", "-x", "a b",
                                    "a\\b", "a\0b", "x" * 101, "é"])
def test_prefixes_that_could_escape_or_confuse_are_refused(prefix: str) -> None:
    with pytest.raises(RecordingError, match="plain file name"):
        validate_prefix(prefix)


def test_claim_never_overwrites_nor_follows_symlinks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "precious.wav"
    outside.write_bytes(b"keep me")
    (out / "rec.wav").write_bytes(b"old")  # an existing recording
    (out / "rec_1.wav").symlink_to(outside)  # a planted link at the next name
    (out / "rec_2.wav").symlink_to(tmp_path / "missing")  # a dangling one
    (out / "rec_3.json").write_text("{}")  # a sidecar without audio still takes the name
    claimed = claim_new_file(out, "rec", "wav")
    os.close(claimed.fd)
    assert claimed.path == out / "rec_4.wav"
    assert outside.read_bytes() == b"keep me"
    assert (out / "rec.wav").read_bytes() == b"old"
    assert not (tmp_path / "missing").exists()
    with pytest.raises(RecordingError, match="plain file name"):
        claim_new_file(out, "../rec", "wav")


def test_output_dir_is_resolved_and_created(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert prepare_output_dir(tmp_path / "link" / "a" / "b") == real / "a" / "b"
    assert (real / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecordingError, match="Not a directory"):
        prepare_output_dir(tmp_path / "file" / "sub")


def test_claim_path_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "x.wav"
    target.write_bytes(b"old")
    with pytest.raises(RecordingError, match="not overwriting"):
        claim_path(target)
    claimed = claim_path(target, overwrite=True)
    os.close(claimed.fd)
    assert target.read_bytes() == b""


# ------------------------------------------------------------------------- permissions


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_recordings_are_private_by_default_whatever_the_umask(tmp_path: Path,
                                                              mask: int) -> None:
    out = tmp_path / "new" / "recordings"
    with umask(mask):
        recorder = Recorder(RecorderConfig(out)).open()
        try:
            path = recorder.start(StartRequest(), MONO16, now_ns=T0)
            for c in chunks(5):
                recorder.push(c)
            # The in-progress sidecar and the growing file are private from their first byte.
            assert mode_of(path) == 0o600 and mode_of(path.with_suffix(".json")) == 0o600
            summary = recorder.stop()
        finally:
            recorder.close()
    assert summary.path == path and summary.error is None
    assert mode_of(out) == 0o700
    assert mode_of(path) == 0o600 and mode_of(path.with_suffix(".json")) == 0o600
    assert len(wav_frames(path)[1]) == 5 * 320 * 2
    assert sorted(p.name for p in out.iterdir()) == sorted([path.name, path.stem + ".json"])


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_group_readable_is_exact_and_an_existing_dir_is_left_alone(tmp_path: Path,
                                                                   mask: int) -> None:
    existing = tmp_path / "shared"
    existing.mkdir()
    os.chmod(existing, 0o2775)
    created = tmp_path / "created"
    with umask(mask):
        for directory in (existing, created):
            recorder = Recorder(RecorderConfig(directory, access=GROUP_READABLE)).open()
            try:
                path = recorder.start(StartRequest(container=Container.FLAC), MONO16,
                                      now_ns=T0)
                recorder.push(chunks(1)[0])
                recorder.stop()
            finally:
                recorder.close()
            assert mode_of(path) == 0o640 and mode_of(path.with_suffix(".json")) == 0o640
    assert mode_of(existing) == 0o2775  # not ours to change
    assert mode_of(created) == 0o750
    assert FileAccess.of(group_readable=False) == FileAccess(0o600, 0o700)


def test_claim_path_sets_the_mode_also_when_overwriting(tmp_path: Path) -> None:
    target = tmp_path / "x.wav"
    target.write_bytes(b"old")
    os.chmod(target, 0o666)
    claimed = claim_path(target, overwrite=True)
    os.close(claimed.fd)
    assert mode_of(target) == 0o600 and target.read_bytes() == b""
    claimed = claim_path(tmp_path / "y.wav", mode=0o640)
    os.close(claimed.fd)
    assert mode_of(tmp_path / "y.wav") == 0o640


# --------------------------------------------------------------------------------- WAV


@pytest.mark.parametrize("sample_format", [SampleFormat.U8, SampleFormat.S16LE,
                                           SampleFormat.S24LE, SampleFormat.S32LE])
def test_wav_header_is_valid_at_every_sync(tmp_path: Path, sample_format: SampleFormat) -> None:
    fmt = AudioFormat(22050, 3, sample_format)
    path = tmp_path / "x.wav"
    writer = WavWriter(os.open(path, os.O_RDWR | os.O_CREAT), fmt)
    assert wav_frames(path)[1] == b""  # readable even before the first sample
    first, second = ramp(1001, fmt), ramp(500, fmt, 1001)
    writer.write(first)
    writer.sync()
    writer.write(second)  # not synced: readers see the first part only
    assert wav_frames(path) == ((22050, 3, sample_format.bytes_per_sample), first)
    writer.close()
    assert wav_frames(path)[1] == first + second
    data, rate = soundfile.read(path, dtype="float32")  # libsndfile agrees
    assert rate == 22050 and data.shape == (1501, 3)


def test_float_wav_is_read_by_libsndfile(tmp_path: Path) -> None:
    fmt = AudioFormat(48000, 2, SampleFormat.F32LE)
    path = tmp_path / "f.wav"
    writer = WavWriter(os.open(path, os.O_RDWR | os.O_CREAT), fmt)
    writer.write(ramp(4800, fmt))
    writer.sync()
    info = soundfile.info(path)
    assert (info.subtype, info.frames, info.channels) == ("FLOAT", 4800, 2)
    writer.close()
    data, _ = soundfile.read(path, dtype="float32")
    assert data.astype("<f4").tobytes() == ramp(4800, fmt)


def test_odd_sized_wav_is_padded_and_repair_extends_the_header(tmp_path: Path) -> None:
    fmt = AudioFormat(8000, 1, SampleFormat.S24LE)  # 3-byte frames: odd data sizes
    path = tmp_path / "odd.wav"
    writer = WavWriter(os.open(path, os.O_RDWR | os.O_CREAT), fmt)
    writer.write(ramp(3, fmt))
    writer.close()
    assert path.stat().st_size % 2 == 0
    assert wav_frames(path)[1] == ramp(3, fmt)
    # A crash after unsynced writes: the header covers less than the file holds.
    path2 = tmp_path / "crash.wav"
    writer = WavWriter(os.open(path2, os.O_RDWR | os.O_CREAT), fmt)
    writer.write(ramp(100, fmt))
    writer.sync()
    writer.write(ramp(50, fmt, 100))
    with open(path2, "ab") as file:
        file.write(b"\x01\x02")  # a torn last frame
    assert len(wav_frames(path2)[1]) == 300
    assert repair_wav(path2) == 150
    assert wav_frames(path2)[1] == ramp(150, fmt)
    with pytest.raises(RecordingError, match="not a WAV"):
        (tmp_path / "junk.wav").write_bytes(b"\0" * 100)
        repair_wav(tmp_path / "junk.wav")


def test_wav_size_limit_refuses_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "limit.wav"
    writer = WavWriter(os.open(path, os.O_RDWR | os.O_CREAT), MONO16, max_data_bytes=1000)
    writer.write(ramp(400))
    with pytest.raises(RecordingError, match="size limit"):
        writer.write(ramp(200))
    writer.close()
    assert len(wav_frames(path)[1]) == 800


def test_a_full_device_is_a_clear_error() -> None:
    """/dev/full answers every write with a real ENOSPC from the kernel."""
    with pytest.raises(RecordingError, match="No space left on device"):
        WavWriter(os.open("/dev/full", os.O_WRONLY), MONO16)


def test_a_write_refused_by_the_kernel_leaves_whole_frames_and_a_valid_header(
        tmp_path: Path) -> None:
    """RLIMIT_FSIZE (set with prlimit on a child process) makes write(2) stop at a size:
    first a short write, then EFBIG -- what a filling disk does (short write, then ENOSPC)."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    limit = 44 + 2 * 1000 + 1  # 1000 frames and one byte of a torn frame
    code = textwrap.dedent(f"""
        import os, sys
        from kos_audio.core import AudioFormat, SampleFormat
        from kos_audio.core.recording import WavWriter, RecordingError
        w = WavWriter(os.open({str(tmp_path / 'x.wav')!r}, os.O_RDWR | os.O_CREAT),
                      AudioFormat(16000, 1, SampleFormat.S16LE))
        try:
            for _ in range(10):
                w.write(bytes(range(200)) * 2)
        except RecordingError as err:
            print(err)
        w.close()
    """)
    out = subprocess.run(["prlimit", f"--fsize={limit}", sys.executable, "-c", code],
                         capture_output=True, text=True, check=True)
    assert "write failed after 1000 frames" in out.stdout and "File too large" in out.stdout
    params, data = wav_frames(tmp_path / "x.wav")
    assert params == (16000, 1, 2) and data == (bytes(range(200)) * 2) * 5


# ----------------------------------------------------------------------------- time axis


def test_gaps_are_filled_exactly_and_counted(tmp_path: Path) -> None:
    rec = new_recording(tmp_path)
    for c in chunks(10) + chunks(10, first=13):  # chunks 10..12 missing: 60 ms
        assert rec.push(c)
    summary = rec.finish()
    _, data = wav_frames(summary.path)
    expected = ramp(10 * 320) + bytes(2 * 3 * 320) + ramp(10 * 320, start=13 * 320)
    assert data == expected
    side = summary.sidecar
    assert side["gaps"] == {"count": 1, "missing_s": 0.06}
    assert side["timeline_resets"] == {"count": 0}
    assert side["started_at_ns"] == T0 and side["ended_at_ns"] == T0 + 23 * 20_000_000
    assert side["samples"] == 23 * 320 and side["duration_s"] == pytest.approx(0.46)


def test_jitter_within_tolerance_is_not_a_gap(tmp_path: Path) -> None:
    rec = new_recording(tmp_path, gaps=GapPolicy(tolerance_ns=2_000_000))
    for i, c in enumerate(chunks(20)):
        jitter = (900_000 if i % 2 else -900_000)  # receive-time stamps wobble
        assert rec.push(Chunk(c.data, c.format, c.stamp_ns + jitter))
    side = rec.finish().sidecar
    assert side["gaps"]["count"] == 0 and side["samples"] == 20 * 320


def test_backward_and_huge_jumps_keep_audio_and_reset_the_axis(tmp_path: Path) -> None:
    rec = new_recording(tmp_path, gaps=GapPolicy(max_fill_s=5.0))
    for c in chunks(5):
        rec.push(c)
    rec.push(chunks(1, t0=T0 - NS_PER_S)[0])  # a clock reset backwards
    rec.push(chunks(1, t0=T0 + 3600 * NS_PER_S)[0])  # garbage an hour ahead: not filled
    rec.push(chunks(1, t0=T0 + 3600 * NS_PER_S, first=1)[0])  # contiguous with it
    side = rec.finish().sidecar
    assert side["samples"] == 8 * 320  # every chunk kept, nothing filled
    assert side["gaps"]["count"] == 0 and side["timeline_resets"]["count"] == 2
    assert side["ended_at_ns"] == T0 + 3600 * NS_PER_S + 2 * 20_000_000


def test_unstamped_input_never_fills(tmp_path: Path) -> None:
    rec = new_recording(tmp_path)
    for i, c in enumerate(chunks(5)):
        rec.push(Chunk(c.data, c.format, c.stamp_ns + i * NS_PER_S, stamped=False))
    side = rec.finish().sidecar
    assert side["samples"] == 5 * 320 and side["gaps"]["count"] == 0
    assert side["stamped"] is False


def test_max_duration_cuts_exactly(tmp_path: Path) -> None:
    rec = new_recording(tmp_path, max_duration_s=0.25)
    results = [rec.push(c) for c in chunks(20)]
    assert results[:12] == [True] * 12 and not any(results[12:])  # 12.5 chunks
    assert rec.ended is EndReason.MAX_DURATION
    summary = rec.finish(EndReason.STOPPED)  # the first reason stays
    assert summary.end_reason is EndReason.MAX_DURATION
    assert wav_frames(summary.path)[1] == ramp(4000)


def test_format_changes_convert_to_the_format_fixed_at_start(tmp_path: Path) -> None:
    stereo48 = AudioFormat(48000, 2, SampleFormat.F32LE)
    rec = new_recording(tmp_path)
    for c in chunks(25):  # 0.5 s mono 16 kHz
        rec.push(c)
    t1 = T0 + NS_PER_S // 2
    n = 24000
    x = 0.25 * np.sin(2 * np.pi * 1000 * np.arange(n) / 48000)
    data = from_float(np.stack([x, x], axis=1), SampleFormat.F32LE)
    for i in range(0, n, 960):
        rec.push(Chunk(data[i * 8:(i + 960) * 8], stereo48, t1 + i * NS_PER_S // 48000))
    summary = rec.finish()
    params, pcm = wav_frames(summary.path)
    assert params == (16000, 1, 2)
    assert pcm[: 25 * 640] == ramp(25 * 320)
    assert abs(len(pcm) // 2 - 16000) <= 1
    y = np.frombuffer(pcm, "<i2")[8000 + 200: -200] / 32768.0
    assert np.max(np.abs(y)) == pytest.approx(0.25, abs=0.005)
    assert summary.sidecar["source_formats"] == [MONO16.describe(), stereo48.describe()]
    assert summary.sidecar["gaps"]["count"] == 0


@pytest.mark.parametrize(("sample_format", "stored"), [
    (SampleFormat.S16LE, SampleFormat.S16LE), (SampleFormat.S24LE, SampleFormat.S24LE),
    (SampleFormat.U8, SampleFormat.U8), (SampleFormat.S32LE, SampleFormat.S24LE)])
def test_flac_holds_the_exact_pcm(tmp_path: Path, sample_format: SampleFormat,
                                  stored: SampleFormat) -> None:
    fmt = AudioFormat(16000, 2, sample_format)
    rec = new_recording(tmp_path, fmt, container=Container.FLAC)
    for c in chunks(10, fmt=fmt):
        rec.push(c)
    summary = rec.finish()
    assert summary.sidecar["sample_format"] == stored.value
    assert summary.sidecar["subtype"] == {"S16LE": "PCM_16", "S24LE": "PCM_24",
                                          "U8": "PCM_S8"}[stored.value]
    decoded, rate = soundfile.read(summary.path, dtype="float64")
    assert rate == 16000 and decoded.shape == (3200, 2)
    expected = from_float(decoded, stored)  # libsndfile scales ints by 2^(bits-1) for float64
    assert expected == ramp(3200, AudioFormat(16000, 2, stored))


def test_ogg_is_readable(tmp_path: Path) -> None:
    rec = new_recording(tmp_path, container=Container.OGG)
    for c in chunks(50):
        rec.push(c)
    summary = rec.finish()
    info = soundfile.info(summary.path)
    assert (info.format, info.subtype, info.frames) == ("OGG", "VORBIS", 16000)
    assert summary.sidecar["subtype"] == "VORBIS"


def test_sidecar_is_complete_and_true(tmp_path: Path) -> None:
    rec = new_recording(tmp_path, source_topic="/robot/mic/audio_stamped",
                        extra=(("note", "x"),))
    assert read_sidecar(rec.sidecar_path)["complete"] is False  # written at start already
    for c in chunks(50):
        rec.push(c)
    summary = rec.finish()
    side = json.loads(summary.sidecar_path.read_text())
    assert side == {**summary.sidecar, "schema": "kos_audio.recording/1"}
    assert side["sha256"] == hashlib.sha256(summary.path.read_bytes()).hexdigest()
    assert side["started_at"] == "2025-06-15T15:06:40.000000Z"
    assert side["ended_at"] == "2025-06-15T15:06:41.000000Z"
    assert (side["source_topic"], side["note"], side["complete"]) == (
        "/robot/mic/audio_stamped", "x", True)
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["rec.json", "rec.wav"]


def test_sidecar_times_read_back_on_every_python() -> None:
    # The sidecar's own contract: what iso8601 writes (with "Z"), parse_iso8601 reads, also
    # where datetime.fromisoformat cannot (Python 3.10).
    for ns in (0, 1_750_000_000_123_456_000, 1_750_000_000_123_456_789):
        text = iso8601(ns)
        assert text.endswith("Z")
        assert parse_iso8601(text) == ns // 1000 * 1000
    assert parse_iso8601("2025-06-15T17:06:40.000001+02:00") == (
        parse_iso8601("2025-06-15T15:06:40.000001Z"))
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_iso8601("2025-06-15T15:06:40.000000")


# ------------------------------------------------------------------------------ pre-roll


def test_pre_roll_keeps_exactly_the_last_seconds() -> None:
    pre = PreRoll(0.05)  # 2.5 chunks of 20 ms
    for c in chunks(10):
        pre.push(c)
    taken = pre.take()
    assert sum(c.frames for c in taken) == 800
    assert taken[0].stamp_ns == T0 + (10 * 320 - 800) * NS_PER_S // 16000
    assert b"".join(c.data for c in taken) == ramp(800, start=10 * 320 - 800)
    assert pre.take() == []
    nothing = PreRoll(0.0)
    nothing.push(chunks(1)[0])
    assert nothing.take() == []


# ------------------------------------------------------------------------------ recorder


def test_recorder_start_stop_refusals_and_pre_roll(tmp_path: Path) -> None:
    recorder = Recorder(RecorderConfig(tmp_path, source_topic="/a", pre_roll_s=0.1)).open()
    try:
        with pytest.raises(RecordingError, match=r"^not recording$"):
            recorder.stop()
        with pytest.raises(RecordingError, match="no audio format known"):
            recorder.start(StartRequest(), None, now_ns=T0)
        with pytest.raises(RecordingError, match="plain file name"):
            recorder.start(StartRequest(prefix="../x"), MONO16, now_ns=T0)
        for c in chunks(20):
            recorder.push(c)
        path = recorder.start(StartRequest(prefix="take"), MONO16, now_ns=T0 + 4 * 10**8)
        assert path == tmp_path / "take_20250615T150640.400Z.wav"
        with pytest.raises(RecordingError, match="already recording"):
            recorder.start(StartRequest(), MONO16, now_ns=T0)
        for c in chunks(10, first=20):
            recorder.push(c)
        summary = recorder.stop()
        assert summary.sidecar["pre_roll_s"] == pytest.approx(0.1)
        assert summary.sidecar["started_at_ns"] == T0 + 15 * 20_000_000
        assert wav_frames(path)[1] == ramp(15 * 320, start=15 * 320)
        assert recorder.status.state is RecorderState.IDLE
        assert recorder.status.recordings == 1
    finally:
        recorder.close()


def test_recorder_reports_a_recording_that_ended_by_itself(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    recorder = Recorder(RecorderConfig(tmp_path), on_event=lambda k, m: events.append((k, m)))
    recorder.open()
    try:
        recorder.start(StartRequest(max_duration_s=0.1), MONO16, now_ns=T0)
        for c in chunks(10):
            recorder.push(c)
        with pytest.raises(RecordingError, match=r"ended by itself \(max_duration\)"):
            recorder.stop()
        assert events and events[0][0] == "ended"
        with pytest.raises(RecordingError, match=r"^not recording$"):
            recorder.stop()  # told once
    finally:
        recorder.close()


def test_recorder_drops_beyond_its_queue_bound_and_the_gap_is_filled(tmp_path: Path) -> None:
    recorder = Recorder(RecorderConfig(tmp_path, max_queue_s=0.1))  # writer not running yet
    accepted = [recorder.push(c) for c in chunks(10)]
    assert accepted == [True] * 5 + [False] * 5
    recorder.open()
    try:
        path = recorder.start(StartRequest(), MONO16, now_ns=T0)
        for c in chunks(5, first=10):
            recorder.push(c)
        recorder.stop()
    finally:
        recorder.close()
    assert wav_frames(path)[1] == ramp(5 * 320, start=10 * 320)  # pre-start audio: no pre-roll
    assert recorder.status.dropped_chunks == 5


def test_close_finishes_the_recording(tmp_path: Path) -> None:
    recorder = Recorder(RecorderConfig(tmp_path)).open()
    path = recorder.start(StartRequest(), MONO16, now_ns=T0)
    for c in chunks(5):
        recorder.push(c)
    recorder.close()
    side = read_sidecar(path.with_suffix(".json"))
    assert side["complete"] and side["end_reason"] == "shutdown" and side["samples"] == 1600


# ------------------------------------------------------------------------------ recovery


CRASH = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    from kos_audio.core import AudioFormat, SampleFormat
    from kos_audio.core.recording import Recorder, RecorderConfig, StartRequest, Chunk, Container
    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    rec = Recorder(RecorderConfig(Path(sys.argv[1]), sync_period_s=0.2)).open()
    path = rec.start(StartRequest(container=Container(sys.argv[2])), fmt, now_ns=10**18)
    data = bytes(range(256)) * 25  # 200 ms
    for i in range(10):
        rec.push(Chunk(data, fmt, 10**18 + i * 200_000_000))
        time.sleep(0.05)
    time.sleep(0.5)  # written and synced; then more that is written but not synced
    rec.push(Chunk(data, fmt, 10**18 + 10 * 200_000_000))
    while rec.status.duration_s < 2.2:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("container", ["wav", "flac"])
def test_recovery_finishes_what_a_killed_writer_left(tmp_path: Path, container: str) -> None:
    out = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path), container],
                         capture_output=True, check=False)
    assert out.returncode == -signal.SIGKILL, out.stderr
    (audio,) = tmp_path.glob(f"*.{container}")
    assert read_sidecar(audio.with_suffix(".json"))["complete"] is False
    if container == "wav":
        assert len(wav_frames(audio)[1]) >= 2 * 16000 * 2  # readable as is, synced part
    lines = recover_incomplete(tmp_path)
    assert len(lines) == 1 and "recovered" in lines[0]
    assert mode_of(audio.with_suffix(".json")) == mode_of(audio) == 0o600
    side = read_sidecar(audio.with_suffix(".json"))
    assert side["complete"] is True and side["end_reason"] == "recovered"
    assert side["sha256"] == hashlib.sha256(audio.read_bytes()).hexdigest()
    data, _ = soundfile.read(audio, dtype="int16")
    assert len(data) == side["samples"]
    expected = np.frombuffer(bytes(range(256)) * 25 * 11, "<i2")
    if container == "wav":
        assert side["samples"] == 11 * 3200  # nothing written before the kill is lost
    else:
        # FLAC: libFLAC keeps the block being filled and up to two encoded 4096-frame blocks
        # in memory; those die with the process.
        assert side["samples"] >= 11 * 3200 - 3 * 4096
    assert np.array_equal(data, expected[: len(data)])
    assert recover_incomplete(tmp_path) == []  # done once


def test_recovery_leaves_a_live_recording_alone(tmp_path: Path) -> None:
    recorder = Recorder(RecorderConfig(tmp_path)).open()
    try:
        path = recorder.start(StartRequest(), MONO16, now_ns=T0)
        for c in chunks(5):
            recorder.push(c)
        assert recover_incomplete(tmp_path) == []  # its flock is held
        assert read_sidecar(path.with_suffix(".json"))["complete"] is False
    finally:
        recorder.close()

