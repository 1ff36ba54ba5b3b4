"""Acoustic echo cancellation with WebRTC's AEC3 (PyPI ``pywebrtc-audio``), chunk in, chunk out.

WebRTC's audio processing works on 10 ms frames; microphones deliver chunks of any size. The
:class:`EchoCanceller` rebuffers into 10 ms frames and hands back exactly as many frames as
each chunk brought in, so the microphone's stamps stay valid for the cleaned stream.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from kos_audio.core.convert import Buffer, from_float, to_float
from kos_audio.core.echo.errors import EchoError, missing
from kos_audio.core.echo.reference import Samples
from kos_audio.core.formats import AudioFormat

if TYPE_CHECKING:
    from pywebrtc_audio import AudioProcessor

#: The frame WebRTC's audio processing works on (ms).
FRAME_MS = 10
#: A reference frame quieter than this (RMS, full scale 1.0) counts as "nothing played" for
#: the echo reduction estimate (-60 dBFS).
REFERENCE_SILENT_RMS = 1e-3
#: Time constant of the echo reduction estimate (s).
ERLE_TIME_CONSTANT_S = 1.0


def load_processor_class() -> type[AudioProcessor]:
    """``pywebrtc_audio.AudioProcessor``, imported on first use.

    Raises:
        MissingLibraryError: pywebrtc-audio is not installed (the message says what to run).

    """
    try:
        from pywebrtc_audio import AudioProcessor
    except ImportError as err:
        raise missing("pywebrtc-audio", "pywebrtc_audio", err) from err
    return AudioProcessor


def supports_rate(sample_rate_hz: int) -> bool:
    """True if 10 ms is a whole number of samples at ``sample_rate_hz`` (8, 16, 44.1, 48 kHz...).

    WebRTC's audio processing runs natively at 16, 32 and 48 kHz and resamples the other rates
    internally; rates without whole 10 ms frames (11025, 22050 Hz) it can only approximate, so
    they are refused.
    """
    return sample_rate_hz % (1000 // FRAME_MS) == 0


class EchoCanceller:
    """Removes the played (reference) audio from a microphone stream; mono out.

    Each :meth:`process` call takes one microphone chunk (whole frames of ``mic``, any count)
    and the reference for exactly those frames (see
    :meth:`~kos_audio.core.echo.reference.ReferenceTimeline.take`; zeros while nothing
    plays), and returns exactly as many frames, mono, in ``mic``'s rate and sample format
    (:attr:`output_format`). Several microphone channels are reduced to one first: channel
    ``channel``, or their average for ``-1``. AEC3 needs the reference at every frame; with a
    silent one it passes the microphone through (about -0.1 to -0.3 dB, and its high-pass
    filter, which echo cancellation always enables, removes what is below about 80 Hz).

    Rebuffering: complete 10 ms frames are processed as soon as they are in; the last
    partial frame of a chunk waits for the next chunk. So that every chunk still gets all its
    frames back, the output lags the input by :attr:`latency_frames`: 0 while every chunk
    ends on a 10 ms boundary (mic_node's default 20 ms chunks), and otherwise grows, by
    inserting silence the first time a chunk would come up short, to at most one frame less
    than 10 ms (``10 ms - gcd(chunk, 10 ms)`` for a constant chunk size; within the first few
    chunks). It never shrinks, so no audio is ever dropped. AEC3 itself adds about 8-9 ms
    (measured; 15 ms with noise suppression): the cleaned audio of a chunk is that much later
    than its stamp says.

    With ``enabled=False`` (and no noise suppression or high-pass) the selected channel
    passes unchanged, with no lag.

    Not thread-safe, and the WebRTC instance must stay on one thread: one worker owns it.

    Args:
        mic: the microphone's format.
        channel: the microphone channel to process, or -1 for the average of all.
        enabled: run echo cancellation.
        noise_suppression: also run WebRTC's noise suppressor (level 1, 12 dB).
        high_pass: run WebRTC's high-pass filter (always on with echo cancellation).

    Raises:
        EchoError: the rate has no whole 10 ms frames, or ``channel`` is not a channel of
            ``mic``.
        MissingLibraryError: processing is asked for and pywebrtc-audio is not installed.

    """

    def __init__(self, mic: AudioFormat, *, channel: int = -1, enabled: bool = True,
                 noise_suppression: bool = False, high_pass: bool = False) -> None:
        if not -1 <= channel < mic.channels:
            raise EchoError(f"channel {channel} is not a channel of {mic.describe()} "
                            f"(0..{mic.channels - 1}, or -1 for their average)")
        self.mic = mic
        self.channel = channel
        self.enabled = enabled
        self.noise_suppression = noise_suppression
        self.high_pass = high_pass or enabled
        self.output_format = AudioFormat(mic.sample_rate_hz, 1, mic.sample_format)
        self._processing = enabled or noise_suppression or high_pass
        if self._processing and not supports_rate(mic.sample_rate_hz):
            raise EchoError(f"{mic.sample_rate_hz} Hz has no whole {FRAME_MS} ms frames; the "
                            "echo canceller supports rates that are multiples of 100 Hz "
                            "(8000, 16000, 32000, 44100, 48000...)")
        self._frame = mic.sample_rate_hz * FRAME_MS // 1000
        self._ap: AudioProcessor | None = None
        if self._processing:
            self._ap = self._new_processor()
        self._mic_pending: Samples = np.zeros(0, np.float32)
        self._ref_pending: Samples = np.zeros(0, np.float32)
        self._out: Samples = np.zeros(0, np.float32)
        self._alpha = 1.0 - math.exp(-FRAME_MS / 1000 / ERLE_TIME_CONSTANT_S)
        self._pow_in = 0.0
        self._pow_out = 0.0
        self._erle_frames = 0
        #: Frames the output lags the input by (rebuffering only; see the class docstring).
        self.latency_frames = 0
        #: Microphone frames processed.
        self.frames_in = 0
        #: NaN/Inf samples replaced by 0 before processing (microphone and reference).
        self.non_finite = 0

    def _new_processor(self) -> AudioProcessor:
        processor_class = load_processor_class()
        return processor_class(
            sample_rate=self.mic.sample_rate_hz, num_channels=1,
            echo_cancellation=self.enabled, noise_suppression=self.noise_suppression,
            high_pass_filter=self.high_pass, auto_gain_control=False)

    @property
    def echo_reduction_db(self) -> float | None:
        """Estimate of the echo reduction (dB) over about the last second of played audio.

        10 log10 of microphone over output power, counted only in frames whose reference is
        not silent; the user talking over the robot lowers it. None until a second of
        reference has been seen.
        """
        if self._erle_frames * FRAME_MS < 1000 or self._pow_out <= 0.0:
            return None
        return 10.0 * math.log10(max(self._pow_in, 1e-20) / self._pow_out)

    def process(self, data: Buffer, reference: Samples) -> bytes:
        """Clean one microphone chunk; the same number of frames, in :attr:`output_format`.

        Raises:
            AudioFormatError: ``data`` is not a whole number of frames of :attr:`mic`.
            EchoError: ``reference`` does not have one sample per microphone frame.

        """
        return from_float(self.process_samples(data, reference), self.mic.sample_format)

    def process_samples(self, data: Buffer, reference: Samples) -> Samples:
        """:meth:`process`, returning mono float32 samples instead of encoded bytes."""
        frames = to_float(data, self.mic)
        mono = (frames.mean(axis=1, dtype=np.float32) if self.channel < 0
                else frames[:, self.channel])
        mono = np.ascontiguousarray(mono, np.float32)
        if len(reference) != len(mono):
            raise EchoError(f"{len(reference)} reference samples for {len(mono)} microphone "
                            "frames; they must be equal")
        self.frames_in += len(mono)
        if self._ap is None:
            return mono
        ref = np.asarray(reference, np.float32)
        bad = int(mono.size - np.count_nonzero(np.isfinite(mono))
                  + ref.size - np.count_nonzero(np.isfinite(ref)))
        if bad:  # NaN would poison the filter state for good
            self.non_finite += bad
            mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
            ref = np.nan_to_num(ref, nan=0.0, posinf=1.0, neginf=-1.0)
        mic_all = np.concatenate((self._mic_pending, mono))
        ref_all = np.concatenate((self._ref_pending, ref))
        step = self._frame
        whole = len(mic_all) - len(mic_all) % step
        cleaned = [self._process_frame(mic_all[i:i + step], ref_all[i:i + step])
                   for i in range(0, whole, step)]
        self._mic_pending = mic_all[whole:].copy()
        self._ref_pending = ref_all[whole:].copy()
        out = np.concatenate((self._out, *cleaned))
        short = len(mono) - len(out)
        if short > 0:
            out = np.concatenate((np.zeros(short, np.float32), out))
            self.latency_frames += short
        self._out = out[len(mono):].copy()
        return out[:len(mono)]

    def _process_frame(self, mic: Samples, ref: Samples) -> Samples:
        assert self._ap is not None
        if self.enabled:
            out = np.asarray(self._ap.process(mic, ref), np.float32)
            ref_pow = float(np.dot(ref, ref)) / len(ref)
            if ref_pow > REFERENCE_SILENT_RMS ** 2:
                a = self._alpha
                self._pow_in += a * (float(np.dot(mic, mic)) / len(mic) - self._pow_in)
                self._pow_out += a * (float(np.dot(out, out)) / len(out) - self._pow_out)
                self._erle_frames += 1
            return out
        return np.asarray(self._ap.process(mic), np.float32)

    def reset(self) -> None:
        """Start afresh (after a discontinuity): new filter state, no pending audio, no lag."""
        if self._processing:
            self._ap = self._new_processor()
        self._mic_pending = np.zeros(0, np.float32)
        self._ref_pending = np.zeros(0, np.float32)
        self._out = np.zeros(0, np.float32)
        self.latency_frames = 0
        self._pow_in = self._pow_out = 0.0
        self._erle_frames = 0
