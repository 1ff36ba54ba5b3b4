"""The audio-input floor: a PortAudio input stream whose callback hands each block to a thread.

    python -m benchmarks.bare_capture DEVICE RATE CHANNELS BLOCK_FRAMES

The same device, format and block size as mic_node, and the same hand-over (PortAudio's
callback copies the block onto a queue, a Python thread takes it), with nothing done to the
block: what capturing audio into Python costs before any stamping or publishing.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import sys
import threading

import sounddevice


def main() -> None:
    device, rate, channels, block_frames = sys.argv[1], *map(int, sys.argv[2:5])
    blocks: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    stop = threading.Event()

    def callback(indata: object, frames: int, time_info: object, status: object) -> None:
        blocks.put(bytes(indata))  # type: ignore[call-overload]

    def consume() -> None:
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                blocks.get(timeout=0.25)

    signal.signal(signal.SIGINT, lambda *_: stop.set())
    consumer = threading.Thread(target=consume)
    consumer.start()
    with sounddevice.RawInputStream(device=device, samplerate=rate, channels=channels,
                                    dtype="int16", blocksize=block_frames, latency="high",
                                    callback=callback):
        stop.wait()
    consumer.join()


if __name__ == "__main__":
    main()
