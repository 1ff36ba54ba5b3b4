"""Helpers for reading what mic_node publishes."""

from __future__ import annotations

import numpy as np

from kos_audio.core import NS_PER_S


def stamps_ns(msgs: list) -> list[int]:  # type: ignore[type-arg]
    return [m.header.stamp.sec * NS_PER_S + m.header.stamp.nanosec for m in msgs]


def pcm16(msgs: list) -> np.ndarray:  # type: ignore[type-arg]
    """Concatenated S16LE samples of AudioDataStamped messages."""
    return np.frombuffer(b"".join(bytes(m.audio.data) for m in msgs), "<i2")


def gaps(msgs: list, rate: int) -> list[int]:  # type: ignore[type-arg]
    """Stamp differences (ns) minus the duration of the previous chunk, for every pair."""
    s = stamps_ns(msgs)
    frames = [len(m.audio.data) // 2 for m in msgs]
    return [b - a - f * NS_PER_S // rate for a, b, f in zip(s, s[1:], frames, strict=False)]


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))
