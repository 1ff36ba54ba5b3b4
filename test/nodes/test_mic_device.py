"""mic_node capturing from a real PortAudio device (the private PulseAudio virtual mic)."""

import time
from typing import Any

import numpy as np
import pytest
from audio_common_msgs.msg import AudioDataStamped
from kos_testing.procs import NodeProcess
from mic_helpers import gaps, pcm16, stamps_ns

pytestmark = pytest.mark.device


def test_known_signal_arrives_intact_with_no_lost_samples(
        pulse: Any, ros: Any, namespace: str) -> None:
    rate = 16000
    seconds = 10
    t = np.arange(rate * seconds) / rate
    # A chirp never repeats, so the correlation peak is unique.
    chirp = np.sin(2 * np.pi * (200 * t + 150 * t * t)) * 0.4
    signal = (chirp * 32767).astype(np.int16)
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    params = {"source": "device", "device": "mic", "sample_rate": rate}
    with NodeProcess("kos_audio.nodes.mic_node", namespace=namespace, params=params) as node:
        stamped.wait_for(10, timeout_s=30)
        started = time.monotonic()
        player = pulse.play(signal, device="micfeed", rate=rate)
        player.wait(seconds + 10)
        time.sleep(0.5)
        count = len(stamped.messages)
        elapsed = time.monotonic() - started
        assert node.alive(), node.output
    msgs = stamped.messages[:count]
    # Zero lost samples: every stamp follows the previous chunk exactly, for the whole run.
    assert gaps(msgs, rate) == [0] * (len(msgs) - 1)
    span_s = (stamps_ns(msgs)[-1] - stamps_ns(msgs)[0]) / 1e9
    assert span_s >= elapsed
    x = pcm16(msgs).astype(np.float64)
    corr = np.correlate(x, signal.astype(np.float64), mode="valid")
    lag = int(np.argmax(corr))
    got = x[lag : lag + len(signal)]
    assert np.corrcoef(got, signal)[0, 1] > 0.999
