import pytest

from kos_audio.core import AudioFormat, SampleFormat
from kos_audio.errors import AudioFormatError


@pytest.mark.parametrize(("name", "bits"), [("U8", 8), ("S16LE", 16), ("S24LE", 24),
                                            ("S32LE", 32), ("F32LE", 32)])
def test_sample_formats_have_ros_drivers_names_and_depths(name: str, bits: int) -> None:
    fmt = SampleFormat.parse(name.lower())
    assert fmt.value == name
    assert fmt.bit_depth == bits


def test_unknown_sample_format_lists_supported() -> None:
    with pytest.raises(AudioFormatError, match="S16LE") as err:
        SampleFormat.parse("S17LE")
    assert "S17LE" in str(err.value)


def test_from_bit_depth_is_signed_pcm() -> None:
    assert SampleFormat.from_bit_depth(16) is SampleFormat.S16LE
    assert SampleFormat.from_bit_depth(24) is SampleFormat.S24LE
    with pytest.raises(AudioFormatError):
        SampleFormat.from_bit_depth(12)


def test_audio_format_sizes() -> None:
    fmt = AudioFormat(48000, 2, SampleFormat.S24LE)
    assert fmt.frame_bytes == 6
    assert fmt.bytes_per_second == 288000
    assert fmt.bitrate == 2304000
    assert fmt.frames_for_ms(20) == 960
    assert fmt.frames_in(600) == 100
    with pytest.raises(AudioFormatError, match="whole number"):
        fmt.frames_in(601)


@pytest.mark.parametrize(("rate", "channels"), [(0, 1), (999, 1), (10_000_000, 1), (16000, 0),
                                                (16000, 256)])
def test_absurd_formats_are_rejected(rate: int, channels: int) -> None:
    with pytest.raises(AudioFormatError):
        AudioFormat(rate, channels, SampleFormat.S16LE)


def test_from_info_accepts_wave_and_rejects_compressed() -> None:
    fmt = AudioFormat.from_info(channels=2, sample_rate=44100, sample_format="S16LE",
                                coding_format="WAVE")
    assert fmt == AudioFormat(44100, 2, SampleFormat.S16LE)
    assert AudioFormat.from_info(channels=1, sample_rate=16000, sample_format="F32LE",
                                 coding_format="").sample_format is SampleFormat.F32LE
    with pytest.raises(AudioFormatError, match="mp3"):
        AudioFormat.from_info(channels=1, sample_rate=16000, sample_format="S16LE",
                              coding_format="mp3")
    with pytest.raises(AudioFormatError, match="unknown sample format"):
        AudioFormat.from_info(channels=1, sample_rate=16000, sample_format="S8")
