"""Resonite IO ``resonite_io.v1``: message classes, audio framing and a synchronous client.

Message classes (built at run time from the shipped descriptor sets, typed for mypy):
:class:`MicrophoneAudioFrame`, :class:`MicrophoneStreamSummary`, :class:`SpeakerStreamRequest`,
:class:`AudioFrame`, :class:`PingRequest`, :class:`PingResponse`.

Example::

    with ResoniteIoClient(timeout_s=2.0) as client:      # socket resolved on first call
        client.ping("hello")
        call = client.stream_microphone(microphone_frames(blocks))   # paced to real time
        summary = call.result()
        for frame in client.stream_speaker():             # cancel() from another thread
            stereo = decode_speaker_frame(frame)          # (n, 2) float32
"""

from kos_audio.protocols.resonite_io.v1._messages import (
    CONNECTION_SERVICE,
    MICROPHONE_SERVICE,
    SCHEMA,
    SPEAKER_SERVICE,
    AudioFrame,
    MicrophoneAudioFrame,
    MicrophoneStreamSummary,
    PingRequest,
    PingResponse,
    SpeakerStreamRequest,
    connection_methods,
    microphone_methods,
    speaker_methods,
)
from kos_audio.protocols.resonite_io.v1.client import (
    RETRYABLE_CODES,
    MicrophoneStreamCall,
    ResoniteIoClient,
    ResoniteIoError,
    SpeakerStreamCall,
)
from kos_audio.protocols.resonite_io.v1.frames import (
    MICROPHONE_CHANNELS,
    SAMPLE_RATE_HZ,
    SPEAKER_CHANNELS,
    decode_microphone_frame,
    decode_speaker_frame,
    make_microphone_frame,
    microphone_frames,
)

__all__ = [
    "CONNECTION_SERVICE",
    "MICROPHONE_CHANNELS",
    "MICROPHONE_SERVICE",
    "RETRYABLE_CODES",
    "SAMPLE_RATE_HZ",
    "SCHEMA",
    "SPEAKER_CHANNELS",
    "SPEAKER_SERVICE",
    "AudioFrame",
    "MicrophoneAudioFrame",
    "MicrophoneStreamCall",
    "MicrophoneStreamSummary",
    "PingRequest",
    "PingResponse",
    "ResoniteIoClient",
    "ResoniteIoError",
    "SpeakerStreamCall",
    "SpeakerStreamRequest",
    "connection_methods",
    "decode_microphone_frame",
    "decode_speaker_frame",
    "make_microphone_frame",
    "microphone_frames",
    "microphone_methods",
    "speaker_methods",
]
