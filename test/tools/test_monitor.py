"""audio_monitor as a real process over real DDS: fed by mic_node, and by a probe that leaves out
samples on purpose.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import pytest
from audio_common_msgs.msg import AudioDataStamped, AudioInfo
from kos_testing.procs import NodeProcess
from kos_testing.ros import LATCHED, wait_until

from kos_audio.core import NS_PER_S, AudioFormat, SampleFormat
from kos_audio.ros.messages import audio_info, audio_messages

MONITOR = "kos_audio.tools.monitor"
MIC = "kos_audio.nodes.mic_node"
S16 = AudioFormat(16000, 1, SampleFormat.S16LE)
CHUNK = 320  # frames: 20 ms at 16 kHz
#: One report line per second (the format, the dominant frequency, losses so far).
REPORT = re.compile(r"chunks/s .*  (?P<format>\d+ Hz \d+ ch \w+)(?P<assumed> \(assumed[^)]*\))?"
                    r"  .*  ~(?P<hz>\d+) Hz  lost (?P<lost>\d+) frames in (?P<jumps>\d+) jumps")
#: The line printed on exit.
SUMMARY = re.compile(r"total (?P<total>\d+) frames .* lost (?P<lost>\d+) frames$", re.MULTILINE)


def monitor(namespace: str, *args: str) -> NodeProcess:
    return NodeProcess(MONITOR, namespace=namespace, args=["--check", *args])


def reports(output: str) -> list[re.Match[str]]:
    return [m for m in map(REPORT.search, output.splitlines()) if m is not None]


def summary(output: str) -> re.Match[str]:
    match = SUMMARY.search(output)
    assert match is not None, output
    return match


def test_mic_tone_is_reported_with_its_format_frequency_and_no_loss(
        ros: Any, namespace: str) -> None:
    stamped = ros.subscribe(AudioDataStamped, "audio_stamped")
    with NodeProcess(MIC, namespace=namespace, params={"source": "tone"}):
        stamped.wait_for(1, timeout_s=30)  # mic_node publishes: the monitor can join
        # No --duration: it counts from the monitor's start, and discovery alone may take
        # seconds. Two reports with audio: the second covers a whole second of it.
        with monitor(namespace) as mon:
            wait_until(lambda: len(reports(mon.output)) >= 2, 30, "two reports with audio")
            code = mon.stop()  # SIGINT: the summary and --check's verdict still come
    out = mon.output
    assert code == 0, out
    lines = reports(out)
    assert lines, out
    last = lines[-1]  # a whole second of audio: 1 Hz resolution
    assert last["format"] == "16000 Hz 1 ch S16LE" and last["assumed"] is None
    assert int(last["hz"]) == pytest.approx(440, abs=2)
    assert all((m["lost"], m["jumps"]) == ("0", "0") for m in lines)
    assert summary(out)["lost"] == "0" and int(summary(out)["total"]) > 0


def test_a_stamp_gap_is_counted_in_frames_and_fails_the_check(ros: Any, namespace: str) -> None:
    gap_frames = 800  # 50 ms left out after the 25th chunk
    info = ros.publisher(AudioInfo, "audio_info", LATCHED)
    info.publish(audio_info(S16))
    audio = ros.publisher(AudioDataStamped, "audio_stamped")
    x = 0.25 * np.sin(2 * np.pi * 440 * np.arange(50 * CHUNK) / S16.sample_rate_hz)
    pcm = np.round(x * 32767).astype("<i2").tobytes()
    with monitor(namespace) as mon:  # no --duration: runs until the interrupt below
        ros.wait_for_subscribers(info, timeout_s=30)
        ros.wait_for_subscribers(audio, timeout_s=30)
        t0 = time.time_ns()
        frame = 0
        for i in range(50):
            if i == 25:
                frame += gap_frames
            chunk = pcm[i * CHUNK * 2 : (i + 1) * CHUNK * 2]
            stamp_ns = t0 + frame * NS_PER_S // S16.sample_rate_hz  # exact: 62500 ns a frame
            audio.publish(audio_messages(chunk, stamp_ns, "mic")[1])
            frame += CHUNK
        wait_until(lambda: any(m["jumps"] == "1" for m in reports(mon.output)), 30,
                   "a report of the jump")
        code = mon.stop()  # SIGINT: the summary and --check's verdict still come
    out = mon.output
    assert code == 1, out
    last = reports(out)[-1]
    assert (last["lost"], last["jumps"]) == (str(gap_frames), "1")
    assert last["format"] == "16000 Hz 1 ch S16LE" and last["assumed"] is None
    assert summary(out)["lost"] == str(gap_frames)


def test_duration_ends_the_monitor_and_no_audio_fails_the_check(namespace: str) -> None:
    with monitor(namespace, "--duration", "1.5") as mon:
        code = mon.wait(60)
    out = mon.output
    assert code == 1, out
    assert f"no audio on {namespace}/audio_stamped" in out
    assert summary(out)["total"] == "0"
