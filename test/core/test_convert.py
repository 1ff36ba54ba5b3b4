import numpy as np
import pytest

from kos_audio.core import AudioFormat, SampleFormat, from_float, remix, to_float
from kos_audio.core.convert import count_non_finite, encode_into
from kos_audio.errors import AudioFormatError

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("sf", list(SampleFormat))
def test_bytes_round_trip_is_exact(sf: SampleFormat) -> None:
    fmt = AudioFormat(16000, 3, sf)
    raw = RNG.integers(0, 256, size=fmt.frame_bytes * 500, dtype=np.uint8).tobytes()
    if sf is SampleFormat.F32LE:  # random bytes are not all finite floats
        raw = RNG.uniform(-1, 1, 1500).astype("<f4").tobytes()
    frames = to_float(raw, fmt)
    assert frames.shape == (500, 3)
    assert frames.dtype == np.float32
    if sf is not SampleFormat.S32LE:  # float32 holds 24 bits exactly, not 32
        assert from_float(frames, sf) == raw


def test_known_values() -> None:
    s16 = np.array([0, 16384, -16384, 32767, -32768], "<i2").tobytes()
    assert to_float(s16, AudioFormat(8000, 1, SampleFormat.S16LE))[:, 0].tolist() == [
        0.0, 0.5, -0.5, 32767 / 32768, -1.0]
    # S24LE packed: -1 is ff ff ff, +1 is 01 00 00, min is 00 00 80
    s24 = bytes.fromhex("ffffff010000000080")
    got = to_float(s24, AudioFormat(8000, 1, SampleFormat.S24LE))[:, 0] * 8388608
    assert got.tolist() == [-1.0, 1.0, -8388608.0]
    assert to_float(bytes([128, 0, 255]), AudioFormat(8000, 1, SampleFormat.U8))[:, 0].tolist() \
        == [0.0, -1.0, 127 / 128]


@pytest.mark.parametrize("sf", [SampleFormat.U8, SampleFormat.S16LE, SampleFormat.S24LE,
                                SampleFormat.S32LE])
def test_encoding_saturates_instead_of_wrapping(sf: SampleFormat) -> None:
    loud = np.array([[1.7], [-3.0], [np.inf], [-np.inf], [np.nan]], np.float32)
    back = to_float(from_float(loud, sf), AudioFormat(8000, 1, sf))[:, 0]
    assert back[0] > 0.99 and back[2] > 0.99
    assert back[1] == -1.0 and back[3] == -1.0
    assert back[4] == 0.0


def test_float_encoding_repairs_non_finite() -> None:
    bad = np.array([[np.nan], [np.inf], [-np.inf], [0.25]], np.float32)
    assert count_non_finite(bad) == 3
    out = np.frombuffer(from_float(bad, SampleFormat.F32LE), "<f4")
    assert out.tolist() == [0.0, 1.0, -1.0, 0.25]


def test_partial_frames_are_refused() -> None:
    with pytest.raises(AudioFormatError, match="whole number"):
        to_float(b"\x00\x01\x02", AudioFormat(8000, 1, SampleFormat.S16LE))
    with pytest.raises(AudioFormatError):
        to_float(b"\x00" * 6, AudioFormat(8000, 2, SampleFormat.S16LE))


def test_remix() -> None:
    stereo = np.array([[0.2, 0.4], [-1.0, 1.0]], np.float32)
    assert remix(stereo, 1)[:, 0].tolist() == pytest.approx([0.3, 0.0])
    mono = np.array([[0.5], [-0.25]], np.float32)
    assert remix(mono, 3).tolist() == [[0.5] * 3, [-0.25] * 3]
    eight = np.arange(16, dtype=np.float32).reshape(2, 8)
    assert remix(eight, 2).tolist() == [[0, 1], [8, 9]]
    assert remix(stereo, 2) is stereo
    with pytest.raises(AudioFormatError):
        remix(stereo, 0)


@pytest.mark.parametrize("sample_format", list(SampleFormat))
def test_encode_into_writes_what_from_float_returns(sample_format: SampleFormat) -> None:
    # The device sink encodes straight into PortAudio's buffer; it must be the same bytes.
    rng = np.random.default_rng(7)
    frames = rng.uniform(-1.0, 1.0, (441, 2)).astype(np.float32)
    frames[:4] = [[1.0, -1.0], [0.99999, -0.99999], [0.0, 1e-9], [0.5, -0.5]]  # the edges
    expected = from_float(frames, sample_format)
    out = bytearray(len(expected))
    encode_into(frames, sample_format, out)
    assert bytes(out) == expected
