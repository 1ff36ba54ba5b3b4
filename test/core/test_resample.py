import itertools

import numpy as np
import pytest

from kos_audio.core import AudioFormat, SampleFormat, StreamConverter, StreamResampler
from kos_audio.core.resample import HALF_WIDTH, PolyphaseResampler


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


@pytest.mark.parametrize(("rate_in", "rate_out"), [(16000, 48000), (16000, 44100),
                                                   (48000, 16000), (22050, 48000)])
def test_polyphase_output_keeps_pace_with_its_input(rate_in: int, rate_out: int) -> None:
    # soxr's HQ stream returns nothing for two or three 20 ms chunks, then all at once; a
    # playback queue fed from it runs dry in between. This one returns each chunk's worth.
    x = sine(440.0, rate_in, 1.0)
    rs = PolyphaseResampler(rate_in, rate_out, 1)
    chunk = rate_in // 50
    sizes = [len(rs.process(x[i : i + chunk])) for i in range(0, len(x), chunk)]
    assert all(abs(n - rate_out // 50) <= 1 for n in sizes[1:])
    look_ahead = HALF_WIDTH * max(1.0, rate_in / rate_out) * rate_out / rate_in  # out frames
    assert rate_out // 50 - sizes[0] <= look_ahead + 1  # only the kernel's look-ahead waits
    assert sum(sizes) + len(rs.flush()) == rate_out  # no frame lost or invented


@pytest.mark.parametrize(("rate_in", "rate_out"), [(16000, 48000), (16000, 44100),
                                                   (44100, 16000), (16000, 24000)])
def test_polyphase_is_accurate_and_chunking_does_not_matter(rate_in: int, rate_out: int
                                                            ) -> None:
    x = np.concatenate([sine(440.0, rate_in, 1.0), -sine(440.0, rate_in, 1.0)], axis=1)
    whole = PolyphaseResampler(rate_in, rate_out, 2)
    ref = np.concatenate([whole.process(x), whole.flush()])
    chunked = PolyphaseResampler(rate_in, rate_out, 2)
    sizes = np.random.default_rng(5).integers(1, 900, size=400)
    bounds = np.minimum(np.cumsum(np.concatenate(([0], sizes))), len(x))
    parts = [chunked.process(x[a:b]) for a, b in itertools.pairwise(bounds)]
    got = np.concatenate([*parts, chunked.process(x[bounds[-1]:]), chunked.flush()])
    assert got.dtype == np.float32 and got.shape == ref.shape == (rate_out, 2)
    assert np.max(np.abs(got - ref)) < 1e-5  # no clicks at chunk boundaries
    ideal = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(rate_out) / rate_out)
    body = slice(rate_out // 10, -rate_out // 10)
    assert np.max(np.abs(got[body, 0] - ideal[body])) < 1e-3  # aligned: sample k at k / rate
    assert np.array_equal(got[:, 0], -got[:, 1])


def test_steady_converter_uses_soxr_for_a_rate_pair_without_a_small_period() -> None:
    assert PolyphaseResampler.supports(11025, 48000) and PolyphaseResampler.supports(44100, 16000)
    assert not PolyphaseResampler.supports(16001, 44100)  # 44100 phases
    with pytest.raises(ValueError, match="phases"):
        PolyphaseResampler(16001, 44100, 1)
    odd = StreamConverter(AudioFormat(16001, 1, SampleFormat.F32LE),
                          AudioFormat(44100, 1, SampleFormat.F32LE), steady=True)
    x = sine(440.0, 16001, 1.0)
    y = np.concatenate([odd.to_frames(x.tobytes()), odd.flush_frames()])
    assert abs(len(y) - 44100) <= 2
