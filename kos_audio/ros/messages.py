"""Conversions between the core's types and ``audio_common_msgs`` / ``builtin_interfaces``."""

from __future__ import annotations

from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from builtin_interfaces.msg import Time

from kos_audio.core.formats import AudioFormat
from kos_audio.core.stamping import NS_PER_S

#: ``AudioInfo.coding_format`` for raw interleaved PCM, as ros-drivers' audio_capture writes it.
CODING_FORMAT = "wave"


def audio_info(fmt: AudioFormat) -> AudioInfo:
    """The AudioInfo describing raw PCM chunks in ``fmt`` (bitrate in bits/s)."""
    return AudioInfo(
        channels=fmt.channels, sample_rate=fmt.sample_rate_hz,
        sample_format=fmt.sample_format.value, bitrate=fmt.bitrate, coding_format=CODING_FORMAT,
    )


def format_of(info: AudioInfo) -> AudioFormat:
    """The format an AudioInfo announces.

    Raises:
        AudioFormatError: compressed coding, unknown sample format, absurd rate or channels.

    """
    return AudioFormat.from_info(
        channels=info.channels, sample_rate=info.sample_rate,
        sample_format=info.sample_format, coding_format=info.coding_format,
    )


def ros_time(ns: int) -> Time:
    """A ``builtin_interfaces/Time`` from nanoseconds."""
    sec, nanosec = divmod(ns, NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def time_ns(stamp: Time) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def audio_messages(
    data: bytes, stamp_ns: int, frame_id: str
) -> tuple[AudioData, AudioDataStamped]:
    """The unstamped and stamped messages for one chunk (bytes assigned, never listed)."""
    plain = AudioData(data=data)
    stamped = AudioDataStamped()
    stamped.header.stamp = ros_time(stamp_ns)
    stamped.header.frame_id = frame_id
    stamped.audio = plain
    return plain, stamped
