"""The mixer: ducking envelope, volume, saturation (pure numpy, real arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from kos_audio.core.mixer import DUCK_ATTACK_S, DUCK_HOLD_S, DUCK_RELEASE_S, Ducker, Mixer

RATE = 48000


def sine(freq: float, amp: float, frames: int, channels: int = 2) -> np.ndarray:
    x = (amp * np.sin(2 * np.pi * freq * np.arange(frames) / RATE)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def run_envelope(ducker: Ducker, blocks: list[int], block: int = 960) -> np.ndarray:
    """Envelope over blocks, each with the given count of leading speech frames."""
    return np.concatenate([ducker.envelope(block, speech) for speech in blocks])


def test_envelope_ducks_during_speech_holds_then_releases() -> None:
    ducker = Ducker(RATE, gain=0.5, duck_gain=0.15)
    block = 960  # 20 ms
    quiet, speech = 10, 25  # blocks
    env = run_envelope(ducker, [0] * quiet + [block] * speech + [0] * 50, block)
    assert np.allclose(env[: quiet * block], 0.5)
    start = quiet * block
    attack = round(DUCK_ATTACK_S * RATE)
    assert env[start] < 0.5  # ducking starts with the first speech frame
    assert np.allclose(env[start + attack + 1 : start + speech * block], 0.15)
    end = start + speech * block
    hold = round(DUCK_HOLD_S * RATE)
    assert np.allclose(env[end : end + hold], 0.15)  # held between words
    release = round(DUCK_RELEASE_S * RATE)
    assert env[end + hold + release // 2] == pytest.approx(0.325, abs=0.02)
    assert np.allclose(env[end + hold + release + 1 :], 0.5)
    # Linear ramps, never a jump: a step is at most the attack slope.
    assert np.max(np.abs(np.diff(env))) <= 0.35 / (DUCK_ATTACK_S * RATE) + 1e-6


def test_gain_change_while_running_slides_to_new_value() -> None:
    ducker = Ducker(RATE, gain=0.5, duck_gain=0.15)
    run_envelope(ducker, [0] * 5)
    ducker.gain = 1.0
    env = run_envelope(ducker, [0] * 30)
    assert env[0] < 0.51 and env[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="background gain"):
        ducker.gain = float("nan")


def test_speech_at_unity_background_ducked() -> None:
    mixer = Mixer(RATE, 2, gain=0.5, duck_gain=0.15)
    block = 960
    speech, background = sine(1000, 0.5, block * 50), sine(300, 0.5, block * 50)
    out = np.concatenate([
        mixer.mix(block, speech[i : i + block], background[i : i + block])
        for i in range(0, block * 50, block)
    ])
    steady = slice(block * 5, block * 50)  # after the attack
    residual = out[steady] - speech[steady]
    # What is left after removing the unity speech is exactly the ducked background.
    assert np.allclose(residual, background[steady] * 0.15, atol=1e-6)


def test_background_alone_plays_at_its_gain_and_frames_past_input_are_silence() -> None:
    mixer = Mixer(RATE, 1, gain=0.5, duck_gain=0.15)
    background = sine(300, 0.8, 500, channels=1)
    out = mixer.mix(960, np.zeros((0, 1), np.float32), background)
    assert out.shape == (960, 1)
    assert np.allclose(out[:500], background * 0.5)
    assert not out[500:].any()


def test_loud_mix_saturates_never_wraps() -> None:
    mixer = Mixer(RATE, 2, volume=2.0, gain=1.0, duck_gain=1.0)
    speech = sine(1000, 1.0, 960)
    background = sine(1000, 1.0, 960)
    out = mixer.mix(960, speech, background)
    assert out.max() == pytest.approx(1.0) and out.min() == pytest.approx(-1.0)
    expected = speech * 2 + background * 2
    loud = np.abs(expected) > 0.1
    # Wraparound would flip signs; saturation keeps every sample's sign.
    assert np.all(np.sign(out[loud]) == np.sign(expected[loud]))
    assert mixer.clipped_samples > 0


def test_volume_out_of_range_refused() -> None:
    with pytest.raises(ValueError, match="volume"):
        Mixer(RATE, 2, volume=5.0)
    mixer = Mixer(RATE, 2)
    with pytest.raises(ValueError, match="volume"):
        mixer.volume = -0.1
    assert mixer.volume == 1.0


def test_advancing_without_background_keeps_the_envelope_on_time() -> None:
    # Blocks without background skip computing gains; the duck must still hold and release
    # exactly as if they had been computed.
    blocks = [0] * 3 + [960] * 5 + [300] + [0] * 30
    computed, advanced = Ducker(RATE, gain=0.5, duck_gain=0.15), Ducker(RATE, gain=0.5,
                                                                       duck_gain=0.15)
    for i, speech in enumerate(blocks):
        computed.envelope(960, speech)
        advanced.advance(960, speech)
        assert advanced.current == pytest.approx(computed.current, abs=1e-6), i


def test_speech_alone_in_a_whole_block_is_passed_through_unmodified() -> None:
    mixer = Mixer(RATE, 2)
    speech = sine(440, 0.5, 960)
    kept = speech.copy()
    out = mixer.mix(960, speech, np.zeros((0, 2), np.float32))
    assert np.array_equal(out, kept) and np.array_equal(speech, kept)
    loud = sine(440, 1.5, 960)
    out = mixer.mix(960, loud, np.zeros((0, 2), np.float32))
    assert np.max(np.abs(out)) <= 1.0 and np.max(np.abs(loud)) > 1.4  # clipped, input kept
    assert mixer.clipped_samples > 0
