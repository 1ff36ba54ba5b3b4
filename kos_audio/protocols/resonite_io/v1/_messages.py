"""The ``resonite_io.v1`` message classes and RPC tables, built from the shipped descriptor sets.

At run time the classes come from :class:`~kos_audio.protocols._runtime.ProtoSchema` (no
generated code, so any protobuf from 3.21/4.21 to 7.x works). For type checkers the same names
are declared as classes with typed fields and keyword constructors, mirroring the ``.proto``
files next to this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kos_audio.protocols._runtime import MethodInfo, ProtoSchema

__all__ = [
    "CONNECTION_SERVICE",
    "MICROPHONE_SERVICE",
    "SCHEMA",
    "SPEAKER_SERVICE",
    "AudioFrame",
    "MicrophoneAudioFrame",
    "MicrophoneStreamSummary",
    "PingRequest",
    "PingResponse",
    "SpeakerStreamRequest",
    "connection_methods",
    "microphone_methods",
    "speaker_methods",
]

MICROPHONE_SERVICE = "resonite_io.v1.Microphone"
SPEAKER_SERVICE = "resonite_io.v1.Speaker"
CONNECTION_SERVICE = "resonite_io.v1.Connection"

SCHEMA = ProtoSchema.from_package_data(
    __package__ or "kos_audio.protocols.resonite_io.v1",
    "resonite_io_v1_microphone.desc",
    "resonite_io_v1_speaker.desc",
    "resonite_io_v1_connection.desc",
)
"""The private descriptor pool holding ``resonite_io/v1/{microphone,speaker,connection}.proto``."""

if TYPE_CHECKING:
    # Without protobuf stubs Message is Any; the ignores (misc) cover that case only.
    from google.protobuf.message import Message

    class MicrophoneAudioFrame(Message):  # type: ignore[misc,unused-ignore]
        """Client -> server: float32 LE mono 48 kHz samples; frame_id from 0 per stream."""

        frame_id: int
        unix_nanos: int
        sample_count: int
        samples: bytes

        def __init__(
            self,
            *,
            frame_id: int = ...,
            unix_nanos: int = ...,
            sample_count: int = ...,
            samples: bytes = ...,
        ) -> None: ...

    class MicrophoneStreamSummary(Message):  # type: ignore[misc,unused-ignore]
        """Server -> client once the microphone stream was half-closed."""

        received_frames: int
        received_samples: int
        dropped_frames: int
        unix_nanos: int

        def __init__(
            self,
            *,
            received_frames: int = ...,
            received_samples: int = ...,
            dropped_frames: int = ...,
            unix_nanos: int = ...,
        ) -> None: ...

    class SpeakerStreamRequest(Message):  # type: ignore[misc,unused-ignore]
        """Opens the speaker stream; no fields."""

        def __init__(self) -> None: ...

    class AudioFrame(Message):  # type: ignore[misc,unused-ignore]
        """Server -> client: float32 LE stereo interleaved 48 kHz; sample_count per channel."""

        frame_id: int
        unix_nanos: int
        sample_count: int
        samples: bytes

        def __init__(
            self,
            *,
            frame_id: int = ...,
            unix_nanos: int = ...,
            sample_count: int = ...,
            samples: bytes = ...,
        ) -> None: ...

    class PingRequest(Message):  # type: ignore[misc,unused-ignore]
        message: str

        def __init__(self, *, message: str = ...) -> None: ...

    class PingResponse(Message):  # type: ignore[misc,unused-ignore]
        message: str
        server_unix_nanos: int

        def __init__(self, *, message: str = ..., server_unix_nanos: int = ...) -> None: ...

else:
    MicrophoneAudioFrame = SCHEMA.message_class("resonite_io.v1.MicrophoneAudioFrame")
    MicrophoneStreamSummary = SCHEMA.message_class("resonite_io.v1.MicrophoneStreamSummary")
    SpeakerStreamRequest = SCHEMA.message_class("resonite_io.v1.SpeakerStreamRequest")
    AudioFrame = SCHEMA.message_class("resonite_io.v1.AudioFrame")
    PingRequest = SCHEMA.message_class("resonite_io.v1.PingRequest")
    PingResponse = SCHEMA.message_class("resonite_io.v1.PingResponse")


def microphone_methods() -> dict[str, MethodInfo]:
    """``{"StreamAudio": ...}`` of ``resonite_io.v1.Microphone`` (client streaming)."""
    return SCHEMA.methods(MICROPHONE_SERVICE)


def speaker_methods() -> dict[str, MethodInfo]:
    """``{"StreamAudio": ...}`` of ``resonite_io.v1.Speaker`` (server streaming)."""
    return SCHEMA.methods(SPEAKER_SERVICE)


def connection_methods() -> dict[str, MethodInfo]:
    """``{"Ping": ...}`` of ``resonite_io.v1.Connection`` (unary)."""
    return SCHEMA.methods(CONNECTION_SERVICE)
