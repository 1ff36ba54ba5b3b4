import numpy as np
import pytest

from kos_audio.core import AudioFormat, SampleFormat, StreamConverter, StreamResampler


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)[:, None]


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize(("rate_in", "rate_out"), [(16000, 48000), (48000, 16000),
                                                   (44100, 16000), (16000, 24000)])
def test_sine_survives_resampling(rate_in: int, rate_out: int) -> None:
    x = sine(440.0, rate_in, 2.0)
    rs = StreamResampler(rate_in, rate_out, 1)
    y = np.concatenate([rs.process(x), rs.flush()])
    assert abs(len(y) - len(x) * rate_out / rate_in) <= 2  # no frame lost or invented
    body = y[rate_out // 10 : -rate_out // 10, 0]  # skip the filter's edges
    assert peak_frequency(body, rate_out) == pytest.approx(440.0, abs=rate_out / len(body))
    assert rms(body) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_chunked_equals_whole_buffer() -> None:
    x = sine(1000.0, 16000, 1.0) + sine(3100.0, 16000, 1.0, 0.2)
    whole = StreamResampler(16000, 48000, 1)
    ref = np.concatenate([whole.process(x), whole.flush()])
    chunked = StreamResampler(16000, 48000, 1)
    sizes = np.random.default_rng(3).integers(1, 700, size=200)
    parts, start = [], 0
    for size in sizes:
        parts.append(chunked.process(x[start : start + size]))
        start += size
        if start >= len(x):
            break
    parts.append(chunked.process(x[start:]))
    parts.append(chunked.flush())
    got = np.concatenate(parts)
    assert len(got) == len(ref)
    assert np.max(np.abs(got - ref)) < 1e-5  # no clicks at chunk boundaries


def test_equal_rates_pass_through() -> None:
    rs = StreamResampler(16000, 16000, 2)
    x = np.ones((10, 2), np.float32)
    assert rs.passthrough
    assert rs.process(x) is x


def test_converter_passthrough_and_conversion() -> None:
    fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
    raw = (sine(440, 16000, 0.1) * 32767).astype("<i2").tobytes()
    same = StreamConverter(fmt, fmt)
    assert same.passthrough and same.process(raw) == raw
    to48 = StreamConverter(fmt, AudioFormat(48000, 2, SampleFormat.F32LE))
    out = to48.process(raw) + to48.flush()
    samples = np.frombuffer(out, "<f4").reshape(-1, 2)
    assert abs(len(samples) - 4800) <= 2
    assert np.array_equal(samples[:, 0], samples[:, 1])
