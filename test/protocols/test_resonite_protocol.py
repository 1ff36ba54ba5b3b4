"""Resonite IO wire layer against a real gRPC server on a real Unix socket (no mocks).

Covers the encoding (hand-checked bytes), the three services, the microphone server's buffer
policy (pacing, drop-oldest overflow, half-close drain, cancel clears), status codes surfacing as
``ResoniteIoError.code``, and the socket resolution rules. Runs on grpcio 1.51 / protobuf 4.21
as well as current PyPI (see scripts/test_grpc_matrix.sh).
"""

from __future__ import annotations

import math
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor
from servers.resonite_io_server import (
    RING_CAPACITY_SAMPLES,
    ResoniteIoServer,
    RingBuffer,
    speaker_frame_sizes,
    speaker_signal,
)

from kos_audio.errors import AudioFormatError, BackendError
from kos_audio.protocols.resonite_io import resolve_socket
from kos_audio.protocols.resonite_io.v1 import (
    SCHEMA,
    AudioFrame,
    MicrophoneAudioFrame,
    MicrophoneStreamSummary,
    ResoniteIoClient,
    ResoniteIoError,
    decode_speaker_frame,
    make_microphone_frame,
    microphone_frames,
)

RATE = 48_000
TIMEOUT_S = 5.0
_FIELD_TYPES = {
    "uint64": FieldDescriptor.TYPE_UINT64,
    "int64": FieldDescriptor.TYPE_INT64,
    "uint32": FieldDescriptor.TYPE_UINT32,
    "bytes": FieldDescriptor.TYPE_BYTES,
    "string": FieldDescriptor.TYPE_STRING,
}


def _sine(count: int, freq_hz: float = 440.0) -> np.ndarray:
    k = np.arange(count, dtype=np.float64)
    return (0.3 * np.sin(2.0 * math.pi * freq_hz * k / RATE)).astype(np.float32)


def _blocks(samples: np.ndarray, size: int) -> list[np.ndarray]:
    return [samples[i : i + size] for i in range(0, samples.size, size)]


