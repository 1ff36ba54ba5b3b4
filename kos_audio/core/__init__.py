"""The pure audio core: formats, conversion, resampling, chunking, stamping, capture loop.

Imports neither rclpy, grpc nor sounddevice (a test enforces it), so it is usable and testable
anywhere numpy and soxr are.
"""

from kos_audio.core.backoff import Backoff
from kos_audio.core.capture import CaptureLoop, CaptureState
from kos_audio.core.chunking import FrameChunker
from kos_audio.core.convert import (
    Frames,
    StreamConverter,
    count_non_finite,
    from_float,
    remix,
    silence,
    to_float,
)
from kos_audio.core.formats import AudioFormat, SampleFormat, supported_sample_formats
from kos_audio.core.interfaces import (
    AudioSink,
    AudioSource,
    CapturedBlock,
    EventCallback,
    PlaybackBlock,
    PullCallback,
)
from kos_audio.core.mixer import Ducker, Mixer
from kos_audio.core.pacing import PacedPuller
from kos_audio.core.playback import DropReason, EnqueueResult, PlaybackEngine
from kos_audio.core.playback_stats import PlaybackState, PlaybackStats
from kos_audio.core.recording import (
    Container,
    Recorder,
    RecorderConfig,
    Recording,
    RecordingError,
    StartRequest,
)
from kos_audio.core.resample import StreamResampler
from kos_audio.core.sink_loop import PlaybackLoop, SinkState
from kos_audio.core.stamping import NS_PER_S, ChunkStamper, SampleClock, StampedChunk

__all__ = [
    "NS_PER_S",
    "AudioFormat",
    "AudioSink",
    "AudioSource",
    "Backoff",
    "CaptureLoop",
    "CaptureState",
    "CapturedBlock",
    "DropReason",
    "Ducker",
    "EnqueueResult",
    "ChunkStamper",
    "EventCallback",
    "FrameChunker",
    "Frames",
    "Mixer",
    "PacedPuller",
    "PlaybackEngine",
    "PlaybackLoop",
    "PlaybackState",
    "PlaybackStats",
    "PlaybackBlock",
    "PullCallback",
    "Container",
    "Recorder",
    "RecorderConfig",
    "Recording",
    "RecordingError",
    "StartRequest",
    "SampleClock",
    "SampleFormat",
    "SinkState",
    "StampedChunk",
    "StreamConverter",
    "StreamResampler",
    "count_non_finite",
    "from_float",
    "remix",
    "silence",
    "supported_sample_formats",
    "to_float",
]
