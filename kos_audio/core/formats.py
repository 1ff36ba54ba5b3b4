"""Sample formats and audio formats, with the ros-drivers ``audio_common_msgs`` spellings.

``AudioInfo.sample_format`` strings follow GStreamer/ros-drivers names (``S16LE``, ``F32LE``...);
``AudioInfo.coding_format`` ``"wave"`` means raw interleaved PCM without a WAV header.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kos_audio.errors import AudioFormatError

#: Sample rates outside this range are refused as absurd (Hz).
MIN_SAMPLE_RATE_HZ = 1_000
MAX_SAMPLE_RATE_HZ = 384_000
#: ``AudioInfo.channels`` is a uint8.
MAX_CHANNELS = 255

#: ``coding_format`` values that mean raw interleaved PCM (compared case-insensitively).
#: ros-drivers' audio_capture writes "wave"; an empty string is what a default-constructed
#: AudioInfo carries.
PCM_CODINGS = frozenset({"wave", "wav", "pcm", "raw", ""})


class SampleFormat(enum.Enum):
    """One sample's encoding; the value is the ros-drivers ``sample_format`` string."""

    U8 = "U8"
    S16LE = "S16LE"
    S24LE = "S24LE"  # packed: 3 bytes a sample
    S32LE = "S32LE"
    F32LE = "F32LE"

    @property
    def bytes_per_sample(self) -> int:
        """Size of one sample of one channel, in bytes."""
        return _BYTES[self]

    @property
    def bit_depth(self) -> int:
        """Bits per sample (8, 16, 24, 32)."""
        return _BYTES[self] * 8

    @property
    def is_float(self) -> bool:
        """True for IEEE float samples."""
        return self is SampleFormat.F32LE

    @classmethod
    def parse(cls, text: str) -> SampleFormat:
        """The format named ``text`` (case-insensitive, e.g. ``"s16le"``).

        Raises:
            AudioFormatError: the name is unknown; the message lists the supported ones.

        """
        try:
            return cls(text.strip().upper())
        except ValueError:
            raise AudioFormatError(
                f"unknown sample format {text!r}; supported: {supported_sample_formats()}"
            ) from None

    @classmethod
    def from_bit_depth(cls, bits: int) -> SampleFormat:
        """The signed integer format (U8 for 8) with ``bits`` bits, as KOS describes PCM.

        Raises:
            AudioFormatError: no integer format has that depth.

        """
        for fmt in (cls.U8, cls.S16LE, cls.S24LE, cls.S32LE):
            if fmt.bit_depth == bits:
                return fmt
        raise AudioFormatError(f"no PCM sample format has a bit depth of {bits}")


_BYTES = {
    SampleFormat.U8: 1,
    SampleFormat.S16LE: 2,
    SampleFormat.S24LE: 3,
    SampleFormat.S32LE: 4,
    SampleFormat.F32LE: 4,
}


def supported_sample_formats() -> str:
    """The supported ``sample_format`` names, comma separated, for messages and docs."""
    return ", ".join(f.value for f in SampleFormat)


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """Raw interleaved PCM: rate, channel count and sample encoding.

    Raises:
        AudioFormatError: on construction, when the rate or channel count is absurd.

    """

    sample_rate_hz: int
    channels: int
    sample_format: SampleFormat

    def __post_init__(self) -> None:
        if not MIN_SAMPLE_RATE_HZ <= self.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise AudioFormatError(
                f"sample rate {self.sample_rate_hz} Hz is outside "
                f"{MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise AudioFormatError(f"channel count {self.channels} is outside 1..{MAX_CHANNELS}")

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame (one sample of every channel)."""
        return self.channels * self.sample_format.bytes_per_sample

    @property
    def bytes_per_second(self) -> int:
        """Bytes of one second of audio."""
        return self.frame_bytes * self.sample_rate_hz

    @property
    def bitrate(self) -> int:
        """Bits per second, as ``AudioInfo.bitrate`` documents it."""
        return self.bytes_per_second * 8

    def frames_for_ms(self, duration_ms: float) -> int:
        """Whole frames in ``duration_ms`` milliseconds (at least 1)."""
        return max(1, round(self.sample_rate_hz * duration_ms / 1000.0))

    def frames_in(self, nbytes: int) -> int:
        """Frames in ``nbytes`` bytes.

        Raises:
            AudioFormatError: ``nbytes`` is not a whole number of frames.

        """
        frames, rest = divmod(nbytes, self.frame_bytes)
        if rest:
            raise AudioFormatError(
                f"{nbytes} bytes is not a whole number of {self.frame_bytes}-byte frames "
                f"({self.describe()})"
            )
        return frames

    def describe(self) -> str:
        """Short human form, e.g. ``16000 Hz 1 ch S16LE``."""
        return f"{self.sample_rate_hz} Hz {self.channels} ch {self.sample_format.value}"

    @classmethod
    def from_info(
        cls, *, channels: int, sample_rate: int, sample_format: str, coding_format: str = "wave"
    ) -> AudioFormat:
        """Validate the fields of an ``audio_common_msgs/AudioInfo``.

        Raises:
            AudioFormatError: compressed coding (e.g. ``mp3``), unknown sample format, absurd
                rate or channel count.

        """
        if coding_format.strip().lower() not in PCM_CODINGS:
            raise AudioFormatError(
                f"coding_format {coding_format!r} is not raw PCM; kos_audio handles 'wave' "
                "(raw interleaved PCM without a header)"
            )
        return cls(int(sample_rate), int(channels), SampleFormat.parse(sample_format))
