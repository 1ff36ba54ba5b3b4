"""bag_to_wav round trip: mic_node's real topics -> rosbag2 bags (sqlite3, mcap) -> WAV/FLAC.

The bags hold the serialized messages exactly as DDS delivered them to a raw subscription (what
``ros2 bag record`` stores), written with ``rosbags``. The converter runs as a separate process
in which rclpy cannot even be imported. Expected samples are decoded from the same bytes by
rclpy's own deserializer.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, RELIABLE, wait_until
from rclpy.serialization import deserialize_message

from kos_audio.core import NS_PER_S

pytest.importorskip("rosbags")
from rosbags.rosbag2 import StoragePlugin, Writer

from kos_audio.tools.bag_to_wav import (
    AUDIO_DATA,
    AUDIO_DATA_STAMPED,
    AUDIO_INFO,
    MSG_DEFINITIONS,
    audio_typestore,
)

REPO = Path(__file__).resolve().parents[2]
RATE, CHANNELS = 24000, 2
FRAME_BYTES = 2 * CHANNELS
DROPPED = range(30, 35)  # audio_stamped messages left out of the bag: a 100 ms gap
#: Runs bag_to_wav with rclpy unimportable: the tool needs no ROS at all.
NO_ROS = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"rclpy", "audio_common_msgs", "std_msgs"}:
                raise ImportError(f"blocked: {name}")
            return None
    sys.meta_path.insert(0, Block())
    from kos_audio.tools.bag_to_wav import main
    sys.exit(main(sys.argv[1:]))
""")


def bag_to_wav(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", NO_ROS, *map(str, args)],
                          capture_output=True, text=True, check=False, timeout=60)


class RawRecorder:
    """What ``ros2 bag record`` does: raw CDR of each message with its receive time."""

    def __init__(self, ros: Any) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, int, bytes]] = []
        self.ros = ros

    def add(self, msg_cls: type, topic: str, msgtype: str, qos: Any = RELIABLE) -> None:
        full = f"{self.ros.node.get_namespace()}/{topic}"

        def keep(raw: bytes) -> None:
            with self.lock:
                self.log.append((full, msgtype, time.time_ns(), bytes(raw)))
        self.ros.node.create_subscription(msg_cls, topic, keep, qos, raw=True)

    def of(self, msgtype: str) -> list[tuple[str, str, int, bytes]]:
        with self.lock:
            return [entry for entry in self.log if entry[1] == msgtype]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """mic_node's three topics, captured once for every test of this module."""
    import uuid

    from kos_testing.ros import RosProbe

    namespace = f"/t{uuid.uuid4().hex[:10]}"
    probe = RosProbe(namespace, name="bagger")
    raw = RawRecorder(probe)
    raw.add(AudioDataStamped, "audio_stamped", AUDIO_DATA_STAMPED)
    raw.add(AudioData, "audio", AUDIO_DATA)
    raw.add(AudioInfo, "audio_info", AUDIO_INFO, LATCHED)
    mic = NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params={
        "source": "tone", "sample_rate": RATE, "channels": CHANNELS, "tone.frequency_hz": 300.0})
    try:
        with mic:
            wait_until(lambda: len(raw.of(AUDIO_DATA_STAMPED)) >= 75, 30, "1.5 s of audio")
            hashes = {t: probe.node.get_publishers_info_by_topic(f"{namespace}/{t}")[0]
                      .topic_type_hash for t in ("audio_stamped", "audio", "audio_info")}
            time.sleep(0.1)
        wait_until(lambda: len(raw.of(AUDIO_DATA)) >= len(raw.of(AUDIO_DATA_STAMPED)), 5,
                   "the last plain chunks")
    finally:
        probe.close()
    stamped = raw.of(AUDIO_DATA_STAMPED)
    kept = [e for i, e in enumerate(stamped) if i not in DROPPED]
    entries = sorted(kept + raw.of(AUDIO_DATA) + raw.of(AUDIO_INFO), key=lambda e: e[2])
    directory = tmp_path_factory.mktemp("bags")
    store = audio_typestore()
    bags = {}
    for plugin in (StoragePlugin.SQLITE3, StoragePlugin.MCAP):
        path = directory / plugin.name.lower()
        with Writer(path, version=9, storage_plugin=plugin) as writer:
            connections = {}
            for topic, msgtype, log_ns, data in entries:
                if topic not in connections:
                    connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
                writer.write(connections[topic], log_ns, data)
        bags[plugin.name.lower()] = path
    return {"namespace": namespace, "bags": bags, "stamped": stamped,
            "plain": raw.of(AUDIO_DATA), "hashes": hashes, "dir": directory}


