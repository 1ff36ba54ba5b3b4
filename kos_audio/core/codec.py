"""Compressed audio on the topics: Opus packets and MP3 byte streams, through PyAV (FFmpeg).

``audio_info.coding_format`` says what ``AudioData.data`` carries:

- ``opus``: one Opus packet per message (this package's mic_node with ``encoding: opus``);
  a lost message is concealed by the decoder (Opus packet loss concealment).
- ``mp3``: an MP3 byte stream cut at arbitrary byte boundaries (ros-drivers'
  ``audio_capture``, whose default output it is); frames are reassembled by FFmpeg's parser.

PyAV is optional: it is imported on first use, and without it :class:`CodecUnavailable` says
what to install. Everything decodes to interleaved S16LE. Not thread-safe: one instance per
stream, used from one thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.errors import AudioFormatError

#: ``coding_format`` values this module decodes (``wave`` is raw PCM, not handled here).
COMPRESSED_CODINGS = ("opus", "mp3")
#: Sample rates an Opus stream can have (Hz).
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
#: Opus frame durations (ms); one message carries one frame.
OPUS_FRAME_MS = (10.0, 20.0, 40.0, 60.0)
#: What to install for the codecs.
INSTALL_HINT = "pip install av (PyAV: FFmpeg with Opus and MP3 in its wheels)"


class CodecUnavailable(AudioFormatError):
    """PyAV is not installed; the message says what to install."""


def _av(coding: str) -> Any:
    try:
        import av
    except ImportError as err:
        raise CodecUnavailable(
            f"coding_format {coding!r} needs PyAV, which is not installed: {INSTALL_HINT}"
        ) from err
    return av


def _layout(channels: int) -> str:
    if channels not in (1, 2):
        raise AudioFormatError(f"compressed audio is mono or stereo, not {channels} channels")
    return "mono" if channels == 1 else "stereo"


class OpusEncoder:
    """S16LE PCM frames in, one Opus packet per frame out (libopus through PyAV).

    Args:
        fmt: the PCM format: S16LE, a rate in :data:`OPUS_RATES`, 1 or 2 channels.
        frame_ms: one of :data:`OPUS_FRAME_MS`.
        bitrate: bits/s (6000..510000); speech is clear from about 16000 mono.

    Raises:
        AudioFormatError: a format Opus cannot carry, or an invalid frame/bitrate.
        CodecUnavailable: PyAV is missing.

    """

    def __init__(self, fmt: AudioFormat, *, frame_ms: float = 20.0, bitrate: int = 32000) -> None:
        if fmt.sample_format is not SampleFormat.S16LE or fmt.sample_rate_hz not in OPUS_RATES:
            raise AudioFormatError(
                f"Opus carries S16LE at {', '.join(map(str, OPUS_RATES))} Hz, not "
                f"{fmt.describe()}")
        if frame_ms not in OPUS_FRAME_MS:
            raise AudioFormatError(
                f"Opus frames are {', '.join(f'{m:g}' for m in OPUS_FRAME_MS)} ms, not "
                f"{frame_ms:g}")
        if not 6000 <= bitrate <= 510000:
            raise AudioFormatError(f"Opus bitrate must be 6000..510000 bit/s, not {bitrate}")
        av = _av("opus")
        self.format = fmt
        self.frame_frames = round(fmt.sample_rate_hz * frame_ms / 1000)
        self._layout = _layout(fmt.channels)
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = fmt.sample_rate_hz
        ctx.layout = self._layout
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.options = {"frame_duration": f"{frame_ms:g}", "application": "voip"}
        ctx.open()
        self._ctx = ctx
        self._av = av
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        """One packet for exactly :attr:`frame_frames` frames of S16LE ``pcm``.

        Raises:
            AudioFormatError: ``pcm`` is not exactly one frame.

        """
        expected = self.frame_frames * self.format.frame_bytes
        if len(pcm) != expected:
            raise AudioFormatError(f"an Opus frame is {expected} bytes here, not {len(pcm)}")
        samples = np.frombuffer(pcm, "<i2").reshape(1, -1)
        frame = self._av.AudioFrame.from_ndarray(samples, format="s16", layout=self._layout)
        frame.sample_rate = self.format.sample_rate_hz
        frame.pts = self._pts
        self._pts += self.frame_frames
        return b"".join(bytes(p) for p in self._ctx.encode(frame))


class StreamDecoder:
    """One compressed stream (``opus`` or ``mp3``) decoded to S16LE.

    Args:
        coding: ``opus`` or ``mp3`` (``audio_info.coding_format``).
        sample_rate_hz: the rate ``audio_info`` announces; Opus decodes at it, MP3 at the
            stream's own rate, converted to it when they differ.
        channels: the channel count ``audio_info`` announces (1 or 2).

    Attributes:
        corrupt: messages that could not be decoded (each dropped whole, counted here).
        concealed_frames: frames the Opus decoder generated for lost messages.

    Raises:
        AudioFormatError: unknown coding, or a channel count the codec cannot carry.
        CodecUnavailable: PyAV is missing.

    """

    def __init__(self, coding: str, sample_rate_hz: int, channels: int) -> None:
        if coding not in COMPRESSED_CODINGS:
            raise AudioFormatError(
                f"unknown coding_format {coding!r}; this package decodes "
                f"{', '.join(COMPRESSED_CODINGS)} and raw PCM ('wave')")
        av = _av(coding)
        self.coding = coding
        self.format = AudioFormat(sample_rate_hz, channels, SampleFormat.S16LE)
        layout = _layout(channels)
        self._ctx = av.CodecContext.create("libopus" if coding == "opus" else "mp3", "r")
        if coding == "opus":
            self._ctx.sample_rate = sample_rate_hz
            self._ctx.layout = layout
        self._resampler = av.AudioResampler(format="s16", layout=layout, rate=sample_rate_hz)
        self._av = av
        self._last_toc = -1
        self._previous_toc = -1
        self._frames_in = 0  # decoder-rate frames handed to the resampler (Opus)
        self._frames_out = 0  # frames returned (Opus)
        self.corrupt = 0
        self.concealed_frames = 0

    def decode(self, payload: bytes) -> bytes:
        """S16LE for one message's payload (MP3: maybe b"" until a frame completes).

        Raises:
            AudioFormatError: the payload is not a valid packet of this coding; nothing of it
                is returned, :attr:`corrupt` counts it, and the stream goes on.

        """
        if not payload:
            return b""
        try:
            if self.coding == "opus":
                frames = list(self._ctx.decode(self._av.Packet(payload)))
                self._previous_toc, self._last_toc = self._last_toc, payload[0]
            else:
                frames = [f for p in self._ctx.parse(payload) for f in self._ctx.decode(p)]
        except (self._av.error.FFmpegError, ValueError) as err:
            self.corrupt += 1
            raise AudioFormatError(
                f"corrupt {self.coding} data ({len(payload)} bytes): {err}") from err
        return self._pcm(frames)

    def refuse_last(self) -> None:
        """The last payload decoded was not this stream's (a caller's check refused it).

        Concealment goes on from the packet before it, not from whatever its first byte said.
        """
        self._last_toc = self._previous_toc
        self.corrupt += 1

    def conceal(self, frames: int) -> bytes:
        """S16LE standing in for ``frames`` lost frames.

        Opus: the decoder's packet-loss concealment. MP3 (no packets to conceal): silence.
        """
        if frames <= 0:
            return b""
        if self.coding != "opus" or self._last_toc < 0:
            return bytes(frames * self.format.frame_bytes)
        out = bytearray()
        # A packet of only a TOC byte (code 0: one frame, of length 0) is a lost frame of
        # that configuration to libopus, which then conceals it (RFC 6716, 3.2.1).
        toc = bytes([self._last_toc & 0xFC])
        while len(out) < frames * self.format.frame_bytes:
            produced = self._pcm(list(self._ctx.decode(self._av.Packet(toc))))
            if not produced:
                break
            out += produced
        out = out[: frames * self.format.frame_bytes]
        self.concealed_frames += len(out) // self.format.frame_bytes
        return bytes(out) + bytes(frames * self.format.frame_bytes - len(out))

    def _pcm(self, frames: list[Any]) -> bytes:
        parts = []
        decoder_rate = self.format.sample_rate_hz
        for frame in frames:
            decoder_rate = frame.sample_rate
            self._frames_in += frame.samples
            for converted in self._resampler.resample(frame):
                parts.append(converted.to_ndarray().tobytes())
        pcm = b"".join(parts)
        if self.coding != "opus":
            return pcm
        # libopus decodes at 48 kHz; converting to the stream's rate (which divides 48000)
        # holds back the filter's delay once, at the start. Padding that start with silence
        # keeps one packet = one frame's worth of samples, which stamps and gap counts rely
        # on; the stream is then delayed by that filter delay (1 ms).
        due = self._frames_in * self.format.sample_rate_hz // decoder_rate
        short = due - self._frames_out - len(pcm) // self.format.frame_bytes
        if short > 0:
            pcm = bytes(short * self.format.frame_bytes) + pcm
        self._frames_out += len(pcm) // self.format.frame_bytes
        return pcm
