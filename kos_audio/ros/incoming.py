"""One incoming audio topic as PCM, whatever its ``audio_info.coding_format`` (wave/opus/mp3).

The glue every consumer (speaker, recorder, echo canceller) shares around
:class:`~kos_audio.core.decoding.PayloadDecoder`: configuring it from an ``AudioInfo`` message,
and turning an undecodable payload into one throttled warning plus a count, so a corrupt
packet never ends a node.
"""

from __future__ import annotations

from typing import Any

from kos_audio.core.decoding import Decoded, PayloadDecoder
from kos_audio.core.formats import AudioFormat
from kos_audio.errors import AudioFormatError
from kos_audio.ros.throttle import ProblemLog


class IncomingAudio:
    """The decoder of one topic, its counters and its bad-input log.

    Not thread-safe: one instance per topic, used from the thread that handles the topic.
    Counters may be read from any thread (ints).

    Args:
        topic: named in log lines (e.g. ``audio`` or ``background/audio``).
        problems: the node's throttled log; corrupt payloads are warned there once per period.

    """

    def __init__(self, topic: str, problems: ProblemLog) -> None:
        self.topic = topic
        self._problems = problems
        self._decoder = PayloadDecoder()
        #: Payloads dropped because they could not be decoded (corrupt, or PCM under Opus).
        self.corrupt = 0
        #: Frames the Opus decoder generated in place of lost messages.
        self.concealed_frames = 0
        #: Lost-message runs concealed (each a stamp later than the previous message's end).
        self.concealments = 0

    @property
    def format(self) -> AudioFormat | None:
        """The PCM format :meth:`decode` delivers; None before a valid ``audio_info``."""
        return self._decoder.format

    @property
    def coding(self) -> str:
        """The configured ``coding_format`` (``wave``, ``opus``, ``mp3``; '' before one)."""
        return self._decoder.coding

    @property
    def concealed_s(self) -> float:
        """Concealed audio (s) at the current rate."""
        fmt = self._decoder.format
        return self.concealed_frames / fmt.sample_rate_hz if fmt else 0.0

    def configure(self, info: Any) -> AudioFormat:
        """Take an ``AudioInfo`` (rclpy or rosbags message); the PCM format delivered from now.

        Raises:
            AudioFormatError: unknown coding or sample format, absurd rate or channels; its
                :class:`~kos_audio.core.codec.CodecUnavailable` subclass when PyAV is needed
                and missing (the message says what to install). The old configuration stays.

        """
        return self._decoder.configure(
            coding_format=str(info.coding_format), sample_rate=int(info.sample_rate),
            channels=int(info.channels), sample_format=str(info.sample_format),
            bitrate=int(info.bitrate))

    def use(self, fmt: AudioFormat) -> None:
        """Take raw PCM in ``fmt`` until an ``audio_info`` says otherwise (node parameters)."""
        self._decoder.configure(coding_format="wave", sample_rate=fmt.sample_rate_hz,
                                channels=fmt.channels, sample_format=fmt.sample_format.value)

    def decode(self, data: Any, stamp_ns: int | None = None) -> Decoded | None:
        """One message's payload as PCM; None when it was dropped (warned and counted).

        Raw PCM is returned as it came (``bytes``, ``array`` or ``memoryview``); the caller
        checks whole frames as before.
        """
        try:
            decoded = self._decoder.decode(data if not self._decoder.compressed
                                           else bytes(data), stamp_ns)
        except AudioFormatError as err:
            self.corrupt += 1
            self._problems.warning(f"corrupt {self.topic}",
                                   f"{self.topic}: payload dropped: {err}")
            return None
        if decoded.concealed_frames:
            self.concealed_frames += decoded.concealed_frames
            self.concealments += 1
        return decoded
