"""Opus and MP3 on the topics: bitrate on the wire and CPU of encoding and decoding.

    scripts/benchmark.py codecs [--seconds 60]

In this process, no ROS: a speech-like signal (a gliding voiced pitch with harmonics, syllables
at 4 Hz, unvoiced noise bursts) is encoded and decoded as fast as possible with the package's
own classes (OpusEncoder as mic_node uses it; PayloadDecoder as every consumer uses it).

- Opus, mono, 20 ms frames (one packet per message), at 16 and 48 kHz and 16/32 kbit/s:
  bitrate on the wire = payload bytes/s measured (without the ROS message's own overhead);
  encode and decode CPU = time.process_time() over ``--seconds`` of audio, as % of one core
  in real time.
- MP3 (LAME via PyAV, what ros-drivers' audio_capture sends), cut at arbitrary byte
  boundaries: decode CPU, and its bitrate.
- Raw PCM (S16LE mono) for comparison: its bitrate.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from kos_audio.core import AudioFormat, SampleFormat
from kos_audio.core.codec import OpusEncoder
from kos_audio.core.decoding import PayloadDecoder

FRAME_MS = 20.0


def speech_like(rate: int, seconds: float, seed: int = 1) -> np.ndarray:
    """Mono S16 that keeps a speech codec busy (not a tone, which Opus codes for almost free)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)  # Hz, gliding
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12) if k * 300 < rate / 2)
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    unvoiced = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 1.3 * t) > 0.8)
    x = 0.25 * voiced * syllables + 0.05 * unvoiced
    return np.round(np.clip(x, -1, 1) * 32767).astype("<i2")


def _percent(cpu_s: float, audio_s: float) -> float:
    return 100.0 * cpu_s / audio_s


def opus(rate: int, bitrate: int, seconds: float) -> str:
    fmt = AudioFormat(rate, 1, SampleFormat.S16LE)
    pcm = speech_like(rate, seconds)
    encoder = OpusEncoder(fmt, frame_ms=FRAME_MS, bitrate=bitrate)
    n = encoder.frame_frames
    frames = [pcm[i:i + n].tobytes() for i in range(0, len(pcm) - n + 1, n)]
    t0 = time.process_time()
    packets = [encoder.encode(f) for f in frames]
    encode_s = time.process_time() - t0
    decoder = PayloadDecoder()
    decoder.configure(coding_format="opus", sample_rate=rate, channels=1,
                      sample_format="S16LE", bitrate=bitrate)
    frame_ns = round(FRAME_MS * 1e6)
    t0 = time.process_time()
    out = sum(len(decoder.decode(p, k * frame_ns).pcm) for k, p in enumerate(packets))
    decode_s = time.process_time() - t0
    audio_s = len(frames) * FRAME_MS / 1000
    assert out == len(frames) * n * 2, "the decoder lost frames"
    wire = sum(len(p) for p in packets) * 8 / audio_s
    return (f"opus {rate // 1000:>2} kHz mono {bitrate // 1000:>2} kbit/s: on the wire "
            f"{wire / 1000:5.1f} kbit/s ({wire / (rate * 16):6.2%} of PCM); encode "
            f"{_percent(encode_s, audio_s):5.2f} % of a core, decode "
            f"{_percent(decode_s, audio_s):5.2f} %")


def mp3(rate: int, bitrate: int, seconds: float) -> str:
    import av

    pcm = speech_like(rate, seconds)
    enc = av.CodecContext.create("libmp3lame", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = rate, "mono", "s16p", bitrate
    enc.open()
    stream = bytearray()
    size = enc.frame_size
    for i in range(0, len(pcm) - size + 1, size):
        frame = av.AudioFrame.from_ndarray(pcm[i:i + size][None], format="s16p", layout="mono")
        frame.sample_rate, frame.pts = rate, i
        stream += b"".join(bytes(p) for p in enc.encode(frame))
    stream += b"".join(bytes(p) for p in enc.encode(None))
    sizes = np.random.default_rng(3).integers(1, 700, size=len(stream))
    cuts = [0, *np.cumsum(sizes)[np.cumsum(sizes) < len(stream)].tolist(), len(stream)]
    pieces = [bytes(stream[a:b]) for a, b in itertools.pairwise(cuts)]
    decoder = PayloadDecoder()
    decoder.configure(coding_format="mp3", sample_rate=rate, channels=1,
                      sample_format="S16LE", bitrate=bitrate)
    t0 = time.process_time()
    out = sum(len(decoder.decode(p).pcm) for p in pieces)
    decode_s = time.process_time() - t0
    audio_s = len(pcm) / rate
    assert out >= (len(pcm) - 2 * size) * 2, "the decoder lost frames"
    wire = len(stream) * 8 / audio_s
    return (f"mp3  {rate // 1000:>2} kHz mono {bitrate // 1000:>2} kbit/s: on the wire "
            f"{wire / 1000:5.1f} kbit/s ({wire / (rate * 16):6.2%} of PCM); decode "
            f"{_percent(decode_s, audio_s):5.2f} % of a core ({len(pieces)} pieces cut "
            "anywhere)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmark codecs",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="audio encoded/decoded per case (s, default 60)")
    opts = parser.parse_args(argv)
    for rate in (16000, 48000):
        print(f"raw PCM {rate // 1000:>2} kHz mono S16LE: on the wire {rate * 16 / 1000:.0f} "
              "kbit/s")
        for bitrate in (16000, 32000):
            print(opus(rate, bitrate, opts.seconds))
    for rate, bitrate in ((16000, 32000), (48000, 64000)):
        print(mp3(rate, bitrate, opts.seconds))
    return 0
