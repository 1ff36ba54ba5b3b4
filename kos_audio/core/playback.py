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
      frames, mixes and clips (short locks, no allocation beyond the block, no I/O), and sets
      :attr:`PlaybackEngine.wake` when it took the last queued speech;
    - a housekeeping thread (:class:`kos_audio.core.sink_loop.PlaybackLoop`) calls
      :meth:`PlaybackEngine.flush_idle` and :meth:`PlaybackEngine.idle_for` and sets
      :attr:`PlaybackEngine.output_latency_s`;
    - control (interrupt, pause, volume) may come from any thread.
"""

from __future__ import annotations

import threading
import time

from kos_audio.core.convert import Buffer, Frames
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
#: Speech arriving at an empty queue starts to play once this many of the sink's blocks are
#: queued: the one the next pull takes and one in reserve, so a producer streaming in real time
#: may deliver its next chunk up to a block late (pull timing jitter, DDS, executor) without
#: a dropout. A TTS publishing a sentence at once fills it at once (no added latency).
START_BLOCKS = 2
#: ... or after this many pulls found it short (an utterance shorter than that, or a producer
#: slower than real time, still plays).
START_WAIT_PULLS = 2


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
        #: Set (by the sink's thread) when a pull took the last queued speech: the
        #: housekeeping thread waiting on it then times is_speaking's falling edge
        #: (:meth:`idle_for`). The sink loop installs its event here.
        self.wake: threading.Event | None = None
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
        self._held: int | None = None  # pulls that held back a starting utterance
        self._utterance_frames = 0  # speech frames pulled since the utterance started
        self._dry = True  # the last pull found less speech than it wanted (or none yet)
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
                    self._utterance_frames = 0
                if len(chunk.frames):
                    if self._dry and speech.frames <= speech.fade_frames:
                        # It ran dry (a start, or the producer fell behind): build a reserve.
                        # Not when a pull merely took the last frames: nothing was missed.
                        self._held = 0
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
                    self._push_tail(queue, tail)
                flushed = True
        return flushed

    def _push_tail(self, queue: FrameQueue, tail: Frames) -> None:
        """Queue a resampler's tail (the caller holds both locks)."""
        if queue is self._speech:
            queue.push(tail, self._mark)
            if len(tail):
                self._mark = None
        else:
            queue.push(tail)

    # -- the sink's real-time thread -------------------------------------------------------
    def pull(self, frames: int) -> PlaybackBlock:
        """Exactly ``frames`` frames of the mix (silence where nothing is queued).

        Real-time safe in the Python sense: short locks, copies, no I/O, no logging, never
        waits for the conversion lock, never raises. Speech is skipped while paused (its
        queue is kept); background always plays. A starting utterance is held back until a
        reserve is queued (:data:`START_BLOCKS`); a pull about to run short releases the
        resampler's tail. The block's ``fade_frames`` marks the leading frames that are an
        interrupt's fade-out.
        """
        now = time.monotonic()
        with self._lock:
            speech = self._speech
            want = 0 if self._paused else self._playable(speech, frames)
            short = speech.frames < want and self._speech_in.pending
        if short:
            self._flush_short()
        with self._lock:
            taken = speech.take(want)
            background = self._background.take(frames).samples
            mixer = self._mixer
            n = len(taken.samples)
            counts = self._counts
            counts.pulled_frames += frames
            ran_out = False
            if n:
                latency = self.output_latency_s
                if n > taken.fade_frames:
                    self._sound_until = now + latency + n / self._rate
                    counts.played_frames += n - taken.fade_frames
                    self._utterance_frames += n - taken.fade_frames
                for pos, mark in taken.marks:
                    counts.latencies_s.append(now + latency + pos / self._rate - mark)
                ran_out = not speech.frames and not self._speech_in.pending
                if ran_out:
                    self._utterances.emptied(now, short=n < frames)
            elif want:
                self._utterances.found_nothing(now)
            if want and self._held is None:
                self._dry = n < want
        wake = self.wake
        if n > taken.fade_frames and ran_out and wake is not None:
            wake.set()
        block = mixer.mix(frames, taken.samples, background)
        return PlaybackBlock(block, max(n, len(background)), taken.fade_frames)

    def _playable(self, speech: FrameQueue, frames: int) -> int:
        """How many speech frames this pull may take (the caller holds the lock, not paused).

        A starting utterance is held back (only a fade-out before it plays) until
        :data:`START_BLOCKS` blocks are queued or :data:`START_WAIT_PULLS` pulls held it.
        """
        held = self._held
        if held is None:
            return frames
        if speech.frames - speech.fade_frames >= START_BLOCKS * frames \
                or held >= START_WAIT_PULLS:
            self._held = None
            return frames
        self._held = held + 1
        return speech.fade_frames

    def _flush_short(self) -> None:
        """The pull is about to run short while the resampler holds a tail: release it.

        Better the tail now than zeros (the producer is done, or late). Sink thread: never
        waits for the conversion lock; if a producer holds it, more audio is on its way.
        """
        if not self._convert_lock.acquire(blocking=False):
            return
        try:
            if self._speech_in.pending:
                tail = self._speech_in.flush()
                with self._lock:
                    self._push_tail(self._speech, tail)
        finally:
            self._convert_lock.release()

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
                self._held = None
                self._dry = True
                self._utterances.interrupted(fading=fade > 0)
                self._paused = False
                self._sound_until = 0.0
                self._fence.interrupt(now_ns)
                self._counts.interrupt_frames += dropped
                self._counts.interrupts += 1
                return dropped / self._rate

    @property
    def utterance_played_s(self) -> float:
        """Seconds of the current (or last) utterance pulled so far.

        What an interrupt now would leave played (the output latency's worth of it may still
        be in the device).
        """
        with self._lock:
            return self._utterance_frames / self._rate

    def pause(self) -> bool:
        """Stop taking speech from the queue (kept); True if it was playing."""
        with self._lock:
            was, self._paused = self._paused, True
        wake = self.wake
        if wake is not None:
            wake.set()  # is_speaking turns false once what was pulled has been heard
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

    def idle_for(self, longest_s: float, now: float | None = None) -> float:
        """How long (s, at most ``longest_s``) the housekeeping thread may sleep.

        Until the last pulled speech has been heard when none is left to play (so
        is_speaking's falling edge is published on time); else ``longest_s`` (a pull that
        takes the last speech sets :attr:`wake`).

        Args:
            longest_s: the longest sleep wanted (s).
            now: ``time.monotonic()`` (s); None reads it.

        """
        now = time.monotonic() if now is None else now
        with self._lock:
            speech = self._speech
            playable = not self._paused and (speech.frames > speech.fade_frames
                                             or self._speech_in.pending)
            if not playable and now < self._sound_until:
                # A millisecond late rather than early: then speaking() is surely false.
                return min(longest_s, self._sound_until - now + 0.001)
            return longest_s

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
