"""PortAudio (python-sounddevice) for the device source and sink: listing, finding, opening.

sounddevice is imported here only (and by its two users), so the rest of the package works
without PortAudio.
PortAudio enumerates devices when it initialises: start (or point at) the sound server before
the first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.errors import BackendError

try:
    import sounddevice
except OSError as _err:  # the Python module is there but libportaudio is not
    raise ImportError(
        f"PortAudio is missing ({_err}); install it: apt-get install libportaudio2"
    ) from _err

__all__ = ["DTYPES", "DeviceInfo", "DeviceLookup", "find_device", "list_devices", "open_stream",
           "sounddevice"]

#: PortAudio dtype names per sample format.
DTYPES = {
    SampleFormat.U8: "uint8",
    SampleFormat.S16LE: "int16",
    SampleFormat.S24LE: "int24",
    SampleFormat.S32LE: "int32",
    SampleFormat.F32LE: "float32",
}


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device, as ``mic_node --list-devices`` shows it."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate_hz: float


def list_devices(*, refresh: bool = False) -> list[DeviceInfo]:
    """Every PortAudio device. ``refresh`` re-scans (only safe with no stream open)."""
    if refresh:
        # sounddevice has no public re-scan; re-initialising PortAudio is its documented way.
        sounddevice._terminate()
        sounddevice._initialize()
    apis = sounddevice.query_hostapis()
    return [
        DeviceInfo(
            index=int(d["index"]),
            name=str(d["name"]),
            host_api=str(apis[d["hostapi"]]["name"]),
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_sample_rate_hz=float(d["default_samplerate"]),
        )
        for d in sounddevice.query_devices()
    ]


def find_device(spec: str, *, output: bool, refresh: bool = False) -> DeviceInfo:
    """The device named by ``spec``: "" = default, digits = index, else a name.

    A name matches exactly, else as a unique case-insensitive substring.

    Raises:
        BackendError: no such device, or several match; the message lists the candidates.

    """
    devices = [
        d for d in list_devices(refresh=refresh)
        if (d.max_output_channels if output else d.max_input_channels) > 0
    ]
    kind = "output" if output else "input"
    names = ", ".join(f"{d.index}:{d.name!r}" for d in devices) or "none"
    spec = spec.strip()
    if not spec:
        default = sounddevice.default.device[1 if output else 0]
        if default is None or int(default) < 0:
            raise BackendError(f"no default {kind} device; {kind} devices: {names}")
        spec = str(int(default))
    if spec.isdigit():
        match = [d for d in devices if d.index == int(spec)]
    else:
        match = [d for d in devices if d.name == spec] or [
            d for d in devices if spec.lower() in d.name.lower()
        ]
    if len(match) == 1:
        return match[0]
    which = ", ".join(f"{d.index}:{d.name!r}" for d in match)
    reason = f"several {kind} devices match {spec!r} ({which})" if match else (
        f"no {kind} device matches {spec!r}")
    raise BackendError(f"{reason}; {kind} devices: {names}")


class DeviceLookup:
    """Finds the device ``spec`` names, afresh on every lookup after the first.

    PortAudio enumerates devices once; after a failure the list may have changed (USB
    replugged, sound server restarted), so a reopen re-enumerates.
    """

    def __init__(self, spec: str, *, output: bool) -> None:
        self.spec = spec
        self.output = output
        self._looked = False

    def find(self) -> DeviceInfo:
        """The device, as :func:`find_device` (raises its BackendError)."""
        device = find_device(self.spec, output=self.output, refresh=self._looked)
        self._looked = True
        return device


def open_stream(
    device: DeviceInfo,
    *,
    output: bool,
    rates: list[int],
    channels: int,
    sample_format: SampleFormat,
    block_frames: int,
    latency: str | float,
    callback: Any,
) -> tuple[Any, AudioFormat]:
    """Open (not start) a raw callback stream at the first of ``rates`` the device accepts.

    Returns the stream and the format it runs in. Blocks are ``block_frames`` at ``rates[0]``,
    scaled to the same duration at another rate (never re-derived from milliseconds).

    Raises:
        BackendError: PortAudio refused every rate; the message lists each refusal.

    """
    stream_class = sounddevice.RawOutputStream if output else sounddevice.RawInputStream
    errors = []
    for rate in dict.fromkeys(rates):
        fmt = AudioFormat(rate, channels, sample_format)
        try:
            stream = stream_class(
                device=device.index, samplerate=rate, channels=channels,
                dtype=DTYPES[sample_format],
                blocksize=max(1, round(block_frames * rate / rates[0])),
                latency=latency, callback=callback,
            )
        except sounddevice.PortAudioError as err:
            errors.append(f"{fmt.describe()}: {err}")
            continue
        return stream, fmt
    kind = "output" if output else "input"
    raise BackendError(f"cannot open {kind} device {device.name!r}: {'; '.join(errors)}")
