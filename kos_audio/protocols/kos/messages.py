"""Message classes of ``kos.sound`` / ``kos.common``, built at import from ``kos_sound.desc``.

The classes are real protobuf message classes (construct with keyword arguments,
``SerializeToString``, ``FromString``, ``HasField``); their encodings are byte-identical to
generated code. For type checkers they are declared below with their fields, because classes
made at run time are opaque to mypy; ``test/protocols`` checks the declarations against the
descriptors. Field units: ``sample_rate`` Hz, ``bit_depth`` bits per sample, ``channels``
interleaved channels per frame, ``duration_ms`` milliseconds, ``audio_data`` interleaved
little-endian signed PCM bytes.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from kos_audio.protocols._runtime import MethodInfo, ProtoSchema

__all__ = [
    "SCHEMA",
    "SOUND_METHODS",
    "SOUND_SERVICE",
    "ActionResponse",
    "AudioCapabilities",
    "AudioConfig",
    "Empty",
    "Error",
    "ErrorCode",
    "GetAudioInfoResponse",
    "PlayAudioRequest",
    "RecordAudioRequest",
    "RecordAudioResponse",
]

SCHEMA: ProtoSchema = ProtoSchema.from_package_data("kos_audio.protocols.kos", "kos_sound.desc")
"""The private descriptor pool holding ``kos/common.proto`` and ``kos/sound.proto``."""

SOUND_SERVICE = "kos.sound.SoundService"
"""Full name of the service; method paths are ``/kos.sound.SoundService/<Method>``."""

SOUND_METHODS: dict[str, MethodInfo] = SCHEMA.methods(SOUND_SERVICE)
"""``GetAudioInfo``, ``PlayAudio``, ``RecordAudio``, ``StopRecording`` with their classes."""


class ErrorCode(enum.IntEnum):
    """``kos.common.ErrorCode``: the ``code`` of an :class:`Error` (values are wire numbers)."""

    UNKNOWN = 0
    NOT_IMPLEMENTED = 1
    INVALID_ARGUMENT = 2
    HARDWARE_FAILURE = 3
    TIMEOUT = 4
    UNAUTHORIZED = 5


# For type checkers only. protobuf ships no type information (types-protobuf is optional), so
# Message may be Any: hence the ignores, which are unused when the stubs are installed.
if TYPE_CHECKING:
    from collections.abc import Iterable

    from google.protobuf.internal.containers import RepeatedScalarFieldContainer
    from google.protobuf.message import Message

    class Empty(Message):  # type: ignore[misc,unused-ignore]
        """``google.protobuf.Empty``."""

    class Error(Message):  # type: ignore[misc,unused-ignore]
        """``kos.common.Error``: a failure reported inside a successful RPC."""

        code: int
        message: str

        def __init__(self, *, code: int = ..., message: str = ...) -> None: ...

    class ActionResponse(Message):  # type: ignore[misc,unused-ignore]
        """``kos.common.ActionResponse``: ``success``, else ``error`` says why."""

        success: bool
        error: Error

        def __init__(self, *, success: bool = ..., error: Error | None = ...) -> None: ...

    class AudioCapabilities(Message):  # type: ignore[misc,unused-ignore]
        """``kos.sound.AudioCapabilities`` of one direction (playback or recording)."""

        sample_rates: RepeatedScalarFieldContainer[int]
        bit_depths: RepeatedScalarFieldContainer[int]
        channels: RepeatedScalarFieldContainer[int]
        available: bool

        def __init__(
            self,
            *,
            sample_rates: Iterable[int] | None = ...,
            bit_depths: Iterable[int] | None = ...,
            channels: Iterable[int] | None = ...,
            available: bool = ...,
        ) -> None: ...

    class GetAudioInfoResponse(Message):  # type: ignore[misc,unused-ignore]
        """``kos.sound.GetAudioInfoResponse``."""

        playback: AudioCapabilities
        recording: AudioCapabilities
        error: Error

        def __init__(
            self,
            *,
            playback: AudioCapabilities | None = ...,
            recording: AudioCapabilities | None = ...,
            error: Error | None = ...,
        ) -> None: ...

    class AudioConfig(Message):  # type: ignore[misc,unused-ignore]
        """``kos.sound.AudioConfig``: Hz, bits per sample, interleaved channels."""

        sample_rate: int
        bit_depth: int
        channels: int

        def __init__(
            self, *, sample_rate: int = ..., bit_depth: int = ..., channels: int = ...
        ) -> None: ...

    class PlayAudioRequest(Message):  # type: ignore[misc,unused-ignore]
        """``kos.sound.PlayAudioRequest``: ``config`` on the first message only, then PCM."""

        config: AudioConfig
        audio_data: bytes

        def __init__(
            self, *, config: AudioConfig | None = ..., audio_data: bytes = ...
        ) -> None: ...

    class RecordAudioRequest(Message):  # type: ignore[misc,unused-ignore]
        """``kos.sound.RecordAudioRequest``; ``duration_ms`` 0 records until stopped."""

        config: AudioConfig
        duration_ms: int

        def __init__(
            self, *, config: AudioConfig | None = ..., duration_ms: int = ...
        ) -> None: ...

    class RecordAudioResponse(Message):  # type: ignore[misc,unused-ignore]
        """``kos.sound.RecordAudioResponse``: one PCM chunk, or ``error`` and the stream ends."""

        audio_data: bytes
        error: Error

        def __init__(self, *, audio_data: bytes = ..., error: Error | None = ...) -> None: ...

else:
    Empty = SCHEMA.message_class("google.protobuf.Empty")
    Error = SCHEMA.message_class("kos.common.Error")
    ActionResponse = SCHEMA.message_class("kos.common.ActionResponse")
    AudioCapabilities = SCHEMA.message_class("kos.sound.AudioCapabilities")
    GetAudioInfoResponse = SCHEMA.message_class("kos.sound.GetAudioInfoResponse")
    AudioConfig = SCHEMA.message_class("kos.sound.AudioConfig")
    PlayAudioRequest = SCHEMA.message_class("kos.sound.PlayAudioRequest")
    RecordAudioRequest = SCHEMA.message_class("kos.sound.RecordAudioRequest")
    RecordAudioResponse = SCHEMA.message_class("kos.sound.RecordAudioResponse")
