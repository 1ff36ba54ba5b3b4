"""bag_to_wav: turn an audio topic of a rosbag2 bag (sqlite3 or mcap) into a WAV/FLAC file.

Needs no running ROS: the bag is read with ``rosbags``, with the ``audio_common_msgs`` types
registered from their message definitions (embedded below, field for field the released
ros-drivers package). The bytes are interpreted with the bag's ``audio_info`` (the format in
force when each chunk was logged; chunks logged before the first ``audio_info`` use the first
one), converted to the format of the first ``audio_info`` (or ``--sample-format``), and laid on a
sample-accurate time axis: stamp gaps of ``audio_stamped`` are filled with silence, exactly as
recorder_node does (the same :class:`~kos_audio.core.recording.Recording` writes the file and
its JSON sidecar).

Topics whose ``audio_info.coding_format`` is ``opus`` (one packet per message) or ``mp3`` (a
byte stream cut anywhere) are decoded (PyAV: ``pip install av``) and written as PCM in the
decoded format; Opus messages missing from the bag are concealed by the decoder, so the file
has no hole, and counted in the sidecar's ``concealed``. Undecodable payloads are skipped and
counted on stderr.

Usage::

    bag_to_wav BAG [-t /mic/audio_stamped] [-o out.wav] [--format wav|flac|ogg]
               [--group-readable]

The output and its sidecar are readable by their owner only (0600) unless ``--group-readable``
(0640): recordings of voices are personal data.

Exit status: 0 written; 1 the bag, topic or output refused (one line on stderr); 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kos_audio.core.decoding import PayloadDecoder
from kos_audio.core.formats import AudioFormat, SampleFormat, supported_sample_formats
from kos_audio.core.recording import (
    Chunk,
    Container,
    FileAccess,
    GapPolicy,
    Recording,
    RecordingError,
    RecordingOptions,
    RecordingSummary,
    claim_path,
)
from kos_audio.core.stamping import NS_PER_S
from kos_audio.errors import AudioFormatError, KosAudioError

AUDIO_DATA = "audio_common_msgs/msg/AudioData"
AUDIO_DATA_STAMPED = "audio_common_msgs/msg/AudioDataStamped"
AUDIO_INFO = "audio_common_msgs/msg/AudioInfo"

#: ros-drivers/audio_common_msgs (0.4.x) as released; names, types and order matter (the
#: RIHS01 type hash must match the real package's).
MSG_DEFINITIONS = {
    AUDIO_DATA: "uint8[] data\n",
    AUDIO_DATA_STAMPED: "std_msgs/Header header\naudio_common_msgs/AudioData audio\n",
    AUDIO_INFO: ("uint8 channels\nuint32 sample_rate\nstring sample_format\nuint32 bitrate\n"
                 "string coding_format\n"),
}


class BagError(KosAudioError):
    """The bag cannot be converted: unreadable, no such topic, no format information."""


def audio_typestore() -> Any:
    """A rosbags Jazzy typestore with the audio_common_msgs types registered.

    Raises:
        BagError: rosbags is not installed.

    """
    try:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    except ImportError as err:
        raise BagError("bag_to_wav needs the 'rosbags' package: pip install rosbags "
                       "(or kos_audio[bags])") from err
    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict[str, Any] = {}
    for name, text in MSG_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


@dataclass(frozen=True, slots=True)
class Conversion:
    """What to convert and how (the command line, typed)."""

    bag: Path
    output: Path | None = None
    topic: str | None = None
    info_topic: str | None = None
    container: Container = Container.WAV
    sample_format: SampleFormat | None = None
    fill_gaps: bool = True
    gap_tolerance_ms: float = 2.0
    max_gap_fill_s: float = 60.0
    overwrite: bool = False
    group_readable: bool = False


@dataclass(frozen=True, slots=True)
class _Topics:
    audio: Any  # rosbags Connection
    info: Any | None
    stamped: bool


def _pick_topics(connections: Sequence[Any], conv: Conversion) -> _Topics:
    audio_types = (AUDIO_DATA_STAMPED, AUDIO_DATA)
    if conv.topic is not None:
        audio = [c for c in connections if c.topic == conv.topic]
        if not audio:
            raise BagError(f"topic {conv.topic} is not in the bag; audio topics: "
                           f"{_listing(connections, audio_types)}")
        if audio[0].msgtype not in audio_types:
            raise BagError(f"topic {conv.topic} is a {audio[0].msgtype}, not AudioData(Stamped)")
    else:
        audio = [c for c in connections if c.msgtype == AUDIO_DATA_STAMPED] or [
            c for c in connections if c.msgtype == AUDIO_DATA]
        if len({c.topic for c in audio}) != 1:
            found = _listing(connections, audio_types)
            raise BagError("no audio topic in the bag" if not audio else
                           f"several audio topics ({found}); choose one with --topic")
    chosen = audio[0]
    infos = [c for c in connections if c.msgtype == AUDIO_INFO]
    if conv.info_topic is not None:
        infos = [c for c in infos if c.topic == conv.info_topic]
        if not infos:
            raise BagError(f"no AudioInfo topic {conv.info_topic} in the bag")
    else:
        sibling = chosen.topic.rsplit("/", 1)[0] + "/audio_info"
        infos = [c for c in infos if c.topic == sibling] or (infos if len(
            {c.topic for c in infos}) == 1 else [])
    return _Topics(chosen, infos[0] if infos else None, chosen.msgtype == AUDIO_DATA_STAMPED)


def _listing(connections: Sequence[Any], types: Sequence[str]) -> str:
    return ", ".join(sorted({c.topic for c in connections if c.msgtype in types})) or "none"


def _configure(decoder: PayloadDecoder, info: Any) -> AudioFormat:
    """Configure ``decoder`` from an AudioInfo; the PCM format it delivers (AudioFormatError)."""
    return decoder.configure(coding_format=info.coding_format, sample_rate=info.sample_rate,
                             channels=info.channels, sample_format=info.sample_format,
                             bitrate=info.bitrate)


def convert(conv: Conversion) -> RecordingSummary:
    """Write ``conv.bag``'s audio topic to a file; its summary (path, sidecar).

    Raises:
        BagError: unreadable bag, missing topic, no usable ``audio_info``.
        RecordingError: the output exists (without ``overwrite``) or cannot be written.

    """
    store = audio_typestore()
    from rosbags.rosbag2 import Reader, ReaderError

    try:
        reader = Reader(conv.bag)
        reader.open()
    except (ReaderError, OSError) as err:
        raise BagError(f"cannot read the bag {str(conv.bag)!r}: {err}") from err
    try:
        topics = _pick_topics(reader.connections, conv)
        if topics.info is None:
            raise BagError(f"no audio_info for {topics.audio.topic} in the bag: the bytes cannot "
                           "be interpreted (choose one with --info-topic)")
        decoder = PayloadDecoder()
        first = _first_format(reader, topics.info, store, decoder)
        fmt = first
        if conv.sample_format is not None:
            fmt = AudioFormat(first.sample_rate_hz, first.channels, conv.sample_format)
        output = conv.output or _default_output(conv.bag, conv.container)
        access = FileAccess.of(group_readable=conv.group_readable)
        claimed = claim_path(output, overwrite=conv.overwrite, mode=access.file_mode)
        max_fill = conv.max_gap_fill_s if conv.fill_gaps else 0.0
        recording = Recording(claimed, fmt, RecordingOptions(
            container=conv.container, source_topic=topics.audio.topic,
            gaps=GapPolicy(tolerance_ns=round(conv.gap_tolerance_ms * 1e6), max_fill_s=max_fill),
            sync_period_s=3600.0, extra=(("bag", str(conv.bag.absolute())),)))
        bad = 0
        for chunk in _chunks(reader, topics, store, decoder):
            if chunk is None:
                bad += 1
                continue
            if not recording.push(chunk):
                break
        summary = recording.finish()
    except ReaderError as err:
        raise BagError(f"cannot read the bag {str(conv.bag)!r}: {err}") from err
    finally:
        reader.close()
    if bad:
        print(f"bag_to_wav: skipped {bad} chunks that were not whole frames of their format "
              f"or could not be decoded ({decoder.corrupt} corrupt)", file=sys.stderr)
    return summary


def _first_format(reader: Any, info: Any, store: Any, decoder: PayloadDecoder) -> AudioFormat:
    """The PCM format of the first audio_info, ``decoder`` configured with it."""
    for _, _, raw in reader.messages(connections=[info]):
        try:
            return _configure(decoder, store.deserialize_cdr(raw, AUDIO_INFO))
        except AudioFormatError as err:
            raise BagError(f"{info.topic}: {err}") from err
    raise BagError(f"{info.topic} holds no message")


def _chunks(reader: Any, topics: _Topics, store: Any, decoder: PayloadDecoder
            ) -> Iterator[Chunk | None]:
    """Chunks (decoded) in log order, each with the format in force; None for a malformed one.

    ``decoder`` is configured with the first audio_info, which applies to chunks logged before
    any audio_info.
    """
    wanted = [topics.audio] + ([topics.info] if topics.info is not None else [])
    for connection, log_ns, raw in reader.messages(connections=wanted):
        msg = store.deserialize_cdr(raw, connection.msgtype)
        if connection.msgtype == AUDIO_INFO:
            with contextlib.suppress(AudioFormatError):  # else keep the last good format
                _configure(decoder, msg)
            continue
        payload = bytes(msg.audio.data if topics.stamped else msg.data)
        if not payload:
            continue
        stamp: int | None = None
        if topics.stamped:
            stamp = int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)
        try:
            decoded = decoder.decode(payload, stamp)
        except AudioFormatError:
            yield None  # counted in decoder.corrupt
            continue
        fmt, data = decoder.format, decoded.pcm
        assert fmt is not None  # configured by _first_format
        if not data:  # an MP3 piece that completed no frame
            continue
        if len(data) % fmt.frame_bytes:
            yield None
            continue
        if decoded.stamp_ns is not None:
            stamp = decoded.stamp_ns  # earlier than the message's by concealed frames
        else:
            # No stamp: place the chunk by its log time (its end), never used to find gaps.
            stamp = log_ns - (len(data) // fmt.frame_bytes) * NS_PER_S // fmt.sample_rate_hz
        yield Chunk(data, fmt, stamp, topics.stamped, concealed_frames=decoded.concealed_frames,
                    coding=decoder.coding)


def _default_output(bag: Path, container: Container) -> Path:
    base = bag.absolute()
    return base.with_name(f"{base.name}.{container.value}")


def parse_args(argv: Sequence[str]) -> Conversion:
    """The command line as a :class:`Conversion` (argparse exits 2 on bad usage)."""
    parser = argparse.ArgumentParser(
        prog="bag_to_wav", description="Convert an audio_common_msgs topic of a rosbag2 bag "
        "(sqlite3 or mcap) to a WAV/FLAC/OGG file plus a JSON sidecar.")
    parser.add_argument("bag", type=Path, help="the bag directory (with metadata.yaml)")
    parser.add_argument("-o", "--output", type=Path,
                        help="output file (default: <bag>.<format> beside the bag)")
    parser.add_argument("-t", "--topic", help="AudioDataStamped or AudioData topic "
                        "(default: the only AudioDataStamped topic, else the only AudioData)")
    parser.add_argument("--info-topic", help="AudioInfo topic (default: <topic's namespace>/"
                        "audio_info, else the only AudioInfo topic)")
    parser.add_argument("-f", "--format", default="wav", choices=[c.value for c in Container],
                        help="file format (default: wav)")
    parser.add_argument("--sample-format", type=SampleFormat.parse,
                        help="store samples as this (" + supported_sample_formats()
                        + "; default: the bag's first audio_info)")
    parser.add_argument("--no-fill-gaps", action="store_true",
                        help="do not fill stamp gaps with silence (concatenate the chunks)")
    parser.add_argument("--gap-tolerance-ms", type=float, default=2.0,
                        help="stamp jitter that is not a gap (ms, default 2)")
    parser.add_argument("--max-gap-fill-s", type=float, default=60.0,
                        help="longer stamp jumps are not filled (s, default 60)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--group-readable", action="store_true",
                        help="let the owner's group read the output and its sidecar (0640); "
                        "default: owner only (0600), as voices are personal data")
    args = parser.parse_args(list(argv))
    return Conversion(
        bag=args.bag, output=args.output, topic=args.topic, info_topic=args.info_topic,
        container=Container(args.format), sample_format=args.sample_format,
        fill_gaps=not args.no_fill_gaps, gap_tolerance_ms=args.gap_tolerance_ms,
        max_gap_fill_s=args.max_gap_fill_s, overwrite=args.overwrite,
        group_readable=args.group_readable)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bag_to_wav`` console script."""
    conv = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        summary = convert(conv)
    except (BagError, RecordingError, AudioFormatError) as err:
        print(f"bag_to_wav: error: {err}", file=sys.stderr)
        return 1
    side = summary.sidecar
    print(f"{summary.path}: {side['duration_s']:.3f} s of {side['sample_rate']} Hz "
          f"{side['channels']} ch {side['sample_format']} from {side['source_topic']}; "
          f"{side['gaps']['count']} gaps ({side['gaps']['missing_s']:.3f} s filled)"
          + (f"; {side['concealed']['count']} losses concealed "
             f"({side['concealed']['concealed_s']:.3f} s)" if side["concealed"]["count"] else ""))
    if summary.error:
        print(f"bag_to_wav: error: {summary.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
