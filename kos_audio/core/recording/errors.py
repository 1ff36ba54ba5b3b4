"""Errors of the recording subpackage."""

from __future__ import annotations

from kos_audio.errors import KosAudioError


class RecordingError(KosAudioError):
    """A recording could not start, or ended early.

    Causes: unwritable directory, full disk, size limit, refused name. The message says what
    happened and where; OS errors are chained as the cause.
    """