def timeline(msgs: list[AudioDataStamped]) -> tuple[bytes, int, int]:
    """The messages on their stamps' time axis: (bytes, gaps, silent frames) -- an independent
    statement of the rule: a chunk stamped later than the previous one's end follows silence."""
    t0 = msgs[0].header.stamp.sec * NS_PER_S + msgs[0].header.stamp.nanosec
    out = bytearray()
    gaps = missing = 0
    for m in msgs:
        stamp = m.header.stamp.sec * NS_PER_S + m.header.stamp.nanosec
        at, have = round((stamp - t0) * RATE / NS_PER_S), len(out) // FRAME_BYTES
        if at > have:
            gaps, missing = gaps + 1, missing + at - have
            out += bytes((at - have) * FRAME_BYTES)
        out += bytes(m.audio.data)
    return bytes(out), gaps, missing


def decoded_stamped(entries: list[tuple[str, str, int, bytes]]) -> list[AudioDataStamped]:
    return [deserialize_message(e[3], AudioDataStamped) for e in entries]


def test_embedded_definitions_match_the_package_and_the_live_graph(
        recorded: dict[str, Any]) -> None:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = audio_typestore()
    ours = get_typestore(Stores.ROS2_JAZZY)
    for name in MSG_DEFINITIONS:
        text = (REPO / "tools/audio_common_msgs/msg" / f"{name.rsplit('/', 1)[1]}.msg"
                ).read_text()
        ours.register(get_types_from_msg(text, name))
    for name in MSG_DEFINITIONS:
        assert store.hash_rihs01(name) == ours.hash_rihs01(name)
    hashes = recorded["hashes"]
    assert str(hashes["audio_info"]) == store.hash_rihs01(AUDIO_INFO)
    assert str(hashes["audio_stamped"]) == store.hash_rihs01(AUDIO_DATA_STAMPED)
    assert str(hashes["audio"]) == store.hash_rihs01(AUDIO_DATA)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_stamped_topic_round_trips_exactly_with_the_gap_filled(
        recorded: dict[str, Any], storage: str, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    result = bag_to_wav(recorded["bags"][storage], "-o", out)
    assert result.returncode == 0, result.stderr
    msgs = decoded_stamped(recorded["stamped"])
    kept = [m for i, m in enumerate(msgs) if i not in DROPPED]
    expected, gaps, missing = timeline(kept)
    assert gaps >= 1  # the dropped messages (mic_node itself publishes no gaps when idle)
    if gaps == 1:  # what an undisturbed mic_node gives: the lost chunks, as silence in place
        assert expected == b"".join(bytes(len(m.audio.data)) if i in DROPPED else
                                    bytes(m.audio.data) for i, m in enumerate(msgs))
    assert str(out) in result.stdout and f" {gaps} gaps" in result.stdout
    with wave.open(str(out), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, CHANNELS, 2)
        data = w.readframes(w.getnframes())
    assert data == expected  # every published sample, the lost ones as silence in place
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["source_topic"] == f"{recorded['namespace']}/audio_stamped"
    assert side["bag"] == str(recorded["bags"][storage])
    assert side["gaps"] == {"count": gaps, "missing_s": missing / RATE}
    first = msgs[0].header.stamp
    assert side["started_at_ns"] == first.sec * NS_PER_S + first.nanosec
    assert side["samples"] == len(expected) // FRAME_BYTES and side["complete"] is True
    # Voices are personal data: owner only, whatever the umask.
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out.with_suffix(".json")).st_mode) == 0o600


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_plain_topic_to_flac_is_exact(recorded: dict[str, Any], storage: str,
                                      tmp_path: Path) -> None:
    out = tmp_path / "plain.flac"
    topic = f"{recorded['namespace']}/audio"
    result = bag_to_wav(recorded["bags"][storage], "-t", topic, "-f", "flac", "-o", out,
                        "--group-readable")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(out.with_suffix(".json")).st_mode) == 0o640
    expected = b"".join(bytes(deserialize_message(e[3], AudioData).data)
                        for e in recorded["plain"])
    data, rate = soundfile.read(out, dtype="int16")
    assert rate == RATE and data.shape[1] == CHANNELS
    assert data.astype("<i2").tobytes() == expected
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["stamped"] is False and side["gaps"]["count"] == 0


