"""Errors of the echo package."""

from __future__ import annotations

from kos_audio.errors import KosAudioError


class EchoError(KosAudioError):
    """The echo canceller or the voice activity detector cannot run as asked."""


class MissingLibraryError(EchoError, ImportError):
    """An optional library of the echo package is not installed; the message says what to do."""


def missing(package: str, module: str, err: ImportError) -> MissingLibraryError:
    """The error raised when ``module`` (from PyPI ``package``) does not import."""
    return MissingLibraryError(
        f"the echo canceller needs the Python package {package!r} (import {module}): "
        f"pip install {package}  (or pip install 'kos_audio[echo]'); import failed: {err}")
