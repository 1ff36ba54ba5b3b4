"""Sources and sinks, chosen by name from a registry.

``create_source(name, config)`` builds the source a node's ``source`` parameter names. Backends
that need optional libraries (PortAudio, gRPC) are imported only when chosen, and fail with a
message saying what to install.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kos_audio.core.formats import AudioFormat
from kos_audio.core.interfaces import AudioSource
from kos_audio.errors import BackendError


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceConfig:
    """Everything any source may need; each source reads its own fields.

    ``format`` is what the node will publish; a source may deliver another format (a device
    that only does 48 kHz, a file), and the node converts.
    """

    format: AudioFormat
    block_ms: float = 20.0
    device: str = ""
    device_latency: str | float = "high"
    tone_frequency_hz: float = 440.0
    tone_amplitude: float = 0.5
    file_path: str = ""
    file_loop: bool = True


def _tone(cfg: SourceConfig) -> AudioSource:
    from kos_audio.backends.tone import ToneSource

    return ToneSource(cfg.format, frequency_hz=cfg.tone_frequency_hz,
                      amplitude=cfg.tone_amplitude,
                      block_frames=cfg.format.frames_for_ms(cfg.block_ms))


def _file(cfg: SourceConfig) -> AudioSource:
    from kos_audio.backends.file import FileSource

    return FileSource(cfg.file_path, loop=cfg.file_loop, block_ms=cfg.block_ms)


def _device(cfg: SourceConfig) -> AudioSource:
    from kos_audio.backends.device import DeviceSource

    return DeviceSource(cfg.format, device=cfg.device, latency=cfg.device_latency,
                        block_frames=cfg.format.frames_for_ms(cfg.block_ms))


#: Source factories by the name the ``source`` parameter uses.
SOURCES: dict[str, Callable[[SourceConfig], AudioSource]] = {
    "device": _device,
    "tone": _tone,
    "file": _file,
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
        raise BackendError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}") from None
    try:
        return factory(config)
    except ImportError as err:
        raise BackendError(f"source {name!r} is unavailable: {err}") from err


__all__ = ["SOURCES", "SourceConfig", "create_source"]
