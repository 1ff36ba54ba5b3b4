"""The playback engine: a bounded, thread-safe speech queue that a sink's clock pulls from.

Background audio is mixed under the speech with ducking; interrupt, pause and an honest
"is it still sounding" account are part of it. The parts live beside it: the input side
(and what :meth:`PlaybackEngine.enqueue` returns) in :mod:`kos_audio.core.input_stream`, the
queue in :mod:`kos_audio.core.frame_queue`, the counters and their snapshot in
:mod:`kos_audio.core.playback_stats`.

Threads:
    - producers (the ROS executor) call :meth:`PlaybackEngine.enqueue` /
      :meth:`~PlaybackEngine.enqueue_background`; decoding, NaN repair, remixing and
      resampling to the sink's format happen there, outside the queue's lock;
    - the sink's real-time thread calls :meth:`PlaybackEngine.pull`, which only copies queued
      frames, mixes and clips (one short lock, no allocation beyond the block, no I/O);
    - a housekeeping thread (:class:`kos_audio.core.sink_loop.PlaybackLoop`) calls
      :meth:`PlaybackEngine.flush_idle` and sets :attr:`PlaybackEngine.output_latency_s`;
    - control (interrupt, pause, volume) may come from any thread.
"""

from __future__ import annotations

import threading
import time

from kos_audio.core.convert import Buffer
from kos_audio.core.formats import AudioFormat
from kos_audio.core.frame_queue import FrameQueue
from kos_audio.core.input_stream import (
    Converted,
    DropReason,
    EnqueueResult,
    InputStream,
    InterruptFence,
)
from kos_audio.core.interfaces import PlaybackBlock
from kos_audio.core.mixer import Mixer
from kos_audio.core.playback_stats import (
    PlaybackCounters,
    PlaybackState,
    PlaybackStats,
    UtteranceCounter,
)
from kos_audio.errors import AudioFormatError

__all__ = [
    "DEFAULT_FENCE_S",
    "FADE_S",
    "DropReason",
    "EnqueueResult",
    "PlaybackEngine",
    "PlaybackState",
    "PlaybackStats",
]

#: Unstamped chunks arriving this soon (s) after an interrupt are taken for late chunks of the
#: interrupted utterance and dropped. Long enough for chunks already in flight (DDS delivers
#: within milliseconds; a producer that hears the same interrupt stops within a few hundred),
#: short enough that the next answer is not cut.
DEFAULT_FENCE_S = 0.5
#: On an interrupt this much (s) of what is queued fades out instead of stopping on a click.
FADE_S = 0.005


