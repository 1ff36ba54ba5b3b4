"""Message payloads to PCM, whatever ``audio_info.coding_format`` says they carry.

Every node that consumes audio topics (speaker, recorder, echo canceller, bag_to_wav) reads
payloads through one :class:`PayloadDecoder`: raw PCM (``wave``) passes through untouched;
``opus`` and ``mp3`` are decoded with :class:`~kos_audio.core.codec.StreamDecoder`. For Opus,
messages lost on the link (a stamp later than the previous message's end) are concealed by
the decoder, and reported, so a recording has no hole and the loss is still counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from kos_audio.core.codec import COMPRESSED_CODINGS, StreamDecoder
from kos_audio.core.formats import PCM_CODINGS, AudioFormat
from kos_audio.core.stamping import NS_PER_S
from kos_audio.errors import AudioFormatError

#: A stamp gap longer than this (s) is a new stream, not a loss to conceal.
MAX_CONCEAL_S = 1.0
#: Opus never exceeds 510 kbit/s; an announced bitrate is taken as exceeded when a packet
#: carries more than this multiple of it (VBR stays well within 2x).
OPUS_MAX_BITRATE = 510_000
BITRATE_MARGIN = 4.0


@dataclass(frozen=True, slots=True)
class Decoded:
    """One message's audio as PCM.

    Attributes:
        pcm: interleaved PCM in :attr:`PayloadDecoder.format` (maybe empty: an MP3 piece
            that completes no frame).
        stamp_ns: the time of its first frame: the message's stamp, or earlier by the
            concealed frames in front of it (None for unstamped messages).
        concealed_frames: frames at the start of ``pcm`` that stand in for lost messages.

    """

    pcm: bytes
    stamp_ns: int | None
    concealed_frames: int = 0


class PayloadDecoder:
    """Decodes the payloads of one topic; :meth:`configure` with each ``audio_info``.

    Not thread-safe: one instance per topic, used from one thread.
    """

    def __init__(self) -> None:
        self.coding = ""
        self.format: AudioFormat | None = None
        self._codec: StreamDecoder | None = None
        self._next_ns: int | None = None  # where the next Opus message should start
        self._max_bitrate = OPUS_MAX_BITRATE

    @property
    def compressed(self) -> bool:
        """True when payloads are Opus or MP3, not raw PCM."""
        return self._codec is not None

    @property
    def corrupt(self) -> int:
        """Compressed payloads that could not be decoded."""
        return self._codec.corrupt if self._codec is not None else 0

    def configure(self, *, coding_format: str, sample_rate: int, channels: int,
                  sample_format: str, bitrate: int = 0) -> AudioFormat:
        """Take an ``audio_info``; returns the PCM format :meth:`decode` delivers.

        The same info again changes nothing; another one ends the old stream (a codec
        change mid-stream starts a fresh decoder).

        Raises:
            AudioFormatError: an unknown coding or sample format, an absurd rate or channel
                count; :class:`~kos_audio.core.codec.CodecUnavailable` when Opus/MP3 needs
                PyAV and it is missing. The previous configuration stays.

        """
        coding = coding_format.strip().lower()
        self._max_bitrate = min(OPUS_MAX_BITRATE, round(BITRATE_MARGIN * bitrate)) \
            if bitrate > 0 else OPUS_MAX_BITRATE
        if coding in PCM_CODINGS:
            fmt = AudioFormat.from_info(channels=channels, sample_rate=sample_rate,
                                        sample_format=sample_format, coding_format=coding)
            codec = None
        elif coding in COMPRESSED_CODINGS:
            if coding == self.coding and self._codec is not None and self.format is not None \
                    and (self.format.sample_rate_hz, self.format.channels) == (sample_rate,
                                                                               channels):
                return self.format
            codec = StreamDecoder(coding, int(sample_rate), int(channels))
            fmt = codec.format
        else:
            raise AudioFormatError(
                f"coding_format {coding_format!r} is unknown; this package takes raw PCM "
                f"('wave') and {', '.join(COMPRESSED_CODINGS)}")
        self.coding, self.format, self._codec, self._next_ns = coding, fmt, codec, None
        return fmt

    def decode(self, payload: bytes, stamp_ns: int | None = None) -> Decoded:
        """One message's payload as PCM (see :class:`Decoded`).

        Raises:
            AudioFormatError: not configured, or a corrupt compressed payload (dropped whole;
                the decoder goes on with the next one).

        """
        if self.format is None:
            raise AudioFormatError("no audio_info yet: the payload's coding is unknown")
        if self._codec is None:
            return Decoded(payload, stamp_ns)
        concealed = b""
        start_ns = stamp_ns
        rate = self.format.sample_rate_hz
        if self.coding == "opus" and stamp_ns is not None and self._next_ns is not None:
            missing = (stamp_ns - self._next_ns) * rate // NS_PER_S
            if 0 < missing <= MAX_CONCEAL_S * rate:
                concealed = self._codec.conceal(missing)
                start_ns = self._next_ns
        pcm = self._codec.decode(payload)
        frames = len(pcm) // self.format.frame_bytes
        if self.coding == "opus" and frames and \
                len(payload) * 8 * rate > self._max_bitrate * frames:
            # libopus decodes almost any bytes; raw PCM under an Opus audio_info would play
            # as loud noise. Its size gives it away: PCM is far above any Opus bitrate.
            self._codec.refuse_last()
            raise AudioFormatError(
                f"a {len(payload)}-byte payload for {frames * 1000 // rate} ms is "
                f"{len(payload) * 8 * rate // frames // 1000} kbit/s, beyond "
                f"{self._max_bitrate // 1000} kbit/s for this Opus stream: raw PCM under an "
                "Opus audio_info? Dropped")
        if stamp_ns is not None:
            self._next_ns = stamp_ns + frames * NS_PER_S // rate
        return Decoded(concealed + pcm, start_ns, len(concealed) // self.format.frame_bytes)

