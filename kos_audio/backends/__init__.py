"""Sources and sinks, chosen by name from a registry.

``create_source(name, config)`` builds the source a node's ``source`` parameter names, and
``create_sink(name, config)`` the sink a node's ``sink`` parameter names. Backends
that need optional libraries (PortAudio, gRPC) are imported only when chosen, and fail with a
message saying what to install.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import AudioSink, AudioSource
from kos_audio.errors import BackendError


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceConfig:
    """Everything any source may need; each source reads its own fields.

    ``format`` is what the node will publish; a source may deliver another format (a device
    that only does 48 kHz, a file), and the node converts. ``block_ms`` becomes frames once,
    in :attr:`block_frames` (the node's chunk size too).
    """

    format: AudioFormat
    block_ms: float = 20.0
    device: str = ""
    device_latency: str | float = "high"
    tone_frequency_hz: float = 440.0
    tone_amplitude: float = 0.5
    file_path: str = ""
    file_loop: bool = True
    kos_address: str = "localhost:50051"
    kos_timeout_s: float = 5.0
    resonite_socket: str = ""

    @property
    def block_frames(self) -> int:
        """``block_ms`` in frames of :attr:`format`: the one conversion for every source."""
        return self.format.frames_for_ms(self.block_ms)


def _tone(cfg: SourceConfig) -> AudioSource:
    from kos_audio.backends.tone_source import ToneSource

    return ToneSource(cfg.format, frequency_hz=cfg.tone_frequency_hz,
                      amplitude=cfg.tone_amplitude,
                      block_frames=cfg.block_frames)


def _file(cfg: SourceConfig) -> AudioSource:
    from kos_audio.backends.file_source import FileSource

    return FileSource(cfg.file_path, loop=cfg.file_loop, block_ms=cfg.block_ms)


def _device(cfg: SourceConfig) -> AudioSource:
    from kos_audio.backends.device_source import DeviceSource

    return DeviceSource(cfg.format, device=cfg.device, latency=cfg.device_latency,
                        block_frames=cfg.block_frames)


def _kos(cfg: SourceConfig) -> AudioSource:
    from kos_audio.backends.kos_source import KosSource

    return KosSource(cfg.format, address=cfg.kos_address, timeout_s=cfg.kos_timeout_s)


def _resonite_speaker(cfg: SourceConfig) -> AudioSource:
    from kos_audio.backends.resonite_source import ResoniteSpeakerSource

    return ResoniteSpeakerSource(socket=cfg.resonite_socket)


#: Source factories by the name the ``source`` parameter uses.
SOURCES: dict[str, Callable[[SourceConfig], AudioSource]] = {
    "device": _device,
    "tone": _tone,
    "file": _file,
    "kos": _kos,
    "resonite_speaker": _resonite_speaker,
}


def create_source(name: str, config: SourceConfig) -> AudioSource:
    """Build the source called ``name``.

    Raises:
        BackendError: unknown name, or its library is missing (the message says what to
            install).

    """
    try:
        factory = SOURCES[name]
    except KeyError:
        known = ", ".join(SOURCES)
        raise BackendError(f"unknown source {name!r}; choose one of {known}") from None
    try:
        return factory(config)
    except ImportError as err:
        raise BackendError(f"source {name!r} is unavailable: {err}") from err


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkConfig:
    """Everything any sink may need; each sink reads its own fields.

    ``sample_rate_hz``/``channels`` 0 and ``sample_format`` None ask for the sink's native
    choice; the sink reports what it opened (:meth:`AudioSink.open`) and the engine converts.
    """

    sample_rate_hz: int = 0
    channels: int = 0
    sample_format: SampleFormat | None = None
    block_ms: float = 20.0
    device: str = ""
    device_latency: str | float = "high"
    file_path: str = ""
    kos_address: str = "localhost:50051"
    kos_timeout_s: float = 5.0
    kos_output_latency_s: float = 0.1
    resonite_socket: str = ""
    resonite_lead_ms: float = 100.0


def _device_sink(cfg: SinkConfig) -> AudioSink:
    from kos_audio.backends.device_sink import DeviceSink

    return DeviceSink(device=cfg.device, sample_rate_hz=cfg.sample_rate_hz,
                      channels=cfg.channels, sample_format=cfg.sample_format,
                      block_ms=cfg.block_ms, latency=cfg.device_latency)


def _file_sink(cfg: SinkConfig) -> AudioSink:
    from kos_audio.backends.file_sink import FileSink

    return FileSink(cfg.file_path, sample_rate_hz=cfg.sample_rate_hz, channels=cfg.channels,
                    sample_format=cfg.sample_format, block_ms=cfg.block_ms)


def _null_sink(cfg: SinkConfig) -> AudioSink:
    from kos_audio.backends.null_sink import NullSink

    return NullSink(sample_rate_hz=cfg.sample_rate_hz, channels=cfg.channels,
                    sample_format=cfg.sample_format, block_ms=cfg.block_ms)


def _kos_sink(cfg: SinkConfig) -> AudioSink:
    from kos_audio.backends.kos_sink import KosSink

    return KosSink(address=cfg.kos_address, timeout_s=cfg.kos_timeout_s,
                   sample_rate_hz=cfg.sample_rate_hz, channels=cfg.channels,
                   sample_format=cfg.sample_format, block_ms=cfg.block_ms,
                   output_latency_s=cfg.kos_output_latency_s)


def _resonite_mic(cfg: SinkConfig) -> AudioSink:
    from kos_audio.backends.resonite_sink import ResoniteMicSink

    return ResoniteMicSink(socket=cfg.resonite_socket, lead_ms=cfg.resonite_lead_ms,
                           block_ms=cfg.block_ms)


#: Sink factories by the name the ``sink`` parameter uses.
SINKS: dict[str, Callable[[SinkConfig], AudioSink]] = {
    "device": _device_sink,
    "file": _file_sink,
    "null": _null_sink,
    "kos": _kos_sink,
    "resonite_mic": _resonite_mic,
}


def create_sink(name: str, config: SinkConfig) -> AudioSink:
    """Build the sink called ``name``.

    Raises:
        BackendError: unknown name, a required setting is missing, or its library is missing
            (the message says what to install).

    """
    try:
        factory = SINKS[name]
    except KeyError:
        raise BackendError(f"unknown sink {name!r}; choose one of {', '.join(SINKS)}") from None
    try:
        return factory(config)
    except ImportError as err:
        raise BackendError(f"sink {name!r} is unavailable: {err}") from err


__all__ = ["SINKS", "SOURCES", "SinkConfig", "SourceConfig", "create_sink", "create_source"]


def print_devices(*, output: bool) -> int:
    """Print the PortAudio input (or output) devices; the exit code (1: no PortAudio)."""
    try:
        from kos_audio.backends.portaudio import list_devices
    except ImportError as err:
        print(f"cannot list devices: {err}")
        return 1
    kind = "out ch" if output else "in ch"
    print(f"{'index':>5}  {'name':<40} {kind:>6} {'rate (Hz)':>9}  host API")
    for d in list_devices():
        channels = d.max_output_channels if output else d.max_input_channels
        if channels > 0:
            print(f"{d.index:>5}  {d.name:<40} {channels:>6} "
                  f"{d.default_sample_rate_hz:>9.0f}  {d.host_api}")
    return 0