def _wait(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def _dead_pid() -> int:
    """A pid that certainly names no process: a child that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# ------------------------------------------------------------------------------- encoding


def test_microphone_frame_wire_bytes_are_hand_checked() -> None:
    frame = MicrophoneAudioFrame(
        frame_id=300,
        unix_nanos=1_000_000_000,
        sample_count=2,
        samples=np.array([1.0, -0.5], dtype="<f4").tobytes(),
    )
    expected = bytes.fromhex(
        " ".join(
            [
                "08 ac02",  # field 1 varint: 300 = 0b10_0101100 -> 0xac 0x02
                "10 8094ebdc03",  # field 2 varint: 1e9 = 0x3b9aca00, 7-bit groups low first
                "18 02",  # field 3 varint: 2
                "22 08 0000803f 000000bf",  # field 4, 8 bytes: 1.0f, -0.5f little-endian
            ]
        )
    )
    assert frame.SerializeToString() == expected
    back = MicrophoneAudioFrame.FromString(expected)
    assert (back.frame_id, back.unix_nanos, back.sample_count) == (300, 1_000_000_000, 2)
    # proto3: all-default fields are not on the wire at all.
    assert MicrophoneAudioFrame().SerializeToString() == b""
    # int64 is two's complement varint (10 bytes for -1), not zigzag.
    summary = MicrophoneStreamSummary(unix_nanos=-1)
    assert summary.SerializeToString() == bytes.fromhex("20 ffffffffffffffffff01")


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        (
            "resonite_io.v1.MicrophoneAudioFrame",
            [
                ("frame_id", 1, "uint64"),
                ("unix_nanos", 2, "int64"),
                ("sample_count", 3, "uint32"),
                ("samples", 4, "bytes"),
            ],
        ),
        (
            "resonite_io.v1.MicrophoneStreamSummary",
            [
                ("received_frames", 1, "int64"),
                ("received_samples", 2, "int64"),
                ("dropped_frames", 3, "int64"),
                ("unix_nanos", 4, "int64"),
            ],
        ),
        (
            "resonite_io.v1.AudioFrame",
            [
                ("frame_id", 1, "uint64"),
                ("unix_nanos", 2, "int64"),
                ("sample_count", 3, "uint32"),
                ("samples", 4, "bytes"),
            ],
        ),
        ("resonite_io.v1.SpeakerStreamRequest", []),
        ("resonite_io.v1.PingRequest", [("message", 1, "string")]),
        (
            "resonite_io.v1.PingResponse",
            [("message", 1, "string"), ("server_unix_nanos", 2, "int64")],
        ),
    ],
)
def test_message_schema_matches_the_published_field_list(
    message: str, fields: list[tuple[str, int, str]]
) -> None:
    desc = SCHEMA.pool.FindMessageTypeByName(message)
    got = [(f.name, f.number, f.type) for f in desc.fields]
    assert got == [(name, number, _FIELD_TYPES[kind]) for name, number, kind in fields]


def test_services_have_the_published_streaming_kinds() -> None:
    kinds = {
        (
            m.path,
            m.request.DESCRIPTOR.full_name,
            m.response.DESCRIPTOR.full_name,
            m.client_streaming,
            m.server_streaming,
        )
        for service in ("Microphone", "Speaker", "Connection")
        for m in SCHEMA.methods(f"resonite_io.v1.{service}").values()
    }
    assert kinds == {
        (
            "/resonite_io.v1.Microphone/StreamAudio",
            "resonite_io.v1.MicrophoneAudioFrame",
            "resonite_io.v1.MicrophoneStreamSummary",
            True,
            False,
        ),
        (
            "/resonite_io.v1.Speaker/StreamAudio",
            "resonite_io.v1.SpeakerStreamRequest",
            "resonite_io.v1.AudioFrame",
            False,
            True,
        ),
        (
            "/resonite_io.v1.Connection/Ping",
            "resonite_io.v1.PingRequest",
            "resonite_io.v1.PingResponse",
            False,
            False,
        ),
    }


def test_frame_helpers_check_the_fixed_formats() -> None:
    frames = list(microphone_frames([_sine(3), b"\x00" * 8], paced=False))
    assert [(f.frame_id, f.sample_count) for f in frames] == [(0, 3), (1, 2)]
    with pytest.raises(AudioFormatError):
        make_microphone_frame(0, b"\x00" * 6)  # not whole float32 samples
    with pytest.raises(AudioFormatError):
        make_microphone_frame(0, np.zeros((4, 2), dtype=np.float32))  # stereo is not mono
    stereo = np.arange(8, dtype=np.float32).reshape(4, 2)
    frame = AudioFrame(frame_id=0, sample_count=4, samples=stereo.tobytes())
    np.testing.assert_array_equal(decode_speaker_frame(frame), stereo)
    frame.sample_count = 8  # per channel, not per interleaved value
    with pytest.raises(AudioFormatError):
        decode_speaker_frame(frame)


def test_ring_buffer_drops_the_oldest_and_wraps() -> None:
    ring = RingBuffer(5)
    assert ring.push(np.arange(3, dtype=np.float32)) == 0
    np.testing.assert_array_equal(ring.pop(2), [0, 1])
    assert ring.push(np.arange(3, 7, dtype=np.float32)) == 0  # wraps around the end
    np.testing.assert_array_equal(ring.peek(), [2, 3, 4, 5, 6])
    assert ring.push(np.array([7], dtype=np.float32)) == 1  # 2 is dropped
    np.testing.assert_array_equal(ring.peek(), [3, 4, 5, 6, 7])
    assert ring.push(np.arange(10, 22, dtype=np.float32)) == 12  # 5 old + 7 too-old new
    np.testing.assert_array_equal(ring.pop(10), [17, 18, 19, 20, 21])
    assert len(ring) == 0 and ring.clear() == 0


# ---------------------------------------------------------------------------- connection


def test_ping_echoes_with_server_time(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    before = time.time_ns()
    response = resonite_client.ping("hello robot")
    after = time.time_ns()
    assert response.message == "hello robot"
    assert before <= response.server_unix_nanos <= after
    assert resonite_server.pings() == ["hello robot"]
    assert resonite_client.socket_path == resonite_server.socket_path


# ---------------------------------------------------------------------------- microphone


def test_paced_one_second_stream_arrives_contiguous_and_exact(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    sent = _sine(RATE)
    started = time.monotonic()
    call = resonite_client.stream_microphone(microphone_frames(_blocks(sent, 480)))
    summary = call.result(timeout=TIMEOUT_S)
    elapsed = time.monotonic() - started

    assert (summary.received_frames, summary.received_samples, summary.dropped_frames) == (
        100,
        RATE,
        0,
    )
    assert call.done() and call.code() == "OK"
    # Paced: 1 s of audio takes about 1 s to send (lead 50 ms), not a burst.
    assert elapsed >= 0.9
    (record,) = resonite_server.microphone_streams()
    assert record.outcome == "completed"
    assert record.frame_ids == list(range(100))
    assert record.sample_count_fields == [480] * 100
    assert record.byte_lengths == [480 * 4] * 100
    assert record.unix_nanos == sorted(record.unix_nanos)
    assert record.dropped_samples == 0
    np.testing.assert_array_equal(record.samples(), sent)
    # Half-close: the server plays out what it buffered, then exactly what was sent.
    assert resonite_server.wait_drained(TIMEOUT_S)
    np.testing.assert_array_equal(resonite_server.played_samples(), sent)
    chunks = resonite_server.played_chunks()
    assert max(c.samples.size for c in chunks) <= 480
    span_s = (chunks[-1].monotonic_ns - chunks[0].monotonic_ns) / 1e9
    assert span_s >= 0.9  # played in real time, 480 samples per 10 ms tick at most


def test_half_close_keeps_playing_the_buffer(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    sent = _sine(RATE // 2, 1000.0)  # 0.5 s, un-paced: all of it lands in the buffer
    call = resonite_client.stream_microphone(microphone_frames(_blocks(sent, 960), paced=False))
    summary = call.result(timeout=TIMEOUT_S)
    assert summary.received_samples == sent.size
    assert resonite_server.buffered_samples > 0  # the summary came before playback ended
    assert resonite_server.wait_drained(TIMEOUT_S)
    np.testing.assert_array_equal(resonite_server.played_samples(), sent)


def test_unpaced_three_seconds_overflow_drops_the_oldest(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    """3 s sent as fast as possible into the 2 s ring buffer.

    Each sample's value is its index, so what was played or is still buffered tells exactly
    which samples survived. Measured on the 2-core dev machine (grpcio 1.51 and 1.85 alike):
    the 300 frames of 480 arrive in 40-80 ms; 44,000-46,600 of the 144,000 samples are dropped
    (all of them older than every sample played after them); the engine played 3,800-6,200
    samples by the time the summary came (50 ms after the half-close), and the ring then held
    the newest 93,600 (96,000 minus the five ticks of the grace).
    """
    total = 3 * RATE
    sent = np.arange(total, dtype=np.float32)  # exact in float32 below 2**24
    call = resonite_client.stream_microphone(microphone_frames(_blocks(sent, 480), paced=False))
    summary = call.result(timeout=TIMEOUT_S)
    played, buffered = resonite_server.audio_snapshot()
    (record,) = resonite_server.microphone_streams()

    # Never back-pressure: everything was accepted and counted; dropped_frames stays 0.
    assert (summary.received_frames, summary.received_samples) == (300, total)
    assert summary.dropped_frames == 0
    assert record.frame_ids == list(range(300))
    dropped = record.dropped_samples
    assert dropped > 0
    survived = np.concatenate((played, buffered))
    assert survived.size + dropped == total  # nothing duplicated, nothing else lost
    assert np.all(np.diff(survived) > 0)  # order kept
    # Drop-oldest: the newest 96,000 samples (the ring's capacity) all survive.
    np.testing.assert_array_equal(survived[-RING_CAPACITY_SAMPLES:], sent[-RING_CAPACITY_SAMPLES:])
    assert survived[-1] == total - 1
    assert dropped >= total - RING_CAPACITY_SAMPLES - played.size


def test_cancel_clears_the_buffer(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    release = threading.Event()
    n = RATE * 3 // 2  # 1.5 s: fits the 2 s ring, still buffered when the cancel comes

    def frames() -> Iterator[MicrophoneAudioFrame]:
        yield from microphone_frames(_blocks(_sine(n), 480), paced=False)
        release.wait(TIMEOUT_S)  # keep the stream open until the test is done

    call = resonite_client.stream_microphone(frames())
    try:
        _wait(lambda: [r.received_samples for r in resonite_server.microphone_streams()] == [n])
        assert resonite_server.buffered_samples > 0
        assert call.cancel()
        assert resonite_server.wait_microphone_outcome(0, TIMEOUT_S) == "cancelled"
        assert resonite_server.buffered_samples == 0
        (record,) = resonite_server.microphone_streams()
        assert record.cleared_samples > 0
        played_at_cancel = resonite_server.played_samples().size
        time.sleep(0.05)  # five engine ticks: nothing more may play
        assert resonite_server.played_samples().size == played_at_cancel
        with pytest.raises(ResoniteIoError) as info:
            call.result(timeout=TIMEOUT_S)
        assert info.value.code == "CANCELLED"
        assert call.cancelled()
    finally:
        release.set()


def test_frames_are_numbered_from_zero_for_each_stream(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    for _ in range(2):
        blocks = _blocks(_sine(4800), 1000)  # uneven last block of 800
        resonite_client.stream_microphone(microphone_frames(blocks, paced=False)).result(
            timeout=TIMEOUT_S
        )
    first, second = resonite_server.microphone_streams()
    assert first.frame_ids == second.frame_ids == [0, 1, 2, 3, 4]
    assert second.sample_count_fields == [1000, 1000, 1000, 1000, 800]


def test_server_trusts_byte_length_not_sample_count(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    frame = make_microphone_frame(0, _sine(100))
    frame.sample_count = 7  # a lying field
    summary = resonite_client.stream_microphone(iter([frame])).result(timeout=TIMEOUT_S)
    assert summary.received_samples == 100


# ------------------------------------------------------------------------------- speaker


def test_speaker_stream_yields_the_known_signal_intact(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    stream = resonite_client.stream_speaker()
    started = time.monotonic()
    frames = []
    total = 0
    for frame in stream:
        frames.append(frame)
        total += frame.sample_count
        if total >= RATE * 3 // 10:  # 0.3 s
            break
    elapsed = time.monotonic() - started
    assert stream.cancel()
    assert list(stream) == []  # after our own cancel the iteration just ends

    assert [f.frame_id for f in frames] == list(range(len(frames)))
    sizes = [f.sample_count for f in frames]
    expected_sizes = speaker_frame_sizes()
    assert sizes == [next(expected_sizes) for _ in sizes]
    assert all(1024 <= n <= 4096 for n in sizes)
    stereo = np.concatenate([decode_speaker_frame(f) for f in frames])
    np.testing.assert_array_equal(stereo, speaker_signal(0, total))
    assert [f.unix_nanos for f in frames] == sorted(f.unix_nanos for f in frames)
    assert elapsed >= total / RATE - 0.02  # paced to real time, not a burst
    _wait(lambda: resonite_server.speaker_streams()[0].outcome == "cancelled")


def test_speaker_abort_mid_stream_raises_with_code(
    make_resonite_server: Callable[..., ResoniteIoServer],
) -> None:
    server = make_resonite_server(speaker_paced=False)
    server.abort_speaker_after(3, grpc.StatusCode.INTERNAL)
    with ResoniteIoClient(str(server.socket_path), timeout_s=TIMEOUT_S) as client:
        stream = client.stream_speaker()
        got = []
        with pytest.raises(ResoniteIoError) as info:
            for frame in stream:
                got.append(frame.frame_id)
        assert got == [0, 1, 2]
        assert info.value.code == "INTERNAL"
        assert not info.value.retryable
        assert stream.code() == "INTERNAL"


# -------------------------------------------------------------------------------- errors


def test_failed_precondition_surfaces_with_its_code(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    resonite_server.fail_next(2)
    with pytest.raises(ResoniteIoError) as info:
        resonite_client.ping("early")
    err = info.value
    assert isinstance(err, BackendError)
    assert err.code == "FAILED_PRECONDITION" and err.retryable
    assert "FAILED_PRECONDITION" in str(err)
    assert isinstance(err.__cause__, grpc.RpcError)

    call = resonite_client.stream_microphone(microphone_frames([_sine(480)], paced=False))
    with pytest.raises(ResoniteIoError) as info:
        call.result(timeout=TIMEOUT_S)
    assert info.value.code == "FAILED_PRECONDITION"
    # The injected fault is used up: the retry succeeds.
    assert resonite_client.ping("retry").message == "retry"


def test_microphone_abort_mid_stream_raises_with_code(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    resonite_server.abort_microphone_after(5, grpc.StatusCode.UNAVAILABLE, "engine reloading")
    blocks = _blocks(_sine(RATE // 2), 480)
    call = resonite_client.stream_microphone(microphone_frames(blocks, paced=False))
    with pytest.raises(ResoniteIoError) as info:
        call.result(timeout=TIMEOUT_S)
    assert info.value.code == "UNAVAILABLE" and info.value.retryable
    assert info.value.details == "engine reloading"
    assert resonite_server.microphone_streams()[0].outcome == "aborted"
    assert resonite_server.buffered_samples == 0


def test_no_server_is_unavailable(resonite_socket_dir: Path) -> None:
    missing = resonite_socket_dir / "resonite-1.sock"
    with (
        ResoniteIoClient(str(missing), timeout_s=TIMEOUT_S) as client,
        pytest.raises(ResoniteIoError) as info,
    ):
        client.ping()
    assert info.value.code == "UNAVAILABLE" and info.value.retryable
    assert str(missing) in str(info.value)


def test_removed_socket_file_and_restart(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    assert resonite_client.ping("up").message == "up"
    resonite_server.remove_socket_file()
    # A new connection cannot find the server any more.
    with ResoniteIoClient(str(resonite_server.socket_path), timeout_s=TIMEOUT_S) as other:
        with pytest.raises(ResoniteIoError) as info:
            other.ping()
        assert info.value.code == "UNAVAILABLE"
    resonite_server.restart()
    assert resonite_server.socket_path.exists()
    # Close-and-retry reconnects at once (a kept channel would wait out its reconnect backoff).
    resonite_client.close()
    assert resonite_client.ping("again").message == "again"


def test_stop_fails_open_streams_and_calls(
    resonite_server: ResoniteIoServer, resonite_client: ResoniteIoClient
) -> None:
    stream = resonite_client.stream_speaker()
    next(stream)
    resonite_server.stop()
    with pytest.raises(ResoniteIoError) as info:
        for _ in stream:
            pass
    assert info.value.code in {"UNAVAILABLE", "CANCELLED"}
    with pytest.raises(ResoniteIoError) as info:
        resonite_client.ping()
    assert info.value.code == "UNAVAILABLE"


# ----------------------------------------------------------------------- socket resolution


def _touch_socket_name(directory: Path, pid: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"resonite-{pid}.sock"
    path.touch()
    return path


def test_resolve_explicit_path_wins(tmp_path: Path) -> None:
    env = {"RESONITE_IO_SOCKET": str(tmp_path / "from-env.sock"), "RESONITE_IO_SOCKET_DIR": "/x"}
    assert resolve_socket(str(tmp_path / "mine.sock"), environ=env) == tmp_path / "mine.sock"


def test_resolve_env_socket_beats_directory_search(tmp_path: Path) -> None:
    _touch_socket_name(tmp_path, os.getpid())
    env = {
        "RESONITE_IO_SOCKET": str(tmp_path / "chosen.sock"),
        "RESONITE_IO_SOCKET_DIR": str(tmp_path),
    }
    assert resolve_socket(environ=env) == tmp_path / "chosen.sock"


def test_resolve_directory_glob_skips_dead_pids(tmp_path: Path) -> None:
    live = _touch_socket_name(tmp_path, os.getpid())
    _touch_socket_name(tmp_path, _dead_pid())
    (tmp_path / "other.sock").touch()  # not matching resonite-*.sock
    env = {"RESONITE_IO_SOCKET_DIR": str(tmp_path), "HOME": str(tmp_path / "nohome")}
    assert resolve_socket(environ=env) == live


def test_resolve_falls_back_to_home_directory(tmp_path: Path) -> None:
    live = _touch_socket_name(tmp_path / ".resonite-io", os.getpid())
    assert resolve_socket(environ={"HOME": str(tmp_path)}) == live


def test_resolve_ambiguous_names_the_variable_and_candidates(tmp_path: Path) -> None:
    first = _touch_socket_name(tmp_path, os.getpid())
    second = _touch_socket_name(tmp_path, os.getppid())  # the parent is alive too
    with pytest.raises(BackendError) as info:
        resolve_socket(environ={"RESONITE_IO_SOCKET_DIR": str(tmp_path)})
    message = str(info.value)
    assert "RESONITE_IO_SOCKET" in message
    assert str(first) in message and str(second) in message


def test_resolve_none_found_names_the_variable(tmp_path: Path) -> None:
    _touch_socket_name(tmp_path, _dead_pid())  # stale socket of a crashed Resonite
    with pytest.raises(BackendError, match="RESONITE_IO_SOCKET"):
        resolve_socket(environ={"RESONITE_IO_SOCKET_DIR": str(tmp_path)})
    with pytest.raises(BackendError, match="RESONITE_IO_SOCKET"):
        resolve_socket(environ={"HOME": str(tmp_path / "empty-home")})


def test_client_resolves_at_connect_time(
    resonite_socket_dir: Path, make_resonite_server: Callable[..., ResoniteIoServer]
) -> None:
    env = {"RESONITE_IO_SOCKET_DIR": str(resonite_socket_dir)}
    client = ResoniteIoClient(timeout_s=TIMEOUT_S, environ=env)  # nothing to find yet: fine
    with client:
        with pytest.raises(BackendError, match="RESONITE_IO_SOCKET"):
            client.ping()
        first = make_resonite_server()
        assert client.ping("one").message == "one"
        assert client.socket_path == first.socket_path
        # "Resonite restarts" under another pid: close-and-retry finds the new socket.
        first.stop()
        second = make_resonite_server(pid=os.getppid())
        client.close()
        assert client.ping("two").message == "two"
        assert client.socket_path == second.socket_path != first.socket_path