def test_refusals_are_one_clear_line(recorded: dict[str, Any], tmp_path: Path) -> None:
    bag = recorded["bags"]["mcap"]
    missing = bag_to_wav(bag, "-t", "/nope", "-o", tmp_path / "x.wav")
    assert missing.returncode == 1
    assert missing.stderr.startswith("bag_to_wav: error: topic /nope is not in the bag")
    assert len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "taken.wav").write_bytes(b"mine")
    taken = bag_to_wav(bag, "-o", tmp_path / "taken.wav")
    assert taken.returncode == 1 and "not overwriting" in taken.stderr
    assert (tmp_path / "taken.wav").read_bytes() == b"mine"
    not_a_bag = bag_to_wav(tmp_path, "-o", tmp_path / "y.wav")
    assert not_a_bag.returncode == 1 and "cannot read the bag" in not_a_bag.stderr
    default = bag_to_wav(bag)  # default output: beside the bag
    assert default.returncode == 0, default.stderr
    assert (recorded["dir"] / "mcap.wav").is_file()
    assert np.frombuffer((recorded["dir"] / "mcap.wav").read_bytes()[44:], "<i2").size > 0


def test_audio_info_changes_inside_the_bag_are_honoured(tmp_path: Path) -> None:
    """A bag whose format changes half-way (48 kHz stereo F32 after 16 kHz mono S16)."""
    from kos_audio.core import AudioFormat, SampleFormat, from_float

    store = audio_typestore()
    info_t = store.types[AUDIO_INFO]
    stamped_t = store.types[AUDIO_DATA_STAMPED]
    data_t, header_t = store.types[AUDIO_DATA], store.types["std_msgs/msg/Header"]
    time_t = store.types["builtin_interfaces/msg/Time"]
    t0 = 1_700_000_000 * NS_PER_S
    path = tmp_path / "bag"
    formats = [AudioFormat(16000, 1, SampleFormat.S16LE),
               AudioFormat(48000, 2, SampleFormat.F32LE)]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        info_c = writer.add_connection("/mic/audio_info", AUDIO_INFO, typestore=store)
        audio_c = writer.add_connection("/mic/audio_stamped", AUDIO_DATA_STAMPED, typestore=store)
        for k, fmt in enumerate(formats):
            start = t0 + k * NS_PER_S // 2
            info = info_t(channels=fmt.channels, sample_rate=fmt.sample_rate_hz,
                          sample_format=fmt.sample_format.value, bitrate=fmt.bitrate,
                          coding_format="wave")
            writer.write(info_c, start, store.serialize_cdr(info, AUDIO_INFO))
            n = fmt.sample_rate_hz // 2
            x = 0.5 * np.sin(2 * np.pi * 500 * np.arange(n) / fmt.sample_rate_hz)
            pcm = from_float(np.repeat(x[:, None], fmt.channels, axis=1), fmt.sample_format)
            step = n // 25
            for i in range(0, n, step):
                stamp = start + i * NS_PER_S // fmt.sample_rate_hz
                sec, nsec = divmod(stamp, NS_PER_S)
                msg = stamped_t(
                    header=header_t(stamp=time_t(sec=sec, nanosec=nsec), frame_id="mic"),
                    audio=data_t(data=np.frombuffer(
                        pcm[i * fmt.frame_bytes:(i + step) * fmt.frame_bytes], np.uint8)))
                writer.write(audio_c, stamp + 1000, store.serialize_cdr(msg, AUDIO_DATA_STAMPED))
    out = tmp_path / "changed.wav"
    result = bag_to_wav(path, "-o", out)
    assert result.returncode == 0, result.stderr
    with wave.open(str(out), "rb") as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1)  # the first audio_info's
        y = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
    assert abs(len(y) - 16000) <= 1 and json.loads(out.with_suffix(".json").read_text())[
        "gaps"]["count"] == 0
    second = y[8000 + 200: -200]  # converted from 48 kHz stereo float
    assert np.max(np.abs(second)) == pytest.approx(0.5, abs=0.01)
    spectrum = np.abs(np.fft.rfft(second * np.hanning(len(second))))
    assert np.argmax(spectrum) * 16000 / len(second) == pytest.approx(500, abs=3)


