"""Synthetic robot-speaks-while-the-user-talks signals for the echo canceller and VAD tests.

Speech comes from espeak-ng when it is installed (robot: ``en-us``, user: ``en+f3``), else from
a voiced-speech imitation (glottal pulse trains through formant resonators, syllable envelopes)
that is good enough for the canceller but not for a speech detector: VAD tests call
:func:`require_espeak`. The room is the one of the AEC study (/tmp/aec-study): the played
signal delayed 60 ms, convolved with a 100 ms impulse response (exponential decay plus five
reflections), 8 dB below the played level, plus white noise (see :func:`scene`).
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Signal = npt.NDArray[np.float32]

ROBOT_LINES = [
    "Hello, I am your assistant robot and I am ready to help you today.",
    "The kitchen is on the left side of the corridor, next to the blue door.",
    "I can carry small objects, open doors, and remind you of your appointments.",
    "My battery level is at seventy two percent, so we have plenty of time.",
    "Please tell me if you would like me to bring you a glass of water.",
    "The weather forecast says it will rain this afternoon, so take an umbrella.",
]
USER_LINES = ["Stop, stop talking please.", "Robot, what time is it now?",
              "Can you bring me my keys from the table?"]


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def require_espeak() -> None:
    import pytest

    if not have_espeak():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")


def rms(x: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20))


def db(x: npt.NDArray[np.floating]) -> float:
    return 20 * float(np.log10(rms(x)))


def _resample(x: npt.NDArray[np.floating], rate_in: int, rate_out: int) -> Signal:
    import soxr

    if rate_in == rate_out:
        return np.asarray(x, np.float32)
    return np.asarray(soxr.resample(np.asarray(x, np.float32), rate_in, rate_out), np.float32)


def _trim(x: Signal, threshold: float = 1e-3) -> Signal:
    idx = np.nonzero(np.abs(x) > threshold)[0]
    return x[idx[0]:idx[-1] + 1]


@functools.lru_cache(maxsize=64)
def _tts(text: str, voice: str, rate: int) -> Signal:
    import soundfile

    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "--stdout", text],
                         capture_output=True, check=True).stdout
    x, sr = soundfile.read(io.BytesIO(wav), dtype="float32")
    return _trim(_resample(x, sr, rate))


def _imitation(seed: int, seconds: float, rate: int, pitch_hz: float) -> Signal:
    """Voiced syllables: pulse trains with jittered pitch, shaped by three formants (FFT)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        syl = int(rng.uniform(0.12, 0.3) * rate)
        period = max(2, int(rate / (pitch_hz * rng.uniform(0.8, 1.25))))
        exc = np.zeros(syl)
        exc[::period] = 1.0
        spectrum = np.fft.rfft(exc)
        freqs = np.fft.rfftfreq(syl, 1 / rate)
        shape = sum(1 / (1 + ((freqs - f) / 120) ** 2)
                    for f in (rng.uniform(300, 900), rng.uniform(900, 2200),
                              rng.uniform(2200, 3200)))
        y = np.fft.irfft(spectrum * shape, syl) * np.hanning(syl)
        end = min(n, pos + syl)
        out[pos:end] = y[:end - pos]
        pos += syl + int(rng.uniform(0.02, 0.2) * rate)
    return out


def speech(lines: list[str], voice: str, seconds: float, rate: int, *, seed: int,
           gap_s: float = 0.25) -> Signal:
    """``seconds`` of speech at ``rate`` (espeak-ng, else an imitation), unscaled."""
    n = int(seconds * rate)
    if not have_espeak():
        return _imitation(seed, seconds, rate, 120.0 if voice == "en-us" else 220.0)
    parts: list[Signal] = []
    total = 0
    while total < n:
        for line in lines:
            x = _tts(line, voice, rate)
            parts += [x, np.zeros(int(gap_s * rate), np.float32)]
            total += len(x) + int(gap_s * rate)
    return np.concatenate(parts)[:n].astype(np.float32)


