"""Test signals as the audio topics carry them."""

from __future__ import annotations

import numpy as np

from kos_audio.core import AudioFormat, from_float


def tone_chunks(fmt: AudioFormat, seconds: float, chunk_s: float = 0.02) -> list[bytes]:
    """A 440 Hz tone at 0.3 of full scale in ``fmt``, as PCM chunks of ``chunk_s``."""
    n = round(fmt.sample_rate_hz * seconds)
    t = np.arange(n) / fmt.sample_rate_hz
    data = from_float((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None],
                      fmt.sample_format)
    step = round(fmt.sample_rate_hz * chunk_s) * fmt.frame_bytes
    return [data[i:i + step] for i in range(0, len(data), step)]
