"""Drive a KOS SoundService with pykos (the upstream Python client) and print what happened.

Run by ``test_kos_protocol.py`` in a subprocess, never imported: pykos patches asyncio
globally (nest_asyncio) and needs newer protobuf/grpcio than the project supports.

Usage: ``python pykos_probe.py HOST PORT`` -> one JSON object on stdout with the capabilities
pykos decoded, the bytes it recorded (hex) and the chunks it played (hex), and the play answer;
or ``{"unsupported": why}`` when the installed pykos lacks what the probe uses (old releases,
e.g. 0.2.3, the newest for Python 3.10, have no sound service).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

RECORD_MS = 100
CONFIG = {"sample_rate": 16_000, "bit_depth": 16, "channels": 1}
# Uneven chunk sizes (bytes, whole int16 frames) so framing mistakes show.
PLAY_CHUNK_SIZES = (640, 2, 1278, 320)


def play_chunks() -> list[bytes]:
    """The deterministic chunks the probe plays."""
    out = []
    for index, size in enumerate(PLAY_CHUNK_SIZES):
        out.append(bytes((index * 31 + k * 7) % 256 for k in range(size)))
    return out


def _caps(message: Any) -> dict[str, Any]:
    return {
        "sample_rates": list(message.sample_rates),
        "bit_depths": list(message.bit_depths),
        "channels": list(message.channels),
        "available": bool(message.available),
    }


def unsupported() -> str | None:
    """What the installed pykos lacks of the API the probe uses, or None when it has it all."""
    from importlib.metadata import version

    import pykos.client

    kos = pykos.client.KOS
    lacks = []
    if not hasattr(kos, "__aenter__"):
        lacks.append("async with KOS(...)")
    if not isinstance(getattr(kos, "sound", None), property):
        lacks.append("KOS.sound")
    try:
        from pykos.services.sound import SoundServiceClient
    except ImportError:
        lacks.append("pykos.services.sound")
    else:
        lacks += [
            f"SoundServiceClient.{name}"
            for name in ("get_audio_info", "record_audio", "play_audio")
            if not hasattr(SoundServiceClient, name)
        ]
    return f"pykos {version('pykos')} lacks {', '.join(lacks)}" if lacks else None


async def probe(host: str, port: int) -> dict[str, Any]:
    """Run GetAudioInfo, a short RecordAudio and a short PlayAudio through pykos."""
    from pykos import KOS

    async with KOS(ip=host, port=port) as kos:
        info = await kos.sound.get_audio_info()
        recorded = bytearray()
        record_chunks = 0
        async for chunk in kos.sound.record_audio(duration_ms=RECORD_MS, **CONFIG):
            recorded += chunk
            record_chunks += 1

        chunks = play_chunks()

        async def feed() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        answer = await kos.sound.play_audio(feed(), **CONFIG)
    return {
        "playback": _caps(info.playback),
        "recording": _caps(info.recording),
        "info_has_error": info.HasField("error"),
        "config": CONFIG,
        "record_ms": RECORD_MS,
        "recorded_hex": bytes(recorded).hex(),
        "record_chunks": record_chunks,
        "played_hex": [chunk.hex() for chunk in chunks],
        "play_success": bool(answer.success),
    }


def main() -> int:
    """Entry point: ``HOST PORT``; prints the JSON result."""
    host, port = sys.argv[1], int(sys.argv[2])
    why = unsupported()
    print(json.dumps({"unsupported": why} if why else asyncio.run(probe(host, port))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
