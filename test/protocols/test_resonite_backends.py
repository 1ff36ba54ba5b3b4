"""The Resonite IO source and sink against the real test gRPC server on a Unix socket, no ROS.

The sink runs under the real playback engine and loop (kos_audio.core), the source is read
like the capture loop reads it. Skipped where the audio core's soxr is missing (the old
grpcio venv of scripts/test_grpc_matrix.sh).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

soxr = pytest.importorskip("soxr")

import grpc  # noqa: E402
from servers.resonite_io_server import ResoniteIoServer, speaker_signal  # noqa: E402

from kos_audio.backends.resonite_sink import MICROPHONE_FORMAT, ResoniteMicSink  # noqa: E402
from kos_audio.backends.resonite_source import (  # noqa: E402
    SPEAKER_FORMAT,
    ResoniteSpeakerSource,
)
from kos_audio.core import (  # noqa: E402
    AudioFormat,
    Backoff,
    CapturedBlock,
    PlaybackEngine,
    PlaybackLoop,
    SampleFormat,
    SinkState,
)
from kos_audio.errors import BackendError  # noqa: E402

RATE = 48_000
TTS = AudioFormat(16000, 1, SampleFormat.S16LE)
TIMEOUT_S = 10.0


# -- signals -------------------------------------------------------------------------------
def speech_like(seconds: float, rate: int = 16000) -> np.ndarray:
    """A deterministic, non-periodic test utterance: a chirp under a syllable-rate envelope."""
    t = np.arange(round(seconds * rate)) / rate
    envelope = 0.35 + 0.25 * np.sin(2 * np.pi * 3.3 * t)
    return (envelope * np.sin(2 * np.pi * (200 * t + 180 * t * t))).astype(np.float32)


def s16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


def best_correlation(received: np.ndarray, reference: np.ndarray) -> float:
    """Normalised correlation of ``received`` with ``reference`` at the best small lag."""
    n = min(len(received), len(reference)) - 400
    assert n > RATE // 2, f"only {len(received)} samples received"
    best = 0.0
    for lag in range(-200, 201):
        a = received[200 + lag : 200 + lag + n]
        b = reference[200 : 200 + n]
        best = max(best, float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))))
    return best


def wait(condition: Callable[[], object], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.005)


@contextlib.contextmanager
def live_pid() -> Iterator[int]:
    """A pid other than ours that stays alive: a sleeping child."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


# -- the sink under the real engine and playback loop --------------------------------------
class SinkRig:
    """A ResoniteMicSink run by the real PlaybackEngine + PlaybackLoop, events recorded."""

    def __init__(self, sink: ResoniteMicSink) -> None:
        self.sink = sink
        self.events: list[tuple[str, str]] = []
        sink.on_event = self._event
        self.engine = PlaybackEngine(AudioFormat(48000, 2, SampleFormat.F32LE))
        self.loop = PlaybackLoop(sink, self.engine, on_event=self._event,
                                 backoff=Backoff(initial_s=0.1, max_s=0.5))
        self._lock = threading.Lock()

    def _event(self, kind: str, message: str) -> None:
        with self._lock:
            self.events.append((kind, message))

    def messages(self, kind: str) -> list[str]:
        with self._lock:
            return [m for k, m in self.events if k == kind]

    def start(self) -> SinkRig:
        self.loop.start()
        wait(lambda: self.loop.state is SinkState.RUNNING, "the sink opened")
        return self

    def say(self, clip: np.ndarray, *, chunk_s: float = 0.02, real_time: bool = False) -> None:
        """Enqueue ``clip`` (16 kHz) in chunks, at once or paced like a real-time producer."""
        data = s16(clip)
        step = round(chunk_s * TTS.sample_rate_hz) * TTS.frame_bytes
        start = time.monotonic()
        for k, i in enumerate(range(0, len(data), step)):
            if real_time:
                time.sleep(max(0.0, start + k * chunk_s - time.monotonic()))
            self.engine.enqueue(data[i : i + step], TTS, now_ns=time.time_ns(),
                                receive_mono=time.monotonic())

    def stop(self) -> None:
        self.loop.stop()


@pytest.fixture
def rig_factory() -> Iterator[Callable[..., SinkRig]]:
    rigs: list[SinkRig] = []

    def make(**kwargs: object) -> SinkRig:
        rig = SinkRig(ResoniteMicSink(**kwargs))  # type: ignore[arg-type]
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.stop()


def watch_buffer(server: ResoniteIoServer, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], server.buffered_samples)
        time.sleep(0.002)


