"""The KOS source and sink backends against a real gRPC server on loopback (no ROS).

Here, not in test/backends, so ``scripts/test_grpc_matrix.sh`` runs them with the oldest
grpcio/protobuf too. kos_audio.core imports soxr at package import, so these tests skip in a
venv without it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

pytest.importorskip("soxr", reason="kos_audio.core needs soxr (not in this venv)")

from servers.kos_sound_server import Capabilities, KosSoundServer, record_signal

from kos_audio.backends.kos_config import KosConfig, closest_config
from kos_audio.backends.kos_sink import DEFAULT_IDLE_CLOSE_S, DEFAULT_LEAD_S, KosSink
from kos_audio.backends.kos_source import KosSource
from kos_audio.core import AudioFormat, CapturedBlock, PlaybackEngine, SampleFormat
from kos_audio.errors import BackendError
from kos_audio.protocols.kos import AudioCapabilities, ErrorCode

MONO16 = AudioFormat(16_000, 1, SampleFormat.S16LE)
WAIT_S = 5.0  # upper bound for anything that should take milliseconds


def caps(rates: tuple[int, ...] = (), bits: tuple[int, ...] = (), channels: tuple[int, ...] = (),
         available: bool = True) -> AudioCapabilities:
    return AudioCapabilities(sample_rates=rates, bit_depths=bits, channels=channels,
                             available=available)


# ---------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(("capabilities", "wanted", "chosen"), [
    # listed: the asked config itself
    (caps((16_000, 48_000), (16, 32), (1, 2)), (16_000, 16, 1), (16_000, 16, 1)),
    # not listed: the next value up (keeps band, resolution, channels) ...
    (caps((8_000, 22_050, 48_000), (24, 32), (2, 4)), (16_000, 16, 1), (22_050, 24, 2)),
    # ... else the largest below
    (caps((8_000, 11_025), (16,), (1,)), (16_000, 32, 2), (11_025, 16, 1)),
    # nothing listed: the robot did not say, ask for what we want
    (caps(), (44_100, 24, 3), (44_100, 24, 3)),
    # 0 = native: highest rate, 16 bit, fewest channels
    (caps((16_000, 48_000), (16, 32), (1, 2)), (0, 0, 0), (48_000, 16, 1)),
    (caps(), (0, 0, 0), (48_000, 16, 1)),
    # 8-bit (signed or unsigned? unspecified) is never used; an 8-bit request gets 16
    (caps((16_000,), (8, 16), (1,)), (16_000, 8, 1), (16_000, 16, 1)),
])
def test_closest_config(capabilities: AudioCapabilities, wanted: tuple[int, int, int],
                        chosen: tuple[int, int, int]) -> None:
    rate, bits, ch = wanted
    config = closest_config(capabilities, sample_rate_hz=rate, bit_depth=bits, channels=ch,
                            direction="recording")
    assert config == KosConfig(*chosen)


def test_closest_config_refuses_unusable_capabilities() -> None:
    with pytest.raises(BackendError, match="recording as not available"):
        closest_config(caps((16_000,), (16,), (1,), available=False), sample_rate_hz=16_000,
                       bit_depth=16, channels=1, direction="recording")
    with pytest.raises(BackendError, match=r"bit depths \[8, 12\] include none"):
        closest_config(caps((16_000,), (8, 12), (1,)), sample_rate_hz=16_000, bit_depth=16,
                       channels=1, direction="playback")


def test_config_format_is_signed_little_endian() -> None:
    assert KosConfig(48_000, 24, 2).format == AudioFormat(48_000, 2, SampleFormat.S24LE)
    assert KosConfig(16_000, 16, 1).to_message().sample_rate == 16_000


# ---------------------------------------------------------------------------- source


@pytest.fixture
def make_source() -> Iterator[Callable[..., KosSource]]:
    sources: list[KosSource] = []

    def make(address: str, fmt: AudioFormat = MONO16, timeout_s: float = WAIT_S) -> KosSource:
        source = KosSource(fmt, address=address, timeout_s=timeout_s)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def read_frames(source: KosSource, frames: int, timeout_s: float = WAIT_S) -> list[CapturedBlock]:
    """Blocks until at least ``frames`` frames have arrived."""
    blocks: list[CapturedBlock] = []
    got = 0
    deadline = time.monotonic() + timeout_s
    while got < frames:
        assert time.monotonic() < deadline, f"only {got} of {frames} frames"
        block = source.read(0.2)
        if block is not None:
            blocks.append(block)
            got += source.format.frames_in(len(block.data))
    return blocks


def test_source_delivers_the_servers_signal_exactly(
        kos_server: KosSoundServer, make_source: Callable[..., KosSource]) -> None:
    source = make_source(kos_server.address)
    source.open()
    before = time.time_ns()
    blocks = read_frames(source, 8000)  # half a second, 37 ms server chunks
    data = b"".join(b.data for b in blocks)
    assert source.format == MONO16
    assert data == record_signal(16_000, 16, 1, 0, len(data) // 2)
    assert kos_server.record_streams()[0].config == (16_000, 16, 1)
    assert kos_server.record_streams()[0].duration_ms == 0
    # Capture time = arrival - duration: the first block ended no earlier than the call began.
    first = blocks[0]
    assert first.capture_time_ns is not None
    assert first.capture_time_ns + 37 * 10**6 >= before - 10**6
    assert first.capture_time_ns <= time.time_ns()
    assert not any(b.discontinuity for b in blocks)


def test_source_takes_the_closest_supported_config(
        make_kos_server: Callable[..., KosSoundServer],
        make_source: Callable[..., KosSource]) -> None:
    server = make_kos_server(recording=Capabilities((48_000,), (32,), (2,)))
    source = make_source(server.address)
    source.open()
    assert source.format == AudioFormat(48_000, 2, SampleFormat.S32LE)
    data = b"".join(b.data for b in read_frames(source, 4800))
    assert data == record_signal(48_000, 32, 2, 0, len(data) // 8)
    assert server.record_streams()[0].config == (48_000, 32, 2)


def test_close_stops_recording_and_cancels_the_stream(
        kos_server: KosSoundServer, make_source: Callable[..., KosSource]) -> None:
    source = make_source(kos_server.address)
    source.open()
    read_frames(source, 1000)
    source.close()
    assert kos_server.stop_recording_calls == 1
    assert kos_server.wait_record_outcome(0, WAIT_S).outcome in {"stopped", "cancelled"}
    assert source.read(0.1) is None  # closed: nothing, no error
    source.close()  # idempotent, and no second StopRecording for a dead stream
    assert kos_server.stop_recording_calls == 1


def test_error_response_raises_with_its_code_and_is_counted(
        kos_server: KosSoundServer, make_source: Callable[..., KosSource]) -> None:
    kos_server.faults.record_error_after_chunks = 2
    source = make_source(kos_server.address)
    source.open()
    with pytest.raises(BackendError, match="HARDWARE_FAILURE: microphone unplugged"):
        for _ in range(50):
            source.read(0.5)
    assert source.server_errors == 1
    assert source.last_server_error == "HARDWARE_FAILURE: microphone unplugged"
    source.close()
    assert kos_server.stop_recording_calls == 0  # the stream had already ended


def test_restarted_server_breaks_the_stream_and_reopening_recovers(
        kos_server: KosSoundServer, make_source: Callable[..., KosSource]) -> None:
    source = make_source(kos_server.address)
    source.open()
    read_frames(source, 1000)
    kos_server.stop()
    with pytest.raises(BackendError, match="RecordAudio"):
        for _ in range(50):
            source.read(0.5)
    source.close()
    with pytest.raises(BackendError, match="GetAudioInfo"):
        source.open()  # the server is down: fails at once, the caller backs off
    kos_server.start()
    deadline = time.monotonic() + WAIT_S
    while True:  # the channel may need a moment to reconnect
        try:
            source.open()
            break
        except BackendError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    data = b"".join(b.data for b in read_frames(source, 1000))
    assert data == record_signal(16_000, 16, 1, 0, len(data) // 2)
    assert source.streams == 2


def test_server_dropping_the_connection_mid_stream_is_a_backend_error(
        kos_server: KosSoundServer, make_source: Callable[..., KosSource]) -> None:
    kos_server.faults.record_drop_after_chunks = 3
    source = make_source(kos_server.address)
    source.open()
    with pytest.raises(BackendError):
        for _ in range(50):
            source.read(0.5)


def test_a_stalled_stream_is_a_backend_error(
        make_kos_server: Callable[..., KosSoundServer],
        make_source: Callable[..., KosSource]) -> None:
    server = make_kos_server(record_chunk_ms=60_000.0)  # first chunk after a minute
    source = make_source(server.address, timeout_s=0.5)  # stall timeout: at least 2 s
    source.open()
    start = time.monotonic()
    with pytest.raises(BackendError, match="delivered nothing for 2 s"):
        while time.monotonic() - start < 10:
            source.read(0.25)
    assert 1.9 < time.monotonic() - start < 5


def test_close_from_another_thread_unblocks_a_read(
        kos_server: KosSoundServer, make_source: Callable[..., KosSource]) -> None:
    source = make_source(kos_server.address)
    source.open()
    read_frames(source, 100)
    threading.Timer(0.2, source.close).start()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        source.read(0.1)  # returns blocks, then None once closed; never raises
        if kos_server.record_streams()[0].outcome != "open":
            break
    assert kos_server.wait_record_outcome(0, WAIT_S).outcome in {"stopped", "cancelled"}


def test_unreachable_server_fails_fast(make_source: Callable[..., KosSource]) -> None:
    server = KosSoundServer()
    server.start()
    address = server.address
    server.stop()  # a port nobody listens on (for now)
    source = make_source(address)
    start = time.monotonic()
    with pytest.raises(BackendError, match="UNAVAILABLE"):
        source.open()
    assert time.monotonic() - start < WAIT_S
    assert "KOS microphone at 127.0.0.1:" in source.describe()


def test_unavailable_recording_is_refused(
        make_kos_server: Callable[..., KosSoundServer],
        make_source: Callable[..., KosSource]) -> None:
    server = make_kos_server(recording=Capabilities(available=False))
    with pytest.raises(BackendError, match="not available"):
        make_source(server.address).open()


def test_info_error_beside_capabilities_is_counted_not_fatal(
        kos_server: KosSoundServer, make_source: Callable[..., KosSource]) -> None:
    kos_server.faults.info_error = (ErrorCode.TIMEOUT, "speaker busy")
    source = make_source(kos_server.address)
    source.open()
    assert source.server_errors == 1
    assert source.last_server_error == "TIMEOUT: speaker busy"
    assert np.frombuffer(read_frames(source, 100)[0].data, "<i2").size > 0


# ---------------------------------------------------------------------------- sink

BLOCK_S = 0.02
LEAD_BYTES = round(DEFAULT_LEAD_S * 16_000) * 2  # the lead silence, 16 kHz mono S16LE


@pytest.fixture
def make_sink() -> Iterator[Callable[..., KosSink]]:
    sinks: list[KosSink] = []

    def make(address: str, **kwargs: object) -> KosSink:
        sink = KosSink(address=address, timeout_s=WAIT_S, **kwargs)  # type: ignore[arg-type]
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


#: What the test server may record for a call the client cancelled: its handler can see the
#: request stream end a moment before gRPC marks the call cancelled, and then answers.
CANCELLED = {"cancelled", "answered"}


def trailing_silence_s(data: bytes, frame_bytes: int, rate: int) -> float:
    """Seconds of digital silence at the end of ``data`` (integer PCM)."""
    frames = np.frombuffer(data, np.uint8).reshape(-1, frame_bytes).any(axis=1)
    loud = np.flatnonzero(frames)
    return (len(frames) - (loud[-1] + 1 if len(loud) else 0)) / rate


def start(sink: KosSink) -> PlaybackEngine:
    """Open and start ``sink`` pulling from a fresh engine in the sink's format."""
    fmt = sink.open()
    engine = PlaybackEngine(fmt, block_s=BLOCK_S)
    engine.output_latency_s = sink.output_latency_s
    sink.start(engine.pull)
    return engine


