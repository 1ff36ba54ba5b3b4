"""Audio and engine helpers shared by the playback engine and sink loop tests."""

from __future__ import annotations

import time

import numpy as np

from kos_audio.core import AudioFormat, PlaybackEngine, SampleFormat

OUT = AudioFormat(48000, 2, SampleFormat.F32LE)
S16 = AudioFormat(16000, 1, SampleFormat.S16LE)
BLOCK = 960  # 20 ms at 48 kHz


def tone(freq: float, seconds: float, fmt: AudioFormat = S16, amp: float = 0.5) -> bytes:
    n = round(seconds * fmt.sample_rate_hz)
    x = amp * np.sin(2 * np.pi * freq * np.arange(n) / fmt.sample_rate_hz)
    x = np.repeat(x[:, None], fmt.channels, axis=1)
    if fmt.sample_format is SampleFormat.F32LE:
        return x.astype("<f4").tobytes()
    return np.round(x * 32767).astype("<i2").tobytes()


def feed(engine: PlaybackEngine, data: bytes, fmt: AudioFormat = S16, chunk_ms: int = 20,
         **kw: object) -> None:
    step = fmt.frame_bytes * fmt.frames_for_ms(chunk_ms)
    for i in range(0, len(data), step):
        engine.enqueue(data[i : i + step], fmt, now_ns=time.time_ns(), **kw)  # type: ignore[arg-type]


def drain(engine: PlaybackEngine, max_blocks: int = 1000) -> tuple[np.ndarray, int]:
    """Pull until speech ran dry (ticking like the sink loop does); samples and audible."""
    out, audible = [], 0
    time.sleep(0.05)  # the producer is idle: the resampler tail may be flushed
    for _ in range(max_blocks):
        engine.flush_idle()
        block = engine.pull(BLOCK)
        out.append(block.samples)
        audible += block.audible_frames
        if block.audible_frames < BLOCK:
            break
    return np.concatenate(out), audible


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))
