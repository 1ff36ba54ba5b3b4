"""speaker_node's played/ topics (the echo reference) and barge-in, as real processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from kos_testing.ros import LATCHED, wait_until
from speaker_helpers import Speaker, chunks, tone
from std_msgs.msg import Bool

NS = 1_000_000_000


def _stamp(msg: AudioDataStamped) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


@pytest.mark.device
def test_played_is_the_exact_mix_on_a_contiguous_timeline(
        ros: Any, pulse: Any, make_speaker: Callable[..., Speaker]) -> None:
    played = ros.subscribe(AudioDataStamped, "played/audio_stamped")
    info = ros.subscribe(AudioInfo, "played/audio_info", LATCHED)
    speaker = make_speaker(sink="device", sample_rate=48000, channels=1)
    wait_until(lambda: len(played.messages) >= 20, 20, "played/ while idle (silence)")
    for chunk in chunks(tone(1000, 1.0, amp=0.25), 2, 320):
        speaker.send(chunk)
    speaking_at = speaker.wait_speaking(True)
    speaker.wait_speaking(False, after=speaking_at, timeout_s=10)
    sent_after = time.time_ns()
    wait_until(lambda: _stamp(played.messages[-1]) > sent_after, 10, "played/ to catch up")
    msgs = played.messages
    fmt = info.wait_for(1, 10)[-1]
    assert (fmt.sample_rate, fmt.channels, fmt.sample_format) == (48000, 1, "S16LE")
    stamps = np.array([_stamp(m) for m in msgs])
    frames = np.array([len(m.audio.data) // 2 for m in msgs])
    # One timeline: each chunk starts where the previous one ended, to the nanosecond.
    expected = stamps[:-1] + frames[:-1] * NS // 48000
    assert np.array_equal(stamps[1:], expected)
    x = np.concatenate([np.frombuffer(bytes(m.audio.data), "<i2") for m in msgs]) / 32768.0
    loud = np.flatnonzero(np.abs(x) > 0.1)
    # The second of tone, whole (the sink plays what the engine mixed: 0.25 full scale).
    assert (loud[-1] - loud[0]) / 48000 == pytest.approx(1.0, abs=0.01)
    assert np.max(np.abs(x)) == pytest.approx(0.25, abs=0.01)
    # Stamped when it leaves the speaker: after it was published, within the device latency.
    onset_ns = stamps[0] + loud[0] * NS // 48000
    assert 0 < (onset_ns - speaking_at) / 1e6 < 500


def test_nothing_is_played_out_to_nobody(
        ros: Any, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(sink="null")
    for chunk in chunks(tone(440, 0.5), 2, 320):  # played with nobody on played/
        speaker.send(chunk)
    started = speaker.wait_speaking(True)
    speaker.wait_speaking(False, after=started)
    status = speaker.wait_status(lambda s: float(s["played_s"]) >= 0.5)
    assert status["played_chunks"] == "0"
    played = ros.subscribe(AudioDataStamped, "played/audio_stamped")
    wait_until(lambda: len(played.messages) >= 10, 20, "played/ once subscribed")


def test_barge_in_interrupts_after_min_speech_and_ignores_shorter_bursts(
        ros: Any, make_speaker: Callable[..., Speaker]) -> None:
    voice = ros.publisher(Bool, "voice_activity", LATCHED)
    speaker = make_speaker(sink="null", **{"barge_in.enabled": True,
                                           "barge_in.min_speech_ms": 150.0})
    ros.wait_for_subscribers(voice, timeout_s=10)
    for chunk in chunks(tone(440, 8.0), 2, 320):
        speaker.send(chunk)
    started = speaker.wait_speaking(True)
    # A 50 ms burst (a cough): ignored, the robot goes on.
    voice.publish(Bool(data=True))
    time.sleep(0.05)
    voice.publish(Bool(data=False))
    speaker.wait_status(lambda s: s["barge_in_ignored"] == "1")
    assert [v for t, v in speaker.speaking_changes() if t > started] == []
    # The user keeps talking: interrupted after min_speech_ms.
    onset = time.time_ns()
    voice.publish(Bool(data=True))
    stopped = speaker.wait_speaking(False, after=onset, timeout_s=5)
    assert stopped - onset >= 150_000_000
    status = speaker.wait_status(lambda s: s["barge_in_interrupts"] == "1")
    assert float(status["dropped_interrupt_s"]) > 5.0  # most of the 8 s was dropped
    assert "interrupted: played" in speaker.node.output
    assert "barge-in (the user spoke for" in speaker.node.output


def test_without_barge_in_voice_activity_changes_nothing(
        ros: Any, make_speaker: Callable[..., Speaker]) -> None:
    voice = ros.publisher(Bool, "voice_activity", LATCHED)
    speaker = make_speaker(sink="null")
    for chunk in chunks(tone(440, 2.0), 2, 320):
        speaker.send(chunk)
    started = speaker.wait_speaking(True)
    voice.publish(Bool(data=True))
    ended = speaker.wait_speaking(False, after=started, timeout_s=10)
    assert (ended - started) / 1e9 == pytest.approx(2.0, abs=0.3)  # played to the end
