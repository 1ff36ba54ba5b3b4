"""Mixing speech over background sound: a ducking envelope, master volume, saturation.

All math is float32 with full scale at +-1.0; the result is clipped to [-1, 1], so loud input
distorts (saturates) instead of wrapping around when it is encoded to integers.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kos_audio.core.convert import Frames

#: Background gain falls to the duck gain within this time (s) once speech sounds.
DUCK_ATTACK_S = 0.010
#: The background stays ducked this long (s) after the last speech frame, so it does not
#: pump up and down between the words and sentences of one answer.
DUCK_HOLD_S = 0.250
#: Then it returns to its full gain within this time (s).
DUCK_RELEASE_S = 0.250
#: Gains and the volume are refused above this (a 12 dB boost is already a lot).
MAX_GAIN = 4.0


def _check_gain(name: str, value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= MAX_GAIN):
        raise ValueError(f"{name} must be within 0..{MAX_GAIN}, not {value!r}")
    return float(value)


class Ducker:
    """The background's gain over time: ``gain`` alone, ``duck_gain`` while speech sounds.

    The gain moves linearly (no clicks): down to ``duck_gain`` within :data:`DUCK_ATTACK_S`
    from the first speech frame, held for :data:`DUCK_HOLD_S` after the last speech frame,
    then back up within :data:`DUCK_RELEASE_S`. Gains may be changed from any thread at any
    time (plain attribute writes); the envelope slides to the new value. Not thread-safe
    otherwise: one pulling thread calls :meth:`envelope`.
    """

    def __init__(self, sample_rate_hz: int, *, gain: float, duck_gain: float) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.gain = gain
        self.duck_gain = duck_gain
        self._current = gain
        self._hold_left = 0  # frames the duck is still held after speech
        self._hold_frames = round(DUCK_HOLD_S * sample_rate_hz)
        self._attack_frames = max(1, round(DUCK_ATTACK_S * sample_rate_hz))
        self._release_frames = max(1, round(DUCK_RELEASE_S * sample_rate_hz))

    @property
    def gain(self) -> float:
        """Background gain (linear) when no speech sounds."""
        return self._gain

    @gain.setter
    def gain(self, value: float) -> None:
        self._gain = _check_gain("background gain", value)

    @property
    def duck_gain(self) -> float:
        """Background gain (linear) while speech sounds."""
        return self._duck_gain

    @duck_gain.setter
    def duck_gain(self, value: float) -> None:
        self._duck_gain = _check_gain("background duck gain", value)

    @property
    def current(self) -> float:
        """The gain the envelope has reached (after the last :meth:`envelope`)."""
        return self._current

    def envelope(self, frames: int, speech_frames: int) -> npt.NDArray[np.float32]:
        """Per-frame gains for the next ``frames`` frames; advances the envelope.

        The first ``speech_frames`` of them carry speech.
        """
        # Piecewise-constant targets: ducked during speech and the hold after it.
        if speech_frames > 0:
            self._hold_left = self._hold_frames
        ducked = min(frames, speech_frames + self._hold_left)
        self._hold_left = max(0, self._hold_left - max(0, frames - speech_frames))
        out = np.empty(frames, np.float32)
        for start, stop, target in ((0, ducked, self._duck_gain),
                                    (ducked, frames, self._gain)):
            if stop > start:
                out[start:stop] = self._slide(stop - start, target)
        return out

    def advance(self, frames: int, speech_frames: int) -> None:
        """Advance the envelope as :meth:`envelope` does, without computing its gains.

        For blocks without background: nothing to scale, but the duck must still hold and
        release on time.
        """
        if speech_frames > 0:
            self._hold_left = self._hold_frames
        ducked = min(frames, speech_frames + self._hold_left)
        self._hold_left = max(0, self._hold_left - max(0, frames - speech_frames))
        for count, target in ((ducked, self._duck_gain), (frames - ducked, self._gain)):
            now = self._current
            if count > 0 and now != target:
                span = max(abs(self._gain - self._duck_gain), 1e-3)
                if target < now:
                    self._current = max(now - count * (span / self._attack_frames), target)
                else:
                    self._current = min(now + count * (span / self._release_frames), target)

    def _slide(self, frames: int, target: float) -> npt.NDArray[np.float32]:
        now = self._current
        if now == target:
            return np.full(frames, target, np.float32)
        span = max(abs(self._gain - self._duck_gain), 1e-3)  # full swing in attack/release
        steps = np.arange(1, frames + 1, dtype=np.float64)
        ramp: npt.NDArray[np.float64]
        if target < now:
            ramp = np.maximum(now - steps * (span / self._attack_frames), target)
        else:
            ramp = np.minimum(now + steps * (span / self._release_frames), target)
        self._current = float(ramp[-1])
        return ramp.astype(np.float32)


class Mixer:
    """Speech + ducked background, times ``volume``, clipped to full scale.

    Args:
        sample_rate_hz: rate of the frames mixed (the sink's).
        channels: channel count of the frames mixed (the sink's).
        volume: master gain (linear) applied to the mix.
        gain: background gain when no speech sounds.
        duck_gain: background gain while speech sounds.

    Called from the pulling (sink) thread only; the gain and volume attributes may be written
    from any thread.

    """

    def __init__(
        self, sample_rate_hz: int, channels: int, *, volume: float = 1.0, gain: float = 0.5,
        duck_gain: float = 0.15,
    ) -> None:
        self.channels = channels
        self.ducker = Ducker(sample_rate_hz, gain=gain, duck_gain=duck_gain)
        self.volume = volume
        self.clipped_samples = 0

    @property
    def volume(self) -> float:
        """Master gain (linear), 0..:data:`MAX_GAIN`."""
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        self._volume = _check_gain("volume", value)

    def mix(self, frames: int, speech: Frames, background: Frames) -> Frames:
        """Mix one block.

        Args:
            frames: block length.
            speech: ``(n, channels)`` speech for the block's first ``n <= frames`` frames
                (never modified).
            background: ``(m, channels)`` background for its first ``m <= frames`` frames.

        Returns:
            A ``(frames, channels)`` float32 block within [-1, 1]; silence where neither input
            has frames. ``speech`` itself when it fills the block alone, within [-1, 1], at
            unity volume (the caller must not modify it then); else a new array.

        """
        n, m = len(speech), len(background)
        if m:
            env = self.ducker.envelope(frames, n)
        else:
            self.ducker.advance(frames, n)
        if n == frames and not m and self._volume == 1.0 \
                and np.max(speech) <= 1.0 and np.min(speech) >= -1.0:
            return speech  # speech alone fills the block as it is: no copy
        out = np.zeros((frames, self.channels), np.float32)
        out[:n] = speech
        if m:
            out[:m] += background * env[:m, None]
        if self._volume != 1.0:
            out *= np.float32(self._volume)
        if (n or m) and (np.max(out) > 1.0 or np.min(out) < -1.0):
            self.clipped_samples += int(np.count_nonzero(np.abs(out) > 1.0))
            np.clip(out, -1.0, 1.0, out=out)
        return out
