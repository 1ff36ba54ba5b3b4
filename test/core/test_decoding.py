"""PayloadDecoder: raw PCM, Opus with concealment of lost messages, MP3, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from kos_audio.core import AudioFormat, SampleFormat
from kos_audio.core.decoding import PayloadDecoder
from kos_audio.errors import AudioFormatError

pytest.importorskip("av")
from kos_audio.core.codec import OpusEncoder

T0 = 1_700_000_000_000_000_000
FRAME_NS = 20_000_000


def _opus_packets(count: int) -> list[bytes]:
    encoder = OpusEncoder(AudioFormat(16000, 1, SampleFormat.S16LE))
    t = np.arange(count * 320) / 16000
    pcm = (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2")
    return [encoder.encode(pcm[k * 320 : (k + 1) * 320].tobytes()) for k in range(count)]


def test_raw_pcm_passes_through_untouched() -> None:
    decoder = PayloadDecoder()
    fmt = decoder.configure(coding_format="wave", sample_rate=16000, channels=1,
                            sample_format="S16LE")
    assert fmt == AudioFormat(16000, 1, SampleFormat.S16LE)
    payload = bytes(range(200)) * 2
    out = decoder.decode(payload, T0)
    assert (out.pcm, out.stamp_ns, out.concealed_frames) == (payload, T0, 0)
    assert not decoder.compressed


def test_lost_opus_messages_are_concealed_in_place_and_counted() -> None:
    decoder = PayloadDecoder()
    decoder.configure(coding_format="opus", sample_rate=16000, channels=1, sample_format="S16LE")
    packets = _opus_packets(30)
    results = [decoder.decode(p, T0 + k * FRAME_NS) for k, p in enumerate(packets)
               if k not in (10, 11, 12)]  # three messages lost on the link
    after_loss = results[10]
    assert after_loss.concealed_frames == 3 * 320
    assert after_loss.stamp_ns == T0 + 10 * FRAME_NS  # starts where the loss started
    assert len(after_loss.pcm) == 4 * 640
    # The decoded stream is whole: every frame of the 30 messages, in one timeline.
    assert sum(len(r.pcm) for r in results) == 30 * 640
    assert np.abs(np.frombuffer(after_loss.pcm, "<i2")[:960]).max() > 1000  # not silence


def test_a_codec_change_mid_stream_restarts_and_a_corrupt_packet_is_dropped() -> None:
    decoder = PayloadDecoder()
    decoder.configure(coding_format="opus", sample_rate=16000, channels=1, sample_format="S16LE")
    packets = _opus_packets(5)
    decoder.decode(packets[0], T0)
    with pytest.raises(AudioFormatError, match="corrupt opus"):
        decoder.decode(b"\xff\xff\xff", T0 + FRAME_NS)
    assert decoder.corrupt == 1
    assert len(decoder.decode(packets[1], T0 + 2 * FRAME_NS).pcm) == 640 + 320 * 2
    # The publisher switches to raw PCM: new audio_info, payloads pass through again.
    decoder.configure(coding_format="wave", sample_rate=16000, channels=1, sample_format="S16LE")
    assert decoder.decode(b"\x01\x00" * 320, T0).pcm == b"\x01\x00" * 320


@pytest.mark.parametrize(("rate", "bitrate"), [(16000, 32000), (48000, 32000), (48000, 0)])
def test_an_info_claiming_opus_but_carrying_pcm_is_refused_not_played(
        rate: int, bitrate: int) -> None:
    # libopus decodes almost any bytes: the payload's size is what tells PCM apart (or
    # FFmpeg refuses a packet longer than Opus allows).
    decoder = PayloadDecoder()
    decoder.configure(coding_format="opus", sample_rate=rate, channels=1,
                      sample_format="S16LE", bitrate=bitrate)
    for amplitude in (8000, 100, 0):
        pcm = (np.sin(np.arange(rate // 50) * 0.3) * amplitude).astype("<i2").tobytes()
        with pytest.raises(AudioFormatError,
                           match=r"raw PCM under an Opus audio_info|corrupt opus"):
            decoder.decode(pcm, T0)


def test_unknown_codings_and_missing_info_are_clear_errors() -> None:
    decoder = PayloadDecoder()
    with pytest.raises(AudioFormatError, match="no audio_info yet"):
        decoder.decode(b"\x00\x00", T0)
    with pytest.raises(AudioFormatError, match="coding_format 'aac' is unknown"):
        decoder.configure(coding_format="aac", sample_rate=16000, channels=1,
                          sample_format="S16LE")
    with pytest.raises(AudioFormatError, match="mono or stereo"):
        decoder.configure(coding_format="mp3", sample_rate=16000, channels=6,
                          sample_format="S16LE")
    assert decoder.format is None  # a refused info leaves the decoder as it was
