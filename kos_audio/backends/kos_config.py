"""What the KOS source and sink share: choosing a config the robot supports.

KOS describes each direction with an ``AudioCapabilities`` message (lists of sample rates, bit
depths and channel counts). A node asks for a format; :func:`closest_config` picks the
supported config nearest to it, each dimension on its own, and the node converts between the
two (resample, remix, re-encode). PCM on the KOS wire is interleaved little-endian signed
integers (the reasonable reading of an unspecified layout), so only 16, 24 and 32 bit are used:
8-bit PCM could be signed or unsigned and is not guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kos_audio.core.formats import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
    AudioFormat,
    SampleFormat,
)
from kos_audio.errors import BackendError

if TYPE_CHECKING:
    from kos_audio.protocols.kos import AudioCapabilities, AudioConfig, Error

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT_S",
    "KOS_BIT_DEPTHS",
    "KosConfig",
    "closest_config",
    "describe_error",
]

#: Where the KOS daemon listens on a robot.
DEFAULT_ADDRESS = "localhost:50051"
#: Deadline of the unary calls (GetAudioInfo, StopRecording), seconds.
DEFAULT_TIMEOUT_S = 5.0
#: PCM widths exchanged with KOS (signed little-endian integers).
KOS_BIT_DEPTHS = (16, 24, 32)
#: What a node asking for "the native choice" (0) gets when the robot lists nothing.
_FALLBACK_RATE_HZ = 48_000
_FALLBACK_BIT_DEPTH = 16
_FALLBACK_CHANNELS = 1


@dataclass(frozen=True, slots=True)
class KosConfig:
    """One KOS ``AudioConfig``: Hz, bits per sample, interleaved channels."""

    sample_rate_hz: int
    bit_depth: int
    channels: int

    @property
    def format(self) -> AudioFormat:
        """The same as an :class:`AudioFormat` (signed little-endian integer samples)."""
        return AudioFormat(self.sample_rate_hz, self.channels,
                           SampleFormat.from_bit_depth(self.bit_depth))

    def to_message(self) -> AudioConfig:
        """The wire message (imports the protocol layer, hence grpc/protobuf)."""
        from kos_audio.protocols.kos import AudioConfig

        return AudioConfig(sample_rate=self.sample_rate_hz, bit_depth=self.bit_depth,
                           channels=self.channels)

    def describe(self) -> str:
        """E.g. ``16000 Hz 16 bit 1 ch``."""
        return f"{self.sample_rate_hz} Hz {self.bit_depth} bit {self.channels} ch"


def _nearest(supported: Sequence[int], wanted: int, *, native: int) -> int:
    """``wanted`` if supported; else the smallest value above it; else the largest below.

    Going up first loses nothing (a higher rate keeps the band, more bits keep the
    resolution, more channels keep every channel); ``wanted`` 0 asks for ``native``'s nearest.
    """
    if not supported:
        return wanted or native
    target = wanted or native
    if target in supported:
        return target
    above = [v for v in supported if v > target]
    return min(above) if above else max(supported)


def closest_config(
    capabilities: AudioCapabilities,
    *,
    sample_rate_hz: int,
    bit_depth: int,
    channels: int,
    direction: str,
) -> KosConfig:
    """The config of ``capabilities`` closest to the one asked for.

    Each dimension is chosen on its own: the asked value if listed, else the smallest listed
    value above it, else the largest below. An empty list means the robot did not say: the
    asked value is used. A value of 0 asks for the robot's native choice: the highest rate,
    16 bit and the fewest channels (the cheapest faithful way to play speech), or 48 kHz, 16
    bit, mono when nothing is listed.

    Args:
        capabilities: the ``playback`` or ``recording`` part of ``GetAudioInfoResponse``.
        sample_rate_hz: wanted rate (Hz), 0 for native.
        bit_depth: wanted bits per sample, 0 for native.
        channels: wanted channel count, 0 for native.
        direction: ``"recording"`` or ``"playback"``, for messages.

    Raises:
        BackendError: the direction is not available, or no listed value is usable (rates
            outside 1..384 kHz, bit depths other than 16/24/32, channels outside 1..255).

    """
    if not capabilities.available:
        raise BackendError(f"the KOS server reports {direction} as not available")
    rates = _usable(capabilities.sample_rates, MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ,
                    what="sample rates", direction=direction)
    depths = _usable(capabilities.bit_depths, min(KOS_BIT_DEPTHS), max(KOS_BIT_DEPTHS),
                     what="bit depths", direction=direction, allowed=KOS_BIT_DEPTHS)
    counts = _usable(capabilities.channels, 1, MAX_CHANNELS, what="channel counts",
                     direction=direction)
    rate_native = max(rates) if rates else _FALLBACK_RATE_HZ
    channels_native = min(counts) if counts else _FALLBACK_CHANNELS
    # A float or 8-bit request has no KOS equivalent: take the nearest integer width.
    bits = min(max(bit_depth, min(KOS_BIT_DEPTHS)), max(KOS_BIT_DEPTHS)) if bit_depth else 0
    return KosConfig(
        _nearest(rates, sample_rate_hz, native=rate_native),
        _nearest(depths, bits, native=_FALLBACK_BIT_DEPTH),
        _nearest(counts, channels, native=channels_native),
    )


def _usable(
    listed: Iterable[int], low: int, high: int, *, what: str, direction: str,
    allowed: Sequence[int] = (),
) -> list[int]:
    values = sorted(set(int(v) for v in listed))
    usable = [v for v in values if low <= v <= high and (not allowed or v in allowed)]
    if values and not usable:
        raise BackendError(
            f"the KOS server's {direction} {what} {values} include none kos_audio can use "
            f"({'/'.join(map(str, allowed)) if allowed else f'{low}..{high}'})")
    return usable


def describe_error(error: Error) -> str:
    """``CODE: message`` of a ``kos.common.Error`` (unknown codes by number)."""
    from kos_audio.protocols.kos import ErrorCode

    try:
        code = ErrorCode(error.code).name
    except ValueError:
        code = f"code {error.code}"
    return f"{code}: {error.message}" if error.message else code
