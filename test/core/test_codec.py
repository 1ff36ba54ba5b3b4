"""Opus and MP3 through PyAV: real encoders (libopus, LAME) and FFmpeg's decoders."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kos_audio.core import AudioFormat, SampleFormat
from kos_audio.core.codec import CodecUnavailable, OpusEncoder, StreamDecoder
from kos_audio.errors import AudioFormatError

av = pytest.importorskip("av")


def _tone(rate: int, channels: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    mono = (np.sin(2 * np.pi * hz * t) * 10000).astype("<i2")
    return np.repeat(mono[:, None], channels, axis=1)


def _best_match(decoded: np.ndarray, original: np.ndarray, max_delay: int) -> tuple[int, float]:
    """The codec delay (frames) and the SNR (dB) of ``decoded`` against ``original``."""
    ref = original[:, 0].astype(np.float64)
    out = decoded[:, 0].astype(np.float64)
    n = len(ref) - max_delay
    errors = [np.mean((out[d : d + n] - ref[:n]) ** 2) for d in range(max_delay)]
    delay = int(np.argmin(errors))
    return delay, 10 * np.log10(np.mean(ref[:n] ** 2) / max(errors[delay], 1e-9))


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (48000, 1), (48000, 2)])
def test_opus_round_trip_keeps_every_frame_and_the_signal(rate: int, channels: int) -> None:
    fmt = AudioFormat(rate, channels, SampleFormat.S16LE)
    encoder = OpusEncoder(fmt, frame_ms=20.0, bitrate=48000)
    decoder = StreamDecoder("opus", rate, channels)
    pcm = _tone(rate, channels, 1.0)
    step = encoder.frame_frames
    packets = [encoder.encode(pcm[i : i + step].tobytes()) for i in range(0, len(pcm), step)]
    assert all(0 < len(p) < step * fmt.frame_bytes // 4 for p in packets)  # compressed
    out = np.frombuffer(b"".join(decoder.decode(p) for p in packets), "<i2")
    out = out.reshape(-1, channels)
    assert len(out) == len(pcm)  # one frame in, one frame out
    delay, snr = _best_match(out, pcm, max_delay=rate // 50)
    assert snr > 15, f"SNR {snr:.1f} dB at delay {delay}"


def test_a_lost_opus_packet_is_concealed_and_counted() -> None:
    rate = 48000
    encoder = OpusEncoder(AudioFormat(rate, 1, SampleFormat.S16LE))
    decoder = StreamDecoder("opus", rate, 1)
    pcm = _tone(rate, 1, 1.0)
    packets = [encoder.encode(pcm[i : i + 960].tobytes()) for i in range(0, len(pcm), 960)]
    out = bytearray()
    for k, packet in enumerate(packets):
        out += decoder.conceal(960) if k in (20, 21) else decoder.decode(packet)
    assert len(out) == len(pcm) * 2  # the stream keeps its length
    assert decoder.concealed_frames == 1920
    concealed = np.frombuffer(bytes(out), "<i2")[20 * 960 : 22 * 960]
    assert np.abs(concealed).max() > 2000  # the tone goes on, not silence


def test_a_corrupt_opus_packet_is_refused_counted_and_the_stream_goes_on() -> None:
    encoder = OpusEncoder(AudioFormat(16000, 1, SampleFormat.S16LE))
    decoder = StreamDecoder("opus", 16000, 1)
    pcm = _tone(16000, 1, 0.2)
    packets = [encoder.encode(pcm[i : i + 320].tobytes()) for i in range(0, len(pcm), 320)]
    decoder.decode(packets[0])
    with pytest.raises(AudioFormatError, match="corrupt opus"):
        decoder.decode(bytes([0xFF, 0xFF, 0xFF]))  # code 3 with an impossible frame count
    assert decoder.corrupt == 1
    assert len(decoder.decode(packets[1])) == 640


def _mp3(pcm: np.ndarray, rate: int) -> bytes:
    """MP3 from LAME (libmp3lame in PyAV's FFmpeg), as audio_capture's encoder makes it."""
    enc = av.CodecContext.create("libmp3lame", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = rate, "mono", "s16p", 32000
    enc.open()
    out = bytearray()
    size = enc.frame_size
    for i in range(0, len(pcm) - size + 1, size):
        frame = av.AudioFrame.from_ndarray(pcm[i : i + size, 0][None], format="s16p",
                                           layout="mono")
        frame.sample_rate, frame.pts = rate, i
        out += b"".join(bytes(p) for p in enc.encode(frame))
    out += b"".join(bytes(p) for p in enc.encode(None))
    return bytes(out)


def test_mp3_cut_at_arbitrary_byte_boundaries_decodes_whole() -> None:
    rate = 16000
    pcm = _tone(rate, 1, 2.0)
    stream = _mp3(pcm, rate)
    decoder = StreamDecoder("mp3", rate, 1)
    cuts = np.cumsum(np.random.default_rng(3).integers(1, 700, size=len(stream)))
    pieces = np.split(np.frombuffer(stream, np.uint8), cuts[cuts < len(stream)])
    out = np.frombuffer(b"".join(decoder.decode(p.tobytes()) for p in pieces), "<i2")
    # LAME adds its encoder delay and pads the last frame; nothing may be missing.
    assert len(pcm) - 1152 <= len(out) <= len(pcm) + 2 * 1152
    delay, snr = _best_match(out[:, None], pcm, max_delay=2400)
    assert snr > 10, f"SNR {snr:.1f} dB at delay {delay}"
    assert decoder.corrupt == 0


def test_opus_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(AudioFormatError, match="Opus carries"):
        OpusEncoder(AudioFormat(44100, 1, SampleFormat.S16LE))
    with pytest.raises(AudioFormatError, match="frames are"):
        OpusEncoder(AudioFormat(16000, 1, SampleFormat.S16LE), frame_ms=25.0)
    with pytest.raises(AudioFormatError, match="mono or stereo"):
        StreamDecoder("opus", 48000, 3)
    with pytest.raises(AudioFormatError, match="unknown coding_format 'aac'"):
        StreamDecoder("aac", 48000, 1)


def test_without_pyav_the_error_says_what_to_install() -> None:
    # A Python where `import av` fails (the documented way to make a module unimportable).
    code = ("import sys; sys.modules['av'] = None\n"
            "from kos_audio.core.codec import StreamDecoder\n"
            "StreamDecoder('opus', 48000, 1)\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert "CodecUnavailable: coding_format 'opus' needs PyAV" in result.stderr
    assert "pip install av" in result.stderr
    assert issubclass(CodecUnavailable, AudioFormatError)
