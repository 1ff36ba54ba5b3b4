"""The device source through real PortAudio and the private PulseAudio server."""

import time
from typing import Any

import numpy as np
import pytest

from kos_audio.errors import BackendError

pytestmark = pytest.mark.device


@pytest.fixture
def portaudio(pulse: Any) -> Any:
    from kos_audio.backends import portaudio

    return portaudio


@pytest.fixture
def device_module(pulse: Any) -> Any:
    from kos_audio.backends import device_source

    return device_source


def test_lists_and_finds_virtual_devices(portaudio: Any) -> None:
    names = [d.name for d in portaudio.list_devices() if d.max_input_channels > 0]
    assert "mic" in names and "array" in names
    assert portaudio.find_device("mic", output=False).name == "mic"
    with pytest.raises(BackendError, match="no input device matches 'nonexistent'"):
        portaudio.find_device("nonexistent", output=False)
    with pytest.raises(BackendError, match="several input devices match 'a'"):
        portaudio.find_device("a", output=False)


def test_captures_what_is_played_into_the_mic_feed(pulse: Any, device_module: Any) -> None:
    from kos_audio.core import AudioFormat, SampleFormat

    # 48 kHz is the null sink's own rate: PulseAudio does not resample, so capture is exact.
    fmt = AudioFormat(48000, 1, SampleFormat.S16LE)
    src = device_module.DeviceSource(fmt, device="mic", block_frames=960, latency="high")
    src.open()
    try:
        assert src.format == fmt
        ramp = np.arange(48000) * 7 % 20000 - 10000  # not periodic within a block
        signal = ramp.astype(np.int16)  # starts at -10000: its first sample is not silence
        got = []
        # Play only once the stream delivers (capture is running), not after a guessed sleep,
        # and read until the whole signal is in, not for a guessed time (a cold or loaded
        # machine starts streams and processes slower).
        deadline = time.monotonic() + 10
        while not got:
            assert time.monotonic() < deadline, "the mic delivered no block"
            block = src.read(0.2)
            if block:
                got.append(block.data)
        player = pulse.play(signal, device="micfeed", rate=48000)
        captured, start = 0, None
        while start is None or captured < start + len(signal):
            assert time.monotonic() < deadline + 10, f"{captured} samples; signal at {start}"
            block = src.read(0.2)
            if block:
                assert block.capture_time_ns and abs(block.capture_time_ns - time.time_ns()) < 1e9
                got.append(block.data)
                samples = np.frombuffer(block.data, "<i2")
                if start is None and np.any(samples):
                    start = captured + int(np.flatnonzero(samples)[0])
                captured += len(samples)
        player.wait(5)
    finally:
        src.close()
    x = np.frombuffer(b"".join(got), "<i2").astype(np.float64)
    corr = np.correlate(x, signal.astype(np.float64), mode="valid")
    best = int(np.argmax(corr))
    assert np.array_equal(x[best : best + len(signal)].astype(np.int16), signal)