def speech(seconds: float, rate: int = 16_000, seed: int = 1) -> bytes:
    """Known S16LE mono samples (noise-like, every sample nonzero)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(1, 20_000, round(seconds * rate)) * rng.choice([-1, 1],
                                                                         round(seconds * rate))
    return values.astype("<i2").tobytes()


def test_sink_sends_one_paced_stream_per_utterance_config_first(
        kos_server: KosSoundServer, make_sink: Callable[..., KosSink]) -> None:
    sink = make_sink(kos_server.address, sample_rate_hz=16_000, channels=1,
                     sample_format=SampleFormat.S16LE)
    engine = start(sink)
    assert sink.format == MONO16
    data = speech(0.5)
    t0 = time.monotonic()
    engine.enqueue(data, MONO16, now_ns=time.time_ns())
    record = kos_server.wait_play_outcome(0, WAIT_S)
    assert record.outcome == "answered"
    assert record.config == (16_000, 16, 1)
    assert record.first_message_audio == b""  # config-only first message, as pykos sends
    assert record.data[:LEAD_BYTES] == bytes(LEAD_BYTES)  # the lead: silence
    audio = record.data[LEAD_BYTES:]
    assert audio[: len(data)] == data  # the samples, exactly
    assert not any(audio[len(data):])  # then silence until the idle close
    idle_s = (len(audio) - len(data)) / 32_000
    assert DEFAULT_IDLE_CLOSE_S - BLOCK_S <= idle_s <= DEFAULT_IDLE_CLOSE_S + BLOCK_S
    # config, lead, then one message per 20 ms block
    assert record.message_count == 2 + len(audio) // 640
    # Paced: the 25 blocks of speech went out over about 0.48 s, not in an instant.
    span = record.arrival_s[2 + 24] - record.arrival_s[2]
    assert span > 24 * BLOCK_S - 0.05
    assert record.arrival_s[0] - t0 < 0.5
    sink.check()
    assert (sink.streams, sink.early_answers, sink.server_errors) == (1, 0, 0)
    assert len(kos_server.play_streams()) == 1


def test_sink_negotiates_the_closest_playback_config(
        make_kos_server: Callable[..., KosSoundServer],
        make_sink: Callable[..., KosSink]) -> None:
    server = make_kos_server(playback=Capabilities((44_100, 48_000), (24,), (2,)))
    sink = make_sink(server.address, sample_rate_hz=22_050, channels=1)
    engine = start(sink)
    assert sink.format == AudioFormat(44_100, 2, SampleFormat.S24LE)
    engine.enqueue(speech(0.2), MONO16, now_ns=time.time_ns())
    record = server.wait_play_outcome(0, WAIT_S)
    assert (record.outcome, record.config) == ("answered", (44_100, 24, 2))
    assert len(record.data) % 6 == 0 and any(record.data)


def test_interrupt_cancels_the_stream_at_once(
        kos_server: KosSoundServer, make_sink: Callable[..., KosSink]) -> None:
    sink = make_sink(kos_server.address, sample_rate_hz=16_000, channels=1)
    engine = start(sink)
    engine.enqueue(speech(3.0), MONO16, now_ns=time.time_ns())
    wait = time.monotonic() + WAIT_S
    while not kos_server.play_streams() or kos_server.play_streams()[0].message_count < 10:
        assert time.monotonic() < wait
        time.sleep(0.01)
    engine.interrupt(time.time_ns())
    sink.interrupt()
    t_interrupt = time.monotonic()
    record = kos_server.wait_play_outcome(0, WAIT_S)
    assert record.outcome in CANCELLED
    assert time.monotonic() - t_interrupt < 0.5
    # Cancelled, not ended: an ended stream carries the idle-close silence at its end.
    assert trailing_silence_s(record.data, 2, 16_000) < DEFAULT_IDLE_CLOSE_S / 2
    sent_s = len(record.data) / 32_000
    assert sent_s < 1.0  # paced: most of the 3 s was never sent
    time.sleep(0.3)
    assert len(kos_server.play_streams()) == 1  # no new stream for the fade-out
    assert sink.cancelled_streams == 1
    sink.check()  # a cancel by us is not a failure
    engine.enqueue(speech(0.1, seed=2), MONO16, now_ns=time.time_ns() + 10**9)
    assert kos_server.wait_play_outcome(1, WAIT_S).outcome == "answered"


def test_early_answer_moves_the_rest_to_a_new_stream(
        kos_server: KosSoundServer, make_sink: Callable[..., KosSink]) -> None:
    kos_server.faults.play_early_after_messages = 6  # config, lead, 4 blocks, "success"
    sink = make_sink(kos_server.address, sample_rate_hz=16_000, channels=1)
    engine = start(sink)
    data = speech(0.6)
    engine.enqueue(data, MONO16, now_ns=time.time_ns())
    assert kos_server.wait_play_outcome(0, WAIT_S).outcome == "early"
    kos_server.faults.play_early_after_messages = None
    wait = time.monotonic() + WAIT_S
    while sink.early_answers < 1:
        assert time.monotonic() < wait
        sink.check()
        time.sleep(0.01)
    second = kos_server.wait_play_outcome(1, WAIT_S)
    assert second.outcome == "answered"
    assert second.config == (16_000, 16, 1) and second.first_message_audio == b""
    first = kos_server.play_streams()[0].data[LEAD_BYTES:]
    assert first == data[: len(first)]
    # What the server never read follows on the new stream (after its own lead), in order;
    # the one block gRPC may have taken from the old stream as it ended is the most that goes
    # missing.
    assert second.data[:LEAD_BYTES] == bytes(LEAD_BYTES)
    rest = np.frombuffer(second.data[LEAD_BYTES:], "<i2")
    audio = rest[: np.flatnonzero(rest)[-1] + 1].tobytes()  # without the idle-close silence
    assert audio in (data[len(first):], data[len(first) + 640:])
    sink.check()


def test_success_false_is_reported_by_check(
        kos_server: KosSoundServer, make_sink: Callable[..., KosSink]) -> None:
    kos_server.faults.play_failure = (ErrorCode.HARDWARE_FAILURE, "amplifier off")
    sink = make_sink(kos_server.address, sample_rate_hz=16_000, channels=1)
    engine = start(sink)
    engine.enqueue(speech(0.1), MONO16, now_ns=time.time_ns())
    assert kos_server.wait_play_outcome(0, WAIT_S).outcome == "failed"
    wait = time.monotonic() + WAIT_S
    with pytest.raises(BackendError, match="success=false: HARDWARE_FAILURE: amplifier off"):
        while time.monotonic() < wait:
            sink.check()
            time.sleep(0.01)
    assert sink.server_errors == 1
    assert sink.last_server_error == "HARDWARE_FAILURE: amplifier off"


def test_server_gone_mid_utterance_is_reported_by_check(
        kos_server: KosSoundServer, make_sink: Callable[..., KosSink]) -> None:
    sink = make_sink(kos_server.address, sample_rate_hz=16_000, channels=1)
    engine = start(sink)
    engine.enqueue(speech(2.0), MONO16, now_ns=time.time_ns())
    wait = time.monotonic() + WAIT_S
    while not kos_server.play_streams():
        assert time.monotonic() < wait
        time.sleep(0.01)
    kos_server.stop()
    with pytest.raises(BackendError, match="PlayAudio"):
        while time.monotonic() < wait:
            sink.check()
            time.sleep(0.01)
    sink.close()
    with pytest.raises(BackendError, match="UNAVAILABLE"):
        sink.open()


def test_sink_refuses_unavailable_playback(
        make_kos_server: Callable[..., KosSoundServer],
        make_sink: Callable[..., KosSink]) -> None:
    server = make_kos_server(playback=Capabilities(available=False))
    with pytest.raises(BackendError, match="playback as not available"):
        make_sink(server.address).open()
    assert make_sink(server.address, output_latency_s=0.25).output_latency_s == (
        pytest.approx(0.25 + DEFAULT_LEAD_S))