def room_echo(played: Signal, rate: int, *, delay_s: float = 0.060, level_db: float = -8.0,
              seed: int = 1) -> Signal:
    """``played`` as the microphone hears it: delayed, reverberated, ``level_db`` quieter."""
    rng = np.random.default_rng(seed)
    length = int(0.1 * rate)
    t = np.arange(length) / rate
    ir = rng.standard_normal(length) * np.exp(-t / 0.025) * 0.15
    ir[0] += 1.0
    for dly, gain in [(0.007, 0.5), (0.013, -0.35), (0.021, 0.25), (0.034, -0.15),
                      (0.052, 0.1)]:
        ir[int(dly * rate)] += gain
    ir /= np.sqrt(np.sum(ir ** 2))
    delayed = np.concatenate([np.zeros(int(delay_s * rate)), played])[:len(played)]
    echo = np.convolve(delayed, ir)[:len(played)]
    active = played != 0
    scale = 10 ** (level_db / 20) * rms(played[active]) / rms(echo[active])
    return (echo * scale).astype(np.float32)


@dataclass(frozen=True)
class Scene:
    """One scenario at ``rate``: what was played, the user alone, and the microphone."""

    rate: int
    played: Signal  # the reference: exactly what the speaker played
    echo: Signal  # the played audio as the microphone hears it
    user: Signal  # the user alone (zeros outside the utterances)
    mic: Signal  # echo + user + noise
    user_segments: tuple[tuple[float, float], ...]  # (start s, end s) of each utterance


@functools.lru_cache(maxsize=8)
def scene(rate: int, seconds: float = 12.0, user_at: tuple[float, ...] = (),
          user_level_db: float = 0.0, noise_dbfs: float = -80.0) -> Scene:
    """Robot speech for ``seconds`` (-20 dBFS active RMS) and the user at ``user_at`` seconds.

    The user's active level is ``user_level_db`` relative to the echo's (0: double talk at
    equal level, as in the study). The microphone's white noise is at ``noise_dbfs``: the
    study's -65 dBFS caps a measurable echo reduction near 36 dB (the noise is not echo and
    passes), so the default is lower.
    """
    played = speech(ROBOT_LINES, "en-us", seconds, rate, seed=1)
    played *= np.float32(10 ** (-20 / 20) / rms(played[played != 0]))
    echo = room_echo(played, rate)
    user = np.zeros_like(played)
    segments = []
    for i, t0 in enumerate(user_at):
        u = speech([USER_LINES[i % len(USER_LINES)]], "en+f3", 3.0, rate, seed=10 + i)
        u = _trim(u) if have_espeak() else u[:int(1.5 * rate)]
        i0 = int(t0 * rate)
        u = u[:len(user) - i0]
        user[i0:i0 + len(u)] += u
        segments.append((t0, t0 + len(u) / rate))
    if user_at:
        active = np.abs(user) > 0
        user *= np.float32(rms(echo[active]) / rms(user[active]) * 10 ** (user_level_db / 20))
    noise = np.random.default_rng(2).standard_normal(len(played)) * 10 ** (noise_dbfs / 20)
    mic = (echo + user + noise).astype(np.float32)
    return Scene(rate, played, echo, user, mic, tuple(segments))


def erle_db(mic: npt.NDArray[np.floating], out: npt.NDArray[np.floating], rate: int,
            start_s: float = 1.0, end_s: float | None = None) -> float:
    """Median over 1 s windows of 10 log10(P(mic) / P(out)), from ``start_s`` on."""
    values = []
    end = len(mic) / rate if end_s is None else end_s
    t = start_s
    while t + 1.0 <= end:
        a, b = int(t * rate), int((t + 1.0) * rate)
        values.append(10 * np.log10(rms(mic[a:b]) ** 2 / (rms(out[a:b]) ** 2 + 1e-20)))
        t += 1.0
    return float(np.median(values))


def best_lag(reference: npt.NDArray[np.floating], out: npt.NDArray[np.floating],
             max_lag: int) -> int:
    """The lag (samples, >= 0) at which ``out`` best matches ``reference`` (|correlation|)."""
    scores = []
    n = len(reference) - max_lag
    for lag in range(max_lag + 1):
        scores.append(abs(float(np.dot(reference[:n], out[lag:lag + n]))))
    return int(np.argmax(scores))
