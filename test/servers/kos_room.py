"""The room around the test KOS robot: its speaker is heard by its microphone.

:class:`Room` gives :class:`~servers.kos_sound_server.KosSoundServer` an acoustic path: audio
received by ``PlayAudio`` is played on the server's clock (from its arrival, or right after
what is still playing, like a speaker's buffer) and reaches ``RecordAudio`` ``delay_ms``
later, scaled by ``gain``, added to an optional user voice. So a client that speaks and
listens through KOS hears its own echo, as on a robot.

Mono float32 internally at the room's rate; ``PlayAudio`` configs of another rate or channel
count are converted (soxr, channel average) on arrival. Thread-safe.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import numpy.typing as npt
import soxr


class Room:
    """A delay-and-attenuate echo path from the KOS speaker to the KOS microphone.

    Args:
        rate: the room's sample rate (Hz); RecordAudio must use it (the server checks).
        delay_ms: speaker-to-microphone delay (ms).
        gain: linear amplitude of the echo.
        user: mono float32 user voice (at ``rate``) added to the microphone from
            ``user_start_s`` after the room's start, or None.
        user_start_s: when the user starts (s after :meth:`start`).

    """

    def __init__(self, *, rate: int = 16000, delay_ms: float = 60.0, gain: float = 0.5,
                 user: npt.NDArray[np.float32] | None = None, user_start_s: float = 0.0) -> None:
        self.rate = rate
        self.delay_frames = round(delay_ms * rate / 1000)
        self.gain = gain
        self._user = user
        self._user_start = round(user_start_s * rate)
        self._lock = threading.Lock()
        self._t0 = 0.0  # monotonic time of frame 0
        self._played = np.zeros(0, np.float32)  # speaker output from frame 0 on
        self._end = 0  # frame where the speaker's queue ends

    @property
    def t0(self) -> float:
        """Monotonic time (s) of the room's frame 0."""
        with self._lock:
            return self._t0

    def start(self, t0: float) -> None:
        """Frame 0 of the room is at monotonic time ``t0``."""
        with self._lock:
            self._t0 = t0

    def frame_at(self, monotonic_s: float) -> int:
        """The room's frame at ``time.monotonic()`` ``monotonic_s``."""
        return round((monotonic_s - self.t0) * self.rate)

    def play(self, pcm: bytes, config: tuple[int, int, int] | None) -> float:
        """Play ``pcm`` (a PlayAudio message in ``config``) from now; returns "now"
        (``time.monotonic()``, taken under the room's lock, so no microphone read can fall
        between the arrival and the audio being in the room).
        """
        mono = np.zeros(0, np.float32)
        if config is not None and config[1] == 16 and pcm:  # 16-bit, as speech clients send
            sample_rate, _, channels = config
            samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
            mono = samples.reshape(-1, channels).mean(axis=1)
            if sample_rate != self.rate:
                mono = soxr.resample(mono, sample_rate, self.rate).astype(np.float32)
        with self._lock:
            arrival_s = time.monotonic()
            if not len(mono):
                return arrival_s
            now = round((arrival_s - self._t0) * self.rate)
            start = max(now, self._end)
            end = start + len(mono)
            if end > len(self._played):
                grown = np.zeros(max(end, 2 * len(self._played)), np.float32)
                grown[: len(self._played)] = self._played
                self._played = grown
            self._played[start:end] += mono
            self._end = end
        return arrival_s

    def microphone(self, start: int, frames: int) -> npt.NDArray[np.float32]:
        """Mono float32 the microphone hears for frames ``[start, start + frames)``."""
        out = np.zeros(frames, np.float32)
        with self._lock:
            src0 = start - self.delay_frames
            lo, hi = max(src0, 0), min(src0 + frames, len(self._played))
            if hi > lo:
                out[lo - src0 : hi - src0] += self.gain * self._played[lo:hi]
        if self._user is not None:
            u0 = start - self._user_start
            lo, hi = max(u0, 0), min(u0 + frames, len(self._user))
            if hi > lo:
                out[lo - u0 : hi - u0] += self._user[lo:hi]
        return out

    def record_pcm(self, start: int, frames: int, channels: int) -> bytes:
        """:meth:`microphone` as interleaved S16LE in ``channels`` channels."""
        mono = np.clip(self.microphone(start, frames), -1.0, 32767 / 32768)
        pcm = np.round(mono * 32768.0).astype("<i2")
        return np.repeat(pcm[:, None], channels, axis=1).tobytes()