def test_an_opus_topic_is_decoded_with_a_missing_message_concealed(tmp_path: Path) -> None:
    """Opus packets (real libopus, one per message, as mic_node encoding:=opus publishes
    them), one message missing from the bag: decoded to PCM, no hole, the loss counted."""
    pytest.importorskip("av")
    from kos_testing.codecs import opus_packets, tone_s16

    store = audio_typestore()
    info_t, stamped_t = store.types[AUDIO_INFO], store.types[AUDIO_DATA_STAMPED]
    data_t, header_t = store.types[AUDIO_DATA], store.types["std_msgs/msg/Header"]
    time_t = store.types["builtin_interfaces/msg/Time"]
    rate, frame_ns, lost = 48000, 20_000_000, 25
    t0 = 1_700_000_000 * NS_PER_S
    packets = opus_packets(tone_s16(rate, 1.0, 500.0), rate, bitrate=24000)
    path = tmp_path / "opus_bag"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        info_c = writer.add_connection("/mic/audio_info", AUDIO_INFO, typestore=store)
        audio_c = writer.add_connection("/mic/audio_stamped", AUDIO_DATA_STAMPED, typestore=store)
        info = info_t(channels=1, sample_rate=rate, sample_format="S16LE", bitrate=24000,
                      coding_format="opus")
        writer.write(info_c, t0, store.serialize_cdr(info, AUDIO_INFO))
        for k, packet in enumerate(packets):
            if k == lost:
                continue
            sec, nsec = divmod(t0 + k * frame_ns, NS_PER_S)
            msg = stamped_t(header=header_t(stamp=time_t(sec=sec, nanosec=nsec), frame_id="mic"),
                            audio=data_t(data=np.frombuffer(packet, np.uint8)))
            writer.write(audio_c, t0 + k * frame_ns + 1000,
                         store.serialize_cdr(msg, AUDIO_DATA_STAMPED))
    out = tmp_path / "opus.wav"
    result = bag_to_wav(path, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "0 gaps" in result.stdout and "1 losses concealed (0.020 s)" in result.stdout
    with wave.open(str(out), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (rate, 1, 2)
        y = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
    assert len(y) == len(packets) * 960  # every message's time, the lost one included
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["gaps"]["count"] == 0 and side["started_at_ns"] == t0
    assert side["concealed"] == {"count": 1, "concealed_s": 0.02}
    assert side["source_codings"] == ["opus"]
    assert np.max(np.abs(y[lost * 960:(lost + 1) * 960])) > 0.25  # concealed, not silence
    body = y[480:]
    assert np.argmax(np.abs(np.fft.rfft(body * np.hanning(len(body))))) * rate / len(body) \
        == pytest.approx(500, abs=3)
    assert np.max(np.abs(y[480: lost * 960])) == pytest.approx(0.5, abs=0.05)
