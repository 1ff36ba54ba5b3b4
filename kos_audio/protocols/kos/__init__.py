"""The K-Scale KOS sound service (``kos.sound.SoundService``): messages and a blocking client.

Wire-compatible with KOS' ``kos/sound.proto`` and ``kos/common.proto`` (shipped here as the
source of truth, compiled into ``kos_sound.desc``). Works with grpcio >= 1.51 and protobuf
3.21 (python 4.21.x) through 7.x. No ROS import.
"""

from kos_audio.protocols.kos.client import KosSoundClient, PlayAudioCall, RecordAudioCall
from kos_audio.protocols.kos.messages import (
    SCHEMA,
    SOUND_METHODS,
    SOUND_SERVICE,
    ActionResponse,
    AudioCapabilities,
    AudioConfig,
    Empty,
    Error,
    ErrorCode,
    GetAudioInfoResponse,
    PlayAudioRequest,
    RecordAudioRequest,
    RecordAudioResponse,
)

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
    "KosSoundClient",
    "PlayAudioCall",
    "PlayAudioRequest",
    "RecordAudioCall",
    "RecordAudioRequest",
    "RecordAudioResponse",
]
