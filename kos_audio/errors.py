"""The project's exception hierarchy.

Every error kos_audio raises on purpose is a :class:`KosAudioError`. Foreign errors (PortAudio,
gRPC, libsndfile, OS) are wrapped at the boundary with ``raise ... from err`` so callers catch one
family and still see the cause.
"""

from __future__ import annotations


class KosAudioError(Exception):
    """Base class of all kos_audio errors."""


class AudioFormatError(KosAudioError, ValueError):
    """Audio bytes or a format description are invalid or unsupported."""


class BackendError(KosAudioError):
    """A source or sink failed: device missing or vanished, server unreachable, stream broken."""


class SourceFinished(KosAudioError):
    """A finite source (a file without looping) has delivered its last block."""
