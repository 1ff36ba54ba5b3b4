"""Compressed test streams from real encoders: libopus (OpusEncoder, as mic_node uses it) and
LAME (PyAV's libmp3lame, as ros-drivers' audio_capture), cut the way each travels on topics.

Imports PyAV lazily; tests that use it should ``pytest.importorskip("av")`` first.
"""

from __future__ import annotations

import itertools

import numpy as np

from kos_audio.core import AudioFormat, SampleFormat
from kos_audio.core.codec import OpusEncoder


def tone_s16(rate: int, seconds: float, hz: float, amp: float = 0.5) -> np.ndarray:
    """A mono S16 sine, as int16 frames."""
    t = np.arange(round(rate * seconds)) / rate
    return np.round(amp * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")


def opus_packets(pcm: np.ndarray, rate: int, *, bitrate: int = 32000,
                 frame_ms: float = 20.0) -> list[bytes]:
    """One Opus packet per ``frame_ms`` of mono ``pcm`` (what mic_node encoding:=opus sends)."""
    encoder = OpusEncoder(AudioFormat(rate, 1, SampleFormat.S16LE), frame_ms=frame_ms,
                          bitrate=bitrate)
    n = encoder.frame_frames
    return [encoder.encode(pcm[i:i + n].tobytes()) for i in range(0, len(pcm) - n + 1, n)]


def mp3_stream(pcm: np.ndarray, rate: int, bitrate: int = 32000) -> bytes:
    """Mono ``pcm`` as one MP3 byte stream from LAME."""
    import av

    enc = av.CodecContext.create("libmp3lame", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = rate, "mono", "s16p", bitrate
    enc.open()
    out = bytearray()
    size = enc.frame_size
    for i in range(0, len(pcm) - size + 1, size):
        frame = av.AudioFrame.from_ndarray(pcm[i:i + size][None], format="s16p", layout="mono")
        frame.sample_rate, frame.pts = rate, i
        out += b"".join(bytes(p) for p in enc.encode(frame))
    out += b"".join(bytes(p) for p in enc.encode(None))
    return bytes(out)


def cut_anywhere(stream: bytes, *, seed: int = 3, most: int = 700) -> list[bytes]:
    """``stream`` cut at arbitrary byte boundaries (audio_capture publishes what GStreamer's
    appsink hands it, regardless of MP3 frame borders)."""
    sizes = np.random.default_rng(seed).integers(1, most, size=len(stream))
    cuts = np.cumsum(sizes)
    bounds = [0, *cuts[cuts < len(stream)].tolist(), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]
