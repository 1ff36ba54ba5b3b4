"""The KOS sound wire layer against a real gRPC server on loopback (no mocks, no ROS)."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from servers.kos_sound_server import Capabilities, KosSoundServer, record_signal

from kos_audio.errors import BackendError
from kos_audio.protocols import _runtime
from kos_audio.protocols.kos import (
    SCHEMA,
    SOUND_METHODS,
    ActionResponse,
    AudioCapabilities,
    AudioConfig,
    Empty,
    Error,
    ErrorCode,
    GetAudioInfoResponse,
    KosSoundClient,
    PlayAudioRequest,
    RecordAudioRequest,
    RecordAudioResponse,
)

REPO = Path(__file__).resolve().parents[2]
KOS_PROTO_DIR = REPO / "kos_audio" / "protocols" / "kos"
WAIT_S = 5.0  # upper bound for anything that should take milliseconds

MONO16 = AudioConfig(sample_rate=16_000, bit_depth=16, channels=1)


# ---------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("message", "hex_bytes"),
    [
        # field 1 varint 16000 (80 7d), field 2 varint 16, field 3 varint 1
        (AudioConfig(sample_rate=16_000, bit_depth=16, channels=1), "08807d10101801"),
        # field 1 = 7-byte AudioConfig, field 2 = 2 bytes
        (PlayAudioRequest(config=MONO16, audio_data=b"\x01\x02"), "0a0708807d1010180112020102"),
        # audio only: config absent (not an empty config)
        (PlayAudioRequest(audio_data=b"\xff"), "1201ff"),
        # 48000 = 80 f7 02, duration 1000 = e8 07
        (
            RecordAudioRequest(
                config=AudioConfig(sample_rate=48_000, bit_depth=32, channels=2), duration_ms=1000
            ),
            "0a080880f7021020180210e807",
        ),
        (RecordAudioResponse(audio_data=b"\x00\xff"), "0a0200ff"),
        # success=false is the default and not sent; Error{code 3, message "x"}
        (
            ActionResponse(error=Error(code=ErrorCode.HARDWARE_FAILURE, message="x")),
            "12050803120178",
        ),
        # repeated uint32 are packed in proto3
        (
            GetAudioInfoResponse(
                playback=AudioCapabilities(
                    sample_rates=[16_000, 48_000], bit_depths=[16], channels=[1, 2], available=True
                )
            ),
            "0a100a05807d80f7021201101a0201022001",
        ),
        (Empty(), ""),
    ],
)
def test_wire_bytes_match_hand_encoding(message: object, hex_bytes: str) -> None:
    assert message.SerializeToString() == bytes.fromhex(hex_bytes)  # type: ignore[attr-defined]
    decoded = type(message).FromString(bytes.fromhex(hex_bytes))  # type: ignore[attr-defined]
    assert decoded == message


def test_decoder_accepts_unpacked_repeated_and_unknown_fields() -> None:
    # A conforming peer may send repeated scalars unpacked, and newer fields we do not know.
    raw = bytes.fromhex("08807d0880f702" + "2001" + "f80101")
    caps = AudioCapabilities.FromString(raw)
    assert list(caps.sample_rates) == [16_000, 48_000]
    assert caps.available is True


def test_config_presence_is_tracked() -> None:
    assert not PlayAudioRequest(audio_data=b"x").HasField("config")
    assert PlayAudioRequest(config=AudioConfig()).HasField("config")
    assert PlayAudioRequest(config=AudioConfig()).SerializeToString() == bytes.fromhex("0a00")


def test_error_code_enum_matches_proto() -> None:
    assert SCHEMA.enum_values("kos.common.ErrorCode") == {e.name: e.value for e in ErrorCode}


def test_method_table() -> None:
    kinds = {
        name: (info.path, info.client_streaming, info.server_streaming)
        for name, info in SOUND_METHODS.items()
    }
    assert kinds == {
        "GetAudioInfo": ("/kos.sound.SoundService/GetAudioInfo", False, False),
        "PlayAudio": ("/kos.sound.SoundService/PlayAudio", True, False),
        "RecordAudio": ("/kos.sound.SoundService/RecordAudio", False, True),
        "StopRecording": ("/kos.sound.SoundService/StopRecording", False, False),
    }
    assert SOUND_METHODS["PlayAudio"].request is PlayAudioRequest
    assert SOUND_METHODS["GetAudioInfo"].request is Empty


def _declared_fields() -> dict[str, set[str]]:
    """Class name -> annotated attributes in the TYPE_CHECKING block of messages.py."""
    tree = ast.parse((KOS_PROTO_DIR / "messages.py").read_text(encoding="utf-8"))
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for item in node.body:
                if isinstance(item, ast.ClassDef):
                    out[item.name] = {
                        stmt.target.id
                        for stmt in item.body
                        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    }
    return out


def test_type_declarations_match_descriptors() -> None:
    declared = _declared_fields()
    full_names = {
        "Empty": "google.protobuf.Empty",
        "Error": "kos.common.Error",
        "ActionResponse": "kos.common.ActionResponse",
    }
    for name in declared:
        full_name = full_names.get(name, f"kos.sound.{name}")
        descriptor = SCHEMA.pool.FindMessageTypeByName(full_name)
        assert declared[name] == {field.name for field in descriptor.fields}, name
    file_messages = {
        m.name
        for f in ("kos/common.proto", "kos/sound.proto")
        for m in SCHEMA.pool.FindFileByName(f).message_types_by_name.values()
    }
    assert file_messages <= set(declared)


def test_shipped_descriptor_set_is_fresh() -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools not installed: cannot recompile the .proto files")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "gen_protos.py"),
            "--check",
            str(KOS_PROTO_DIR / "sound.proto"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------- _runtime


def test_runtime_schemas_are_private_and_checked() -> None:
    blob = (KOS_PROTO_DIR / "kos_sound.desc").read_bytes()
    other = _runtime.ProtoSchema(blob, blob)  # the same file twice is fine
    cls = other.message_class("kos.sound.AudioConfig")
    assert cls is not AudioConfig  # its own pool, no clash with the package's schema
    assert cls(sample_rate=16_000, bit_depth=16, channels=1).SerializeToString() == (
        MONO16.SerializeToString()
    )
    assert other.file_names == ("kos/common.proto", "kos/sound.proto")
    with pytest.raises(ValueError, match="not a serialized FileDescriptorSet"):
        _runtime.ProtoSchema(b"\xff\xff\xff")
    with pytest.raises(KeyError):
        other.methods("kos.sound.NoSuchService")


def test_runtime_rejects_conflicts_and_missing_imports() -> None:
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(
        (KOS_PROTO_DIR / "kos_sound.desc").read_bytes()
    )
    sound = next(f for f in fds.file if f.name == "kos/sound.proto")
    only_sound = descriptor_pb2.FileDescriptorSet(file=[sound]).SerializeToString()
    with pytest.raises(ValueError, match=r"kos/common\.proto"):
        _runtime.ProtoSchema(only_sound)
    changed = descriptor_pb2.FileDescriptorProto()
    changed.CopyFrom(sound)
    changed.message_type[0].name = "Renamed"
    with pytest.raises(ValueError, match="twice"):
        _runtime.ProtoSchema(
            fds.SerializeToString(),
            descriptor_pb2.FileDescriptorSet(file=[changed]).SerializeToString(),
        )


def test_generic_handler_rejects_unknown_methods() -> None:
    with pytest.raises(ValueError, match="NoSuchMethod"):
        _runtime.generic_handler(
            "kos.sound.SoundService", SOUND_METHODS, {"NoSuchMethod": lambda r, c: r}
        )


# ---------------------------------------------------------------------------- unary calls


def test_get_audio_info(make_kos_server: Callable[..., KosSoundServer]) -> None:
    server = make_kos_server(
        playback=Capabilities(sample_rates=(48_000,), bit_depths=(16,), channels=(2,)),
        recording=Capabilities(
            sample_rates=(16_000, 44_100), bit_depths=(16, 24), channels=(1,), available=False
        ),
    )
    with KosSoundClient(server.address, timeout_s=WAIT_S) as client:
        info = client.get_audio_info()
    assert isinstance(info, GetAudioInfoResponse)
    assert (list(info.playback.sample_rates), list(info.playback.bit_depths)) == ([48_000], [16])
    assert (list(info.playback.channels), info.playback.available) == ([2], True)
    assert list(info.recording.sample_rates) == [16_000, 44_100]
    assert list(info.recording.bit_depths) == [16, 24]
    assert info.recording.available is False
    assert not info.HasField("error")


def test_error_fields_are_returned_as_data(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    kos_server.faults.info_error = (ErrorCode.HARDWARE_FAILURE, "codec not found")
    kos_server.faults.stop_recording_failure = (ErrorCode.NOT_IMPLEMENTED, "no recorder")
    info = kos_client.get_audio_info()
    assert info.HasField("error")
    assert (info.error.code, info.error.message) == (ErrorCode.HARDWARE_FAILURE, "codec not found")
    answer = kos_client.stop_recording()
    assert not answer.success
    assert (answer.error.code, answer.error.message) == (ErrorCode.NOT_IMPLEMENTED, "no recorder")


# ---------------------------------------------------------------------------- RecordAudio


def _expected_int_samples(data: bytes, bit_depth: int, channels: int) -> np.ndarray:
    """Decode interleaved LE signed PCM independently of record_signal; shape (frames, ch)."""
    width = bit_depth // 8
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, width).astype(np.int64)
    unsigned = np.zeros(raw.shape[0], dtype=np.int64)
    for byte in range(width):
        unsigned |= raw[:, byte] << (8 * byte)
    signed = np.where(unsigned >= 1 << (bit_depth - 1), unsigned - (1 << bit_depth), unsigned)
    return signed.reshape(-1, channels)


@pytest.mark.parametrize(
    ("sample_rate", "bit_depth", "channels", "duration_ms"),
    [(16_000, 16, 1, 200), (48_000, 32, 2, 100), (16_000, 24, 2, 80)],
)
def test_record_stream_content_is_exact(
    make_kos_server: Callable[..., KosSoundServer],
    sample_rate: int,
    bit_depth: int,
    channels: int,
    duration_ms: int,
) -> None:
    server = make_kos_server(
        recording=Capabilities(sample_rates=(sample_rate,), bit_depths=(bit_depth,))
    )
    config = AudioConfig(sample_rate=sample_rate, bit_depth=bit_depth, channels=channels)
    with KosSoundClient(server.address, timeout_s=WAIT_S) as client:
        started = time.monotonic()
        chunks = [response.audio_data for response in client.record_audio(config, duration_ms)]
        elapsed_s = time.monotonic() - started
    frames = sample_rate * duration_ms // 1000
    frame_bytes = bit_depth // 8 * channels
    chunk_frames = round(sample_rate * 0.037)
    full, rest = divmod(frames, chunk_frames)
    assert [len(c) for c in chunks] == [chunk_frames * frame_bytes] * full + [rest * frame_bytes]
    data = b"".join(chunks)
    assert data == record_signal(sample_rate, bit_depth, channels, 0, frames)
    assert data == server.wait_record_outcome(0, WAIT_S).data
    # Cross-check the signal's definition with an independent decoder.
    n = np.arange(frames, dtype=np.int64)[:, None]
    c = np.arange(channels, dtype=np.int64)[None, :]
    unsigned = (n * 2_654_435_761 + c * 40_503 + 12_345) % (1 << bit_depth)
    signed = np.where(unsigned >= 1 << (bit_depth - 1), unsigned - (1 << bit_depth), unsigned)
    np.testing.assert_array_equal(_expected_int_samples(data, bit_depth, channels), signed)
    # Paced to real time: the last chunk cannot arrive before the audio was "captured".
    assert elapsed_s >= duration_ms / 1000 * 0.9
    assert server.record_streams()[0].outcome == "completed"


def test_stop_recording_ends_continuous_stream(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    stream = kos_client.record_audio(MONO16)  # duration 0: until stopped
    first = [next(stream).audio_data, next(stream).audio_data]
    answer = kos_client.stop_recording()
    assert answer.success
    rest = [response.audio_data for response in stream]  # ends without an error
    assert len(rest) <= 1  # at most the chunk that was already on its way
    record = kos_server.wait_record_outcome(0, WAIT_S)
    assert record.outcome == "stopped"
    assert b"".join(first + rest) == record.data
    assert kos_server.stop_recording_calls == 1


def test_client_cancel_ends_record_stream_quietly(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    stream = kos_client.record_audio(MONO16)
    assert len(next(stream).audio_data) == 592 * 2
    assert stream.cancel()
    assert list(stream) == []
    assert not stream.is_active()
    assert kos_server.wait_record_outcome(0, WAIT_S).outcome == "cancelled"


def test_record_error_response_then_end(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    kos_server.faults.record_error_after_chunks = 2
    responses = list(kos_client.record_audio(MONO16))
    assert [r.HasField("error") for r in responses] == [False, False, True]
    assert responses[2].error.code == ErrorCode.HARDWARE_FAILURE
    assert responses[2].error.message == "microphone unplugged"


def test_record_abort_is_wrapped(kos_server: KosSoundServer, kos_client: KosSoundClient) -> None:
    kos_server.faults.record_abort_after_chunks = 1
    kos_server.faults.abort_status = (grpc.StatusCode.DATA_LOSS, "mic driver crashed")
    stream = kos_client.record_audio(MONO16)
    assert next(stream).audio_data
    with pytest.raises(BackendError) as info:
        next(stream)
    message = str(info.value)
    assert "RecordAudio" in message and "DATA_LOSS" in message and "mic driver crashed" in message
    assert isinstance(info.value.__cause__, grpc.RpcError)
    assert info.value.__cause__.code() is grpc.StatusCode.DATA_LOSS


def test_record_without_config_is_invalid_argument(kos_server: KosSoundServer) -> None:
    # The project client always sends a config, so speak the raw protocol here.
    with grpc.insecure_channel(kos_server.address) as channel:
        record = _runtime.client_callables(channel, SOUND_METHODS)["RecordAudio"]
        with pytest.raises(grpc.RpcError) as info:
            list(record(RecordAudioRequest(duration_ms=100), timeout=WAIT_S))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert kos_server.record_streams()[0].outcome == "rejected"


def test_record_unsupported_config_and_bad_duration(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    odd = AudioConfig(sample_rate=22_050, bit_depth=16, channels=1)
    with pytest.raises(BackendError, match="INVALID_ARGUMENT"):
        list(kos_client.record_audio(odd, 50))
    with pytest.raises(ValueError):
        kos_client.record_audio(MONO16, -1)


# ---------------------------------------------------------------------------- PlayAudio


def _play_requests(config: AudioConfig, chunks: list[bytes]) -> Iterator[PlayAudioRequest]:
    yield PlayAudioRequest(config=config)
    for chunk in chunks:
        yield PlayAudioRequest(audio_data=chunk)


def test_play_config_first_then_chunks_arrive_exactly(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    rng = np.random.default_rng(7)
    chunks = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in (640, 2, 4094, 0)]
    config = AudioConfig(sample_rate=48_000, bit_depth=16, channels=2)
    answer = kos_client.play_audio(_play_requests(config, chunks)).result(WAIT_S)
    assert answer.success
    record = kos_server.wait_play_outcome(0, WAIT_S)
    assert record.outcome == "answered"
    assert record.config == (48_000, 16, 2)
    assert record.first_message_audio == b""
    assert record.message_count == 1 + len(chunks)
    assert record.data == b"".join(chunks)
    assert len(record.arrival_s) == record.message_count
    assert list(record.arrival_s) == sorted(record.arrival_s)


def test_play_config_and_audio_in_first_message(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    requests = [
        PlayAudioRequest(config=MONO16, audio_data=b"\x01\x00"),
        PlayAudioRequest(audio_data=b"\x02\x00"),
    ]
    assert kos_client.play_audio(requests).result(WAIT_S).success
    record = kos_server.wait_play_outcome(0, WAIT_S)
    assert (record.first_message_audio, record.data) == (b"\x01\x00", b"\x01\x00\x02\x00")


def test_play_early_answer_is_observed_before_requests_end(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    kos_server.faults.play_early_after_messages = 2
    release = threading.Event()
    yielded: list[int] = []

    def requests() -> Iterator[PlayAudioRequest]:
        yield PlayAudioRequest(config=MONO16)
        yielded.append(1)
        yield PlayAudioRequest(audio_data=b"\x00\x01" * 160)
        yielded.append(2)
        release.wait(WAIT_S)  # the client has more audio, but holds it back
        yield PlayAudioRequest(audio_data=b"\x00\x02" * 160)
        yielded.append(3)

    call = kos_client.play_audio(requests())
    answer = call.result(WAIT_S)
    assert answer.success
    assert call.done()
    assert not release.is_set() and len(yielded) <= 2  # the iterator had not ended
    release.set()
    record = kos_server.wait_play_outcome(0, WAIT_S)
    assert (record.outcome, record.message_count) == ("early", 2)
    assert record.data == b"\x00\x01" * 160


def test_play_without_config_is_invalid_argument(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    call = kos_client.play_audio([PlayAudioRequest(audio_data=b"\x00\x00")])
    with pytest.raises(BackendError) as info:
        call.result(WAIT_S)
    assert "PlayAudio" in str(info.value) and "INVALID_ARGUMENT" in str(info.value)
    assert isinstance(info.value.__cause__, grpc.RpcError)
    assert info.value.__cause__.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert kos_server.wait_play_outcome(0, WAIT_S).outcome == "rejected"


def test_play_failure_answer_and_abort(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    kos_server.faults.play_failure = (ErrorCode.HARDWARE_FAILURE, "speaker muted")
    answer = kos_client.play_audio(_play_requests(MONO16, [b"\x00\x00"])).result(WAIT_S)
    assert not answer.success
    assert (answer.error.code, answer.error.message) == (
        ErrorCode.HARDWARE_FAILURE,
        "speaker muted",
    )
    kos_server.faults.play_failure = None
    kos_server.faults.play_abort_after_messages = 2
    call = kos_client.play_audio(_play_requests(MONO16, [b"\x00\x00", b"\x00\x00"]))
    with pytest.raises(BackendError, match="INTERNAL: injected abort"):
        call.result(WAIT_S)


def test_play_timeout_then_cancel(kos_server: KosSoundServer, kos_client: KosSoundClient) -> None:
    release = threading.Event()
    done: list[object] = []

    def requests() -> Iterator[PlayAudioRequest]:
        yield PlayAudioRequest(config=MONO16, audio_data=b"\x00\x00")
        release.wait(WAIT_S)

    call = kos_client.play_audio(requests())
    call.add_done_callback(done.append)
    with pytest.raises(TimeoutError):
        call.result(0.05)
    assert not call.done()
    assert call.cancel()
    release.set()
    with pytest.raises(BackendError, match="CANCELLED"):
        call.result(WAIT_S)
    # gRPC may run done callbacks on its own thread, shortly after cancel() returned.
    deadline = time.monotonic() + WAIT_S
    while not done and time.monotonic() < deadline:
        time.sleep(0.005)
    assert done == [call]
    record = kos_server.wait_play_outcome(0, WAIT_S)
    # The grpcio server may report a cancelled client stream as a plain end of requests (it
    # races with the cancel notification), so the server-side outcome is not asserted.
    assert (record.message_count, record.data) == (1, b"\x00\x00")


# ---------------------------------------------------------------------------- server loss


def _until_ok(client: KosSoundClient) -> GetAudioInfoResponse:
    """Retry get_audio_info until the channel has reconnected (bounded by WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return client.get_audio_info()
        except BackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_server_restart_backend_error_then_recovers(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    assert kos_client.get_audio_info().playback.available
    port = kos_server.port
    kos_server.stop()
    with pytest.raises(BackendError, match="UNAVAILABLE") as info:
        kos_client.get_audio_info()
    assert isinstance(info.value.__cause__, grpc.RpcError)
    assert kos_server.address in str(info.value)
    kos_server.start()
    assert kos_server.port == port
    assert _until_ok(kos_client).playback.available
    kos_server.restart()
    assert kos_server.port == port
    assert _until_ok(kos_client).recording.available


def test_connection_drop_mid_record_then_recovers(
    kos_server: KosSoundServer, kos_client: KosSoundClient
) -> None:
    kos_server.faults.record_drop_after_chunks = 2
    stream = kos_client.record_audio(MONO16)
    received = [next(stream).audio_data, next(stream).audio_data]
    with pytest.raises(BackendError, match="RecordAudio"):
        next(stream)
    assert b"".join(received) == record_signal(16_000, 16, 1, 0, 2 * 592)
    assert kos_server.wait_record_outcome(0, WAIT_S).outcome == "dropped"
    kos_server.faults.record_drop_after_chunks = None
    kos_server.start()
    _until_ok(kos_client)
    assert len(list(kos_client.record_audio(MONO16, 40))) == 2


def test_closed_client_raises_backend_error(kos_server: KosSoundServer) -> None:
    client = KosSoundClient(kos_server.address, timeout_s=WAIT_S)
    client.close()
    with pytest.raises(BackendError):
        client.get_audio_info()
    with pytest.raises(ValueError):
        KosSoundClient(kos_server.address, timeout_s=0)


# ---------------------------------------------------------------------------- pykos


def test_pykos_reference_client_agrees(make_kos_server: Callable[..., KosSoundServer]) -> None:
    if importlib.util.find_spec("pykos") is None:
        pytest.skip(
            "pykos not installed (it needs Python>=3.11, protobuf>=5.29, grpcio>=1.71): "
            "pip install pykos to cross-check the test server with the upstream client"
        )
    server = make_kos_server(
        playback=Capabilities(sample_rates=(16_000,), bit_depths=(16,), channels=(1,)),
        recording=Capabilities(sample_rates=(16_000, 48_000), bit_depths=(16,), channels=(1, 2)),
    )
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("pykos_probe.py")),
            "127.0.0.1",
            str(server.port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    if "unsupported" in seen:
        pytest.skip(
            f"{seen['unsupported']}: too old to cross-check the test server (the KOS sound "
            "API is in pykos releases for Python>=3.11)"
        )

    assert seen["playback"] == {
        "sample_rates": [16_000],
        "bit_depths": [16],
        "channels": [1],
        "available": True,
    }
    assert seen["recording"]["sample_rates"] == [16_000, 48_000]
    assert seen["recording"]["channels"] == [1, 2]
    assert seen["info_has_error"] is False

    config = seen["config"]
    frames = config["sample_rate"] * seen["record_ms"] // 1000
    recorded = bytes.fromhex(seen["recorded_hex"])
    sent = server.wait_record_outcome(0, WAIT_S)
    assert sent.config == (config["sample_rate"], config["bit_depth"], config["channels"])
    assert recorded == sent.data == record_signal(16_000, 16, 1, 0, frames)
    assert seen["record_chunks"] == len(sent.chunk_sizes)

    played = [bytes.fromhex(chunk) for chunk in seen["played_hex"]]
    got = server.wait_play_outcome(0, WAIT_S)
    assert seen["play_success"] is True
    assert got.outcome == "answered"
    assert got.config == (16_000, 16, 1)
    assert got.first_message_audio == b""  # pykos sends a config-only first message
    assert got.message_count == 1 + len(played)
    assert got.data == b"".join(played)


def test_room_carries_what_is_played_into_the_microphone_delayed_and_attenuated() -> None:
    # The echo path the echo-cancellation tests stand on: PlayAudio's audio reaches
    # RecordAudio 60 ms after it started playing (at its arrival), at half amplitude.
    from servers.kos_room import Room

    rate = 16000
    room = Room(rate=rate, delay_ms=60.0, gain=0.5)
    burst = (np.sin(2 * np.pi * 1000 * np.arange(rate // 5) / rate) * 16000).astype("<i2")
    with KosSoundServer(room=room) as server, \
            KosSoundClient(server.address, timeout_s=WAIT_S) as client:
        config = AudioConfig(sample_rate=rate, bit_depth=16, channels=1)
        record = client.record_audio(config, duration_ms=1000)
        first = next(record)  # the recording runs: its frame 0 is on the server's clock
        played = client.play_audio(iter([PlayAudioRequest(config=config),
                                         PlayAudioRequest(audio_data=burst.tobytes())]))
        assert played.result(WAIT_S).success
        heard = np.frombuffer(first.audio_data + b"".join(r.audio_data for r in record), "<i2")
        arrival = server.play_streams()[0].arrival_s[1]
        started = server.record_streams()[0].started_s
    # Counted in the room's frames, as the server does (rounding each time the same way).
    expected_onset = room.frame_at(arrival) - room.frame_at(started) + round(0.060 * rate)
    echo = np.zeros_like(heard, dtype=np.float64)
    end = min(len(heard), expected_onset + len(burst))
    echo[expected_onset:end] = 0.5 * burst[: end - expected_onset]
    assert end > expected_onset, "the burst was played after the recording ended"
    # Exactly the burst, delayed and halved (to S16 rounding), and nothing else.
    assert np.max(np.abs(heard - echo)) <= 1.0