# -- sink ----------------------------------------------------------------------------------
def test_sink_streams_a_tts_clip_paced_as_48k_mono_float(
        resonite_server: ResoniteIoServer, rig_factory: Callable[..., SinkRig]) -> None:
    rig = rig_factory(socket=str(resonite_server.socket_path)).start()
    assert rig.sink.format == MICROPHONE_FORMAT == AudioFormat(48000, 1, SampleFormat.F32LE)
    clip = speech_like(2.6)  # longer than Resonite's 2 s buffer: an unpaced sender drops
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=watch_buffer, args=(resonite_server, stop, peak))
    watcher.start()
    try:
        rig.say(clip)  # all at once, as a TTS publishing a sentence does
        assert resonite_server.wait_microphone_outcome(0, TIMEOUT_S) == "completed"
    finally:
        stop.set()
        watcher.join()
    record = resonite_server.microphone_streams()[0]
    assert record.frame_ids == list(range(len(record.frame_ids)))
    assert record.sample_count_fields == [n // 4 for n in record.byte_lengths]
    # 20 ms frames (the last one of the utterance may be shorter).
    assert set(record.byte_lengths[:-1]) == {960 * 4}
    assert 0 < record.byte_lengths[-1] <= 960 * 4
    assert all(abs(u - time.time_ns()) < 60 * 10**9 for u in record.unix_nanos)
    assert resonite_server.ring_dropped_samples == 0
    # Paced with a 100 ms lead: Resonite never held much more than that (2 s would overflow).
    assert peak[0] < 0.5 * RATE
    received_s = (record.received_monotonic_ns[-1] - record.received_monotonic_ns[0]) / 1e9
    assert received_s > 2.0  # sent over real time, not in a burst
    reference = soxr.resample(clip, 16000, RATE, "HQ")
    assert best_correlation(record.samples(), reference) > 0.99
    assert abs(record.received_samples - len(reference)) < 0.03 * RATE
    wait(lambda: rig.messages("summary"), "the summary was reported")
    summary = rig.messages("summary")[0]
    assert f"sent {len(record.frame_ids)} frames, {record.received_samples} samples" in summary
    assert f"received {len(record.frame_ids)} frames" in summary
    assert (rig.sink.summaries, rig.sink.summary_mismatches, rig.sink.streams) == (1, 0, 1)
    assert rig.sink.frames_sent == len(record.frame_ids)
    assert rig.sink.samples_sent == record.received_samples


def test_sink_holds_a_real_time_producer_until_the_lead_is_buffered(
        resonite_server: ResoniteIoServer, rig_factory: Callable[..., SinkRig]) -> None:
    rig = rig_factory(socket=str(resonite_server.socket_path), lead_ms=100.0).start()
    clip = speech_like(1.0)
    rig.say(clip, real_time=True)
    assert resonite_server.wait_microphone_outcome(0, TIMEOUT_S) == "completed"
    record = resonite_server.microphone_streams()[0]
    assert len(resonite_server.microphone_streams()) == 1  # one utterance, one call
    assert record.frame_ids == list(range(len(record.frame_ids)))
    # The first send carried about the lead at once (several frames within a few ms).
    first = record.received_monotonic_ns[0]
    burst = sum(1 for t in record.received_monotonic_ns if t - first < 15_000_000)
    assert burst >= 3
    assert max(record.byte_lengths) <= 960 * 4
    reference = soxr.resample(clip, 16000, RATE, "HQ")
    assert best_correlation(record.samples(), reference) > 0.99
    assert resonite_server.ring_dropped_samples == 0


def test_interrupt_cancels_the_call_and_resonite_drops_its_buffer(
        resonite_server: ResoniteIoServer, rig_factory: Callable[..., SinkRig]) -> None:
    rig = rig_factory(socket=str(resonite_server.socket_path)).start()
    rig.say(speech_like(3.0))
    wait(lambda: resonite_server.microphone_streams()
         and resonite_server.microphone_streams()[0].received_samples > 0.5 * RATE,
         "half a second streamed")
    rig.loop.interrupt(time.time_ns())
    assert resonite_server.wait_microphone_outcome(0, TIMEOUT_S) == "cancelled"
    record = resonite_server.microphone_streams()[0]
    assert record.received_samples < 1.5 * RATE  # the rest of the 3 s was never sent
    played_at_cancel = len(resonite_server.played_samples())
    time.sleep(0.5)
    # Nothing more of the utterance plays, and its fade-out did not open a stream.
    assert len(resonite_server.played_samples()) == played_at_cancel
    assert len(resonite_server.microphone_streams()) == 1
    assert rig.sink.interrupted_streams == 1
    # The sink goes on: the next utterance is a new call, complete.
    rig.engine.fence_s = 0.0
    rig.say(speech_like(0.5))
    assert resonite_server.wait_microphone_outcome(1, TIMEOUT_S) == "completed"
    assert resonite_server.microphone_streams()[1].frame_ids[0] == 0
    assert rig.sink.summary_mismatches == 0


@pytest.mark.parametrize("code", [grpc.StatusCode.FAILED_PRECONDITION,
                                  grpc.StatusCode.UNAVAILABLE])
def test_a_failing_stream_is_retried_with_back_off(
        resonite_server: ResoniteIoServer, rig_factory: Callable[..., SinkRig],
        code: grpc.StatusCode) -> None:
    rig = rig_factory(socket=str(resonite_server.socket_path)).start()
    resonite_server.fail_next(1, code)
    rig.say(speech_like(1.5))
    wait(lambda: any(r.outcome == "completed" for r in resonite_server.microphone_streams()),
         "a later stream completed")
    records = resonite_server.microphone_streams()
    assert records[0].outcome == "failed"
    assert any(code.name in m and "reopening" in m for m in rig.messages("error"))
    assert rig.loop.failures >= 1 and rig.sink.failed_streams >= 1
    done = next(r for r in records if r.outcome == "completed")
    assert done.frame_ids == list(range(len(done.frame_ids)))
    assert done.received_samples > 0.5 * RATE  # the rest of the utterance did play


def test_a_stream_aborted_by_resonite_reconnects(
        resonite_server: ResoniteIoServer, rig_factory: Callable[..., SinkRig]) -> None:
    rig = rig_factory(socket=str(resonite_server.socket_path)).start()
    resonite_server.abort_microphone_after(10, grpc.StatusCode.INTERNAL)
    rig.say(speech_like(1.5))
    wait(lambda: any(r.outcome == "completed" for r in resonite_server.microphone_streams()),
         "a later stream completed")
    assert resonite_server.microphone_streams()[0].outcome == "aborted"
    assert any("INTERNAL" in m for m in rig.messages("error"))


def test_socket_replaced_while_idle_is_resolved_again(
        resonite_socket_dir: Path, make_resonite_server: Callable[..., ResoniteIoServer],
        rig_factory: Callable[..., SinkRig]) -> None:
    first = make_resonite_server()
    rig = rig_factory(environ={"RESONITE_IO_SOCKET_DIR": str(resonite_socket_dir)}).start()
    rig.say(speech_like(0.3))
    assert first.wait_microphone_outcome(0, TIMEOUT_S) == "completed"
    first.stop()  # Resonite quits: its socket goes
    with live_pid() as pid:
        second = make_resonite_server(pid=pid)  # ... and comes back with another pid
        assert second.socket_path != first.socket_path
        wait(lambda: any("vanished" in m for m in rig.messages("error")), "socket loss noticed")
        wait(second.pings, "reconnected to the new socket")
        rig.say(speech_like(0.3))
        assert second.wait_microphone_outcome(0, TIMEOUT_S) == "completed"
        assert str(second.socket_path) in rig.sink.describe()


def test_open_without_a_socket_names_resonite_io_socket(resonite_socket_dir: Path) -> None:
    sink = ResoniteMicSink(environ={"RESONITE_IO_SOCKET_DIR": str(resonite_socket_dir)})
    with pytest.raises(BackendError, match="RESONITE_IO_SOCKET"):
        sink.open()
    missing = ResoniteMicSink(socket=str(resonite_socket_dir / "resonite-1.sock"),
                              timeout_s=2.0)
    with pytest.raises(BackendError, match="UNAVAILABLE"):
        missing.open()


def test_open_with_several_sockets_names_resonite_io_socket(
        resonite_socket_dir: Path, make_resonite_server: Callable[..., ResoniteIoServer]
) -> None:
    make_resonite_server()
    with live_pid() as pid:
        make_resonite_server(pid=pid)
        sink = ResoniteMicSink(environ={"RESONITE_IO_SOCKET_DIR": str(resonite_socket_dir)})
        with pytest.raises(BackendError, match=r"2 live Resonite IO sockets.*RESONITE_IO_SOCKET"):
            sink.open()


# -- source --------------------------------------------------------------------------------
def read_blocks(source: ResoniteSpeakerSource, frames: int, timeout_s: float = TIMEOUT_S
                ) -> list[CapturedBlock]:
    blocks: list[CapturedBlock] = []
    deadline = time.monotonic() + timeout_s
    got = 0
    while got < frames:
        assert time.monotonic() < deadline, f"read {got} of {frames} frames"
        block = source.read(0.25)
        if block is not None:
            blocks.append(block)
            got += len(block.data) // SPEAKER_FORMAT.frame_bytes
    return blocks


def test_source_delivers_the_speaker_signal_bit_exact(
        resonite_server: ResoniteIoServer) -> None:
    source = ResoniteSpeakerSource(socket=str(resonite_server.socket_path))
    assert source.format == AudioFormat(48000, 2, SampleFormat.F32LE)
    source.open()
    try:
        blocks = read_blocks(source, RATE // 2)
    finally:
        source.close()
    data = np.frombuffer(b"".join(b.data for b in blocks), "<f4").reshape(-1, 2)
    assert np.array_equal(data, speaker_signal(0, len(data)))
    sizes = {len(b.data) // 8 for b in blocks}
    assert len(sizes) > 1 and all(1024 <= s <= 4096 for s in sizes)  # variable frames
    # Capture time = the frame's unix_nanos (when its mix was done) minus its duration, so
    # consecutive blocks are one duration apart up to the server's timing jitter.
    for a, b in itertools.pairwise(blocks):
        duration_ns = len(a.data) // 8 * 10**9 // RATE
        assert a.capture_time_ns is not None and b.capture_time_ns is not None
        assert abs(b.capture_time_ns - a.capture_time_ns - duration_ns) < 50_000_000
    assert not any(b.discontinuity for b in blocks)
    assert (source.frames, source.lost_frames, source.invalid_frames) == (len(blocks), 0, 0)
    assert 0 < source.input_latency_s < 1.0


def test_source_reports_a_broken_stream_and_reopens(resonite_server: ResoniteIoServer) -> None:
    source = ResoniteSpeakerSource(socket=str(resonite_server.socket_path))
    resonite_server.abort_speaker_after(3, grpc.StatusCode.UNAVAILABLE)
    source.open()
    try:
        with pytest.raises(BackendError, match="UNAVAILABLE"):
            for _ in range(50):
                source.read(0.5)
        source.open()  # what the capture loop does after its back-off
        blocks = read_blocks(source, 4096)
        data = np.frombuffer(b"".join(b.data for b in blocks), "<f4").reshape(-1, 2)
        assert np.array_equal(data, speaker_signal(0, len(data)))  # a new stream, from 0
        assert source.streams == 2
    finally:
        source.close()


def test_source_close_unblocks_a_pending_read(resonite_socket_dir: Path) -> None:
    # A peer that accepts the connection and never answers: the stream stays open and the
    # read waits for frames that do not come, until close() ends the wait.
    path = resonite_socket_dir / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(path))
        silent.listen(1)
        source = ResoniteSpeakerSource(socket=str(path))
        source.open()
        results: list[object] = []
        reader = threading.Thread(target=lambda: results.append(source.read(4.0)))
        reader.start()
        time.sleep(0.3)
        assert reader.is_alive()  # really waiting
        started = time.monotonic()
        source.close()
        reader.join(4.0)
        assert time.monotonic() - started < 1.0
        assert results == [None]


def test_source_without_a_socket_names_resonite_io_socket(resonite_socket_dir: Path) -> None:
    source = ResoniteSpeakerSource(environ={"RESONITE_IO_SOCKET_DIR": str(resonite_socket_dir),
                                            "HOME": str(resonite_socket_dir)})
    with pytest.raises(BackendError, match="RESONITE_IO_SOCKET"):
        source.open()
    source.close()
    # The env var beats the directory search.
    source = ResoniteSpeakerSource(environ={"RESONITE_IO_SOCKET": "/nonexistent/r.sock"})
    source.open()
    try:
        with pytest.raises(BackendError, match="UNAVAILABLE"):
            for _ in range(40):
                source.read(0.25)
    finally:
        source.close()
    assert "/nonexistent/r.sock" in source.describe()


def test_frame_size_follows_block_ms_within_10_to_20_ms() -> None:
    sink = ResoniteMicSink(block_ms=5.0)
    assert sink.frame_samples == 480  # clamped to 10 ms
    assert ResoniteMicSink(block_ms=50.0).frame_samples == 960  # clamped to 20 ms
    assert math.isclose(ResoniteMicSink().lead_s, 0.1)
    with pytest.raises(BackendError):
        ResoniteMicSink(lead_ms=5000.0)
