"""Recording audio to safe, self-describing files (no ROS here).

- :class:`Recorder`: writer thread + queue + pre-roll; start/stop between two chunks.
- :class:`Recording`: one file: format conversion, sample-accurate time axis (gaps filled
  with silence from the stamps), max duration, periodic crash-safe syncs, JSON sidecar.
- :mod:`.naming`: names that never leave the output directory nor overwrite anything;
  owner-only permissions (:data:`PRIVATE`) unless :data:`GROUP_READABLE` is asked for.
- :mod:`.wavfile`: a WAV writer whose header stays valid while writing.
- :mod:`.recovery`: finishing recordings left incomplete by a crash.
"""

from kos_audio.core.recording.errors import RecordingError
from kos_audio.core.recording.naming import (
    GROUP_READABLE,
    PRIVATE,
    ClaimedFile,
    FileAccess,
    claim_new_file,
    claim_path,
    prepare_output_dir,
    sidecar_path,
    utc_stamp,
    validate_prefix,
)
from kos_audio.core.recording.preroll import PreRoll
from kos_audio.core.recording.recorder import (
    Recorder,
    RecorderConfig,
    RecorderEvent,
    RecorderState,
    RecorderStatus,
    StartRequest,
)
from kos_audio.core.recording.recording import (
    Chunk,
    EndReason,
    GapPolicy,
    Recording,
    RecordingOptions,
    RecordingSummary,
)
from kos_audio.core.recording.sidecar import (
    SCHEMA,
    iso8601,
    parse_iso8601,
    read_sidecar,
    sha256_of,
)
from kos_audio.core.recording.wavfile import WavWriter, repair_wav
from kos_audio.core.recording.writers import Container

__all__ = [
    "Recorder",
    "RecorderConfig",
    "RecorderEvent",
    "RecorderState",
    "RecorderStatus",
    "StartRequest",
    "Recording",
    "RecordingOptions",
    "RecordingSummary",
    "Chunk",
    "EndReason",
    "GapPolicy",
    "Container",
    "PreRoll",
    "RecordingError",
    "ClaimedFile",
    "FileAccess",
    "PRIVATE",
    "GROUP_READABLE",
    "claim_new_file",
    "claim_path",
    "prepare_output_dir",
    "sidecar_path",
    "utc_stamp",
    "validate_prefix",
    "SCHEMA",
    "iso8601",
    "parse_iso8601",
    "read_sidecar",
    "sha256_of",
    "WavWriter",
    "repair_wav",
]