class PlaybackEngine:
    """Queues speech and background audio and hands the mix to a sink's clock.

    Args:
        output: the sink's format (its rate and channels are what :meth:`pull` returns; the
            sample format is the sink's business). Replace with :meth:`configure`.
        max_queue_s: speech queued beyond this (s) drops the oldest audio (counted); the
            background queue has the same bound.
        volume: master gain of the mix (linear, 0..4).
        background_gain: background gain when no speech sounds (linear).
        duck_gain: background gain while speech sounds (linear).
        fence_s: after an interrupt, unstamped chunks are dropped for this long (s).
        block_s: the sink's period (s); sets when a held-back resampler tail is flushed.

    Raises:
        ValueError: a gain or the volume is out of range, ``max_queue_s`` is not positive.

    """

    def __init__(
        self,
        output: AudioFormat,
        *,
        max_queue_s: float = 60.0,
        volume: float = 1.0,
        background_gain: float = 0.5,
        duck_gain: float = 0.15,
        fence_s: float = DEFAULT_FENCE_S,
        block_s: float = 0.02,
    ) -> None:
        if not max_queue_s > 0:
            raise ValueError(f"max_queue_s must be positive, not {max_queue_s!r}")
        self.max_queue_s = max_queue_s
        #: The sink's period (s); the sink loop sets it once the sink is open.
        self.block_s = block_s
        #: Seconds from a pull until its first sample is heard; the sink loop keeps it current.
        self.output_latency_s = 0.0
        self._lock = threading.Lock()  # queues, counters, state: short sections only
        self._convert_lock = threading.Lock()  # the input streams; taken before _lock
        self._fence = InterruptFence(fence_s)
        self._counts = PlaybackCounters()
        self._utterances = UtteranceCounter(self._counts)
        self._paused = False
        self._sound_until = 0.0  # monotonic time the last pulled speech frame is heard
        self._mark: float | None = None  # receive time of an utterance's first chunk
        self._mixer = Mixer(output.sample_rate_hz, output.channels, volume=volume,
                            gain=background_gain, duck_gain=duck_gain)
        self._setup(output)

    def _setup(self, output: AudioFormat) -> None:
        self._output = output
        self._rate = output.sample_rate_hz
        self._max_frames = max(1, round(self.max_queue_s * self._rate))
        self._speech = FrameQueue(output.channels)
        self._background = FrameQueue(output.channels)
        self._speech_in = InputStream(output)
        self._background_in = InputStream(output)

    # -- configuration (any thread) --------------------------------------------------------
    @property
    def output(self) -> AudioFormat:
        """The format :meth:`pull` delivers (rate and channels)."""
        return self._output

    @property
    def fence_s(self) -> float:
        """After an interrupt, unstamped chunks are dropped for this long (s); settable."""
        return self._fence.fence_s

    @fence_s.setter
    def fence_s(self, value: float) -> None:
        self._fence.fence_s = value

    def configure(self, output: AudioFormat) -> float:
        """Switch to another sink format (the sink reopened differently).

        Same rate and channels: nothing changes. Otherwise the queues are dropped (their
        audio is at the old rate) and counted as overflow; returns the seconds dropped.
        """
        with self._convert_lock, self._lock:
            if (output.sample_rate_hz, output.channels) == (self._rate, self._output.channels):
                self._output = output
                return 0.0
            dropped = self._speech.frames
            self._counts.overflow_frames += dropped
            seconds = dropped / self._rate
            mixer = self._mixer
            self._mixer = Mixer(output.sample_rate_hz, output.channels, volume=mixer.volume,
                                gain=mixer.ducker.gain, duck_gain=mixer.ducker.duck_gain)
            self._setup(output)
            return seconds

    def set_gains(
        self, *, volume: float | None = None, background_gain: float | None = None,
        duck_gain: float | None = None,
    ) -> None:
        """Change the mix at run time (takes effect at the next pull, ramped for gains).

        Raises:
            ValueError: a value outside 0..4 (nothing is changed then).

        """
        mixer = self._mixer
        probe = Mixer(self._rate, self._output.channels,
                      volume=mixer.volume if volume is None else volume,
                      gain=mixer.ducker.gain if background_gain is None else background_gain,
                      duck_gain=mixer.ducker.duck_gain if duck_gain is None else duck_gain)
        mixer.volume = probe.volume
        mixer.ducker.gain = probe.ducker.gain
        mixer.ducker.duck_gain = probe.ducker.duck_gain

    # -- producers (executor thread) -------------------------------------------------------
    def enqueue(
        self,
        data: Buffer,
        fmt: AudioFormat,
        *,
        now_ns: int,
        stamp_ns: int | None = None,
        receive_mono: float | None = None,
    ) -> EnqueueResult:
        """Queue one speech chunk.

        Args:
            data: interleaved PCM in ``fmt`` (``msg.data`` as received, not copied first).
            fmt: its format (the latest ``audio_info``, or the node's ``input.*``).
            now_ns: the current time on the clock ``stamp_ns`` and :meth:`interrupt` use.
            stamp_ns: when the producer made the chunk (``header.stamp``), None if unstamped.
            receive_mono: ``time.monotonic()`` at reception, for the latency statistics.

        Returns:
            What happened; never raises for bad audio (the result says why it was refused).

        """
        with self._lock:
            late = self._fence.late(now_ns, stamp_ns)
            if late:
                self._counts.late_chunks += 1
        if late:
            return EnqueueResult(dropped=DropReason.LATE,
                                 message=f"late chunk of an interrupted utterance dropped: {late}")
        now = time.monotonic()
        with self._convert_lock:
            was_idle = not self._speech_in.pending
            try:
                chunk = self._speech_in.convert(data, fmt)
            except AudioFormatError as err:
                return self._refuse(err, "chunk")
            with self._lock:
                speech = self._speech
                if was_idle and speech.frames <= speech.fade_frames:
                    # An utterance starts: its first sample's latency is measured. The
                    # resampler may return nothing yet; the mark waits for the first frames.
                    self._mark = receive_mono
                if len(chunk.frames):
                    speech.push(chunk.frames, self._mark)
                    self._mark = None
                    self._utterances.refilled(now)
                overflow = self._trim(speech)
                self._counts.overflow_frames += overflow
                if chunk.repair:
                    self._counts.count_repair(chunk.non_finite)
        return self._accepted(chunk, overflow, "chunk")

    def enqueue_background(self, data: Buffer, fmt: AudioFormat) -> EnqueueResult:
        """Queue one background chunk (never paused, interrupted nor fenced).

        Same contract as :meth:`enqueue`: never raises for bad audio.
        """
        with self._convert_lock:
            try:
                chunk = self._background_in.convert(data, fmt)
            except AudioFormatError as err:
                return self._refuse(err, "background chunk")
            with self._lock:
                self._background.push(chunk.frames)
                overflow = self._trim(self._background)
                self._counts.background_overflow_frames += overflow
                if chunk.repair:
                    self._counts.count_repair(chunk.non_finite)
        return self._accepted(chunk, overflow, "background chunk")

    def note_invalid(self) -> None:
        """Count a chunk the caller refused itself (e.g. its announced format is invalid)."""
        with self._lock:
            self._counts.invalid_chunks += 1

    def _refuse(self, err: AudioFormatError, what: str) -> EnqueueResult:
        self.note_invalid()
        return EnqueueResult(dropped=DropReason.INVALID, message=f"{what} dropped: {err}")

    @staticmethod
    def _accepted(chunk: Converted, overflow: int, what: str) -> EnqueueResult:
        return EnqueueResult(frames=len(chunk.frames), repaired=bool(chunk.repair),
                             overflow_frames=overflow,
                             message=f"{what} repaired: {chunk.repair}" if chunk.repair else "")

    def _trim(self, queue: FrameQueue) -> int:
        """Drop the oldest frames beyond ``max_queue_s`` (the caller holds the lock)."""
        excess = queue.frames - self._max_frames
        return queue.drop_oldest(excess) if excess > 0 else 0

    # -- housekeeping thread ---------------------------------------------------------------
    def flush_idle(self, now: float | None = None) -> bool:
        """Release the resampler's held-back tail once the producer went quiet.

        Flushes when no speech arrived for two blocks (at least 40 ms) and less than two
        blocks are queued, so the tail joins the queue before it runs dry and never splits a
        stream that is still arriving. Returns True if it flushed. Background likewise.

        Args:
            now: ``time.monotonic()`` (s); None reads it.

        """
        now = time.monotonic() if now is None else now
        idle_s = max(2 * self.block_s, 0.04)
        low = 2 * self.block_s * self._rate
        flushed = False
        with self._convert_lock:
            for stream, queue in ((self._speech_in, self._speech),
                                  (self._background_in, self._background)):
                if not stream.pending or now - stream.last_input < idle_s or queue.frames > low:
                    continue
                tail = stream.flush()
                with self._lock:
                    queue.push(tail)
                flushed = True
        return flushed

    # -- the sink's real-time thread -------------------------------------------------------
    def pull(self, frames: int) -> PlaybackBlock:
        """Exactly ``frames`` frames of the mix (silence where nothing is queued).

        Real-time safe in the Python sense: one short lock, copies, no I/O, no logging, never
        raises. Speech is skipped while paused (its queue is kept); background always plays.
        The block's ``fade_frames`` marks the leading frames that are an interrupt's fade-out.
        """
        now = time.monotonic()
        with self._lock:
            speech = self._speech
            taken = speech.take(0 if self._paused else frames)
            background = self._background.take(frames).samples
            mixer = self._mixer
            n = len(taken.samples)
            counts = self._counts
            counts.pulled_frames += frames
            if n:
                latency = self.output_latency_s
                if n > taken.fade_frames:
                    self._sound_until = now + latency + n / self._rate
                    counts.played_frames += n - taken.fade_frames
                for pos, mark in taken.marks:
                    counts.latencies_s.append(now + latency + pos / self._rate - mark)
                if not speech.frames and not self._speech_in.pending:
                    self._utterances.emptied(now, short=n < frames)
            elif not self._paused:
                self._utterances.found_nothing(now)
        block = mixer.mix(frames, taken.samples, background)
        return PlaybackBlock(block, max(n, len(background)), taken.fade_frames)

    # -- control (any thread) --------------------------------------------------------------
    def interrupt(self, now_ns: int) -> float:
        """Drop all queued speech now and fence off late chunks of the interrupted utterance.

        A few ms (:data:`FADE_S`) fade out instead of a click; is_speaking turns false at
        once. Also ends a pause.

        Args:
            now_ns: the interrupt's time, on the clock of :meth:`enqueue`'s ``now_ns``.

        Returns:
            Seconds of speech dropped.

        """
        with self._convert_lock:
            self._speech_in.reset()
            with self._lock:
                speech = self._speech
                fade = 0 if self._paused else min(speech.frames, round(FADE_S * self._rate))
                # Neither this fade nor what is left of an earlier one counts as dropped.
                dropped = max(0, speech.frames - max(fade, speech.fade_frames))
                speech.fade_out(fade)
                self._mark = None
                self._utterances.interrupted(fading=fade > 0)
                self._paused = False
                self._sound_until = 0.0
                self._fence.interrupt(now_ns)
                self._counts.interrupt_frames += dropped
                self._counts.interrupts += 1
                return dropped / self._rate

    def pause(self) -> bool:
        """Stop taking speech from the queue (kept); True if it was playing."""
        with self._lock:
            was, self._paused = self._paused, True
            return not was

    def resume(self) -> bool:
        """Continue where :meth:`pause` stopped; True if it was paused."""
        with self._lock:
            was, self._paused = self._paused, False
            return was

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (or an interrupt)."""
        return self._paused

    def speaking(self, now: float | None = None) -> bool:
        """True while speech is queued (and not paused) or still sounding in the device.

        False from the moment the last pulled speech frame has been heard (pull time + the
        output latency + its position), right after an interrupt, and while paused once what
        was already pulled has played out.

        Args:
            now: ``time.monotonic()`` (s); None reads it.

        """
        now = time.monotonic() if now is None else now
        with self._lock:
            speech = self._speech
            if not self._paused and (speech.frames > speech.fade_frames
                                     or self._speech_in.pending):
                return True
            return now < self._sound_until

    @property
    def state(self) -> PlaybackState:
        """Idle, playing or paused."""
        if self._paused:
            return PlaybackState.PAUSED
        return PlaybackState.PLAYING if self.speaking() else PlaybackState.IDLE

    def stats(self) -> PlaybackStats:
        """A consistent snapshot of state and counters (any thread).

        :meth:`PlaybackStats.diagnostics` turns it into diagnostics key/values.
        """
        state = self.state
        with self._lock:
            return self._counts.snapshot(
                state=state, output=self._output, queued_frames=self._speech.frames,
                background_frames=self._background.frames,
                output_latency_s=self.output_latency_s,
                clipped_samples=self._mixer.clipped_samples)
