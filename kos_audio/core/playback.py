"""The playback engine: a bounded, thread-safe speech queue that a sink's clock pulls from.

Background audio is mixed under the speech with ducking; interrupt, pause and an honest
"is it still sounding" account are part of it.

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

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from kos_audio.core.convert import Buffer, Frames, count_non_finite, remix, to_float
from kos_audio.core.formats import AudioFormat, SampleFormat
from kos_audio.core.interfaces import PlaybackBlock
from kos_audio.core.mixer import Mixer
from kos_audio.core.resample import StreamResampler
from kos_audio.core.stamping import NS_PER_S
from kos_audio.errors import AudioFormatError

#: Unstamped chunks arriving this soon (s) after an interrupt are taken for late chunks of the
#: interrupted utterance and dropped. Long enough for chunks already in flight (DDS delivers
#: within milliseconds; a producer that hears the same interrupt stops within a few hundred),
#: short enough that the next answer is not cut.
DEFAULT_FENCE_S = 0.5
#: On an interrupt this much (s) of what is queued fades out instead of stopping on a click.
FADE_S = 0.005
#: The speech queue ran dry and more speech arrived within this time (s): the producer was too
#: slow and the listener heard a gap; counted as a starvation.
STARVE_WINDOW_S = 0.25
#: Recent receive-to-sound latencies kept for percentiles.
LATENCY_HISTORY = 1000


class DropReason(enum.Enum):
    """Why audio was dropped instead of played."""

    OVERFLOW = "overflow"  # the queue exceeded max_queue_s; the oldest audio went
    INTERRUPT = "interrupt"  # queued when an interrupt came
    LATE = "late"  # a chunk of an interrupted utterance arriving after the interrupt
    INVALID = "invalid"  # undecodable: unknown or absurd format


class PlaybackState(enum.Enum):
    """What the speech side of the engine is doing."""

    IDLE = "idle"  # nothing queued, nothing sounding
    PLAYING = "playing"  # audio queued or still sounding in the device
    PAUSED = "paused"  # paused by request; the queue is kept


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What happened to one chunk handed to :meth:`PlaybackEngine.enqueue`.

    Attributes:
        frames: sink-rate frames added to the queue (0 while the resampler fills).
        dropped: set when the whole chunk was refused.
        repaired: the chunk was played after a repair (trailing partial frame cut, NaN/Inf
            replaced).
        overflow_frames: oldest queued frames dropped to make room (``max_queue_s``).
        message: one line for the log when dropped or repaired, else "".

    """

    frames: int = 0
    dropped: DropReason | None = None
    repaired: bool = False
    overflow_frames: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class PlaybackStats:
    """A consistent snapshot of the engine's state and counters (for diagnostics)."""

    state: PlaybackState
    output: AudioFormat
    queued_s: float
    background_queued_s: float
    output_latency_s: float
    pulled_frames: int
    played_s: float
    utterances: int
    starvations: int
    interrupts: int
    dropped_overflow_s: float
    dropped_interrupt_s: float
    background_dropped_s: float
    late_chunks: int
    invalid_chunks: int
    repaired_chunks: int
    non_finite_samples: int
    clipped_samples: int
    latencies_s: tuple[float, ...] = field(default=())

    def latency_percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of receive-to-sound latency (ms); NaN if none."""
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_s), q) * 1000.0)


class _FrameQueue:
    """Float frame chunks in order, taken from the head by frame count. Not thread-safe."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self._chunks: deque[tuple[Frames, float | None]] = deque()
        self._offset = 0  # frames of the head chunk already taken
        self.frames = 0

    def push(self, samples: Frames, mark: float | None = None) -> None:
        if len(samples):
            self._chunks.append((samples, mark))
            self.frames += len(samples)

    def take(self, frames: int) -> tuple[Frames, list[tuple[int, float]]]:
        """Up to ``frames`` frames from the head, and the marks of chunks starting in them.

        Marks come as ``(position in the result, mark)``.
        """
        n = min(frames, self.frames)
        out = np.empty((n, self.channels), np.float32)
        marks: list[tuple[int, float]] = []
        pos = 0
        while pos < n:
            chunk, mark = self._chunks[0]
            if self._offset == 0 and mark is not None:
                marks.append((pos, mark))
            k = min(n - pos, len(chunk) - self._offset)
            out[pos : pos + k] = chunk[self._offset : self._offset + k]
            pos += k
            self._offset += k
            if self._offset == len(chunk):
                self._chunks.popleft()
                self._offset = 0
        self.frames -= n
        return out, marks

    def drop_oldest(self, frames: int) -> int:
        """Drop up to ``frames`` frames from the head; how many went."""
        dropped = 0
        while dropped < frames and self._chunks:
            chunk, _ = self._chunks[0]
            k = min(frames - dropped, len(chunk) - self._offset)
            dropped += k
            self._offset += k
            if self._offset == len(chunk):
                self._chunks.popleft()
                self._offset = 0
        self.frames -= dropped
        return dropped

    def clear(self) -> int:
        """Drop everything; how many frames went."""
        dropped = self.frames
        self._chunks.clear()
        self._offset = 0
        self.frames = 0
        return dropped


class _InputStream:
    """Decodes, repairs and converts one producer's stream to the output's rate and channels.

    The resampler keeps its state across chunks (no clicks at chunk boundaries) and holds back
    a few tens of ms; :meth:`flush` releases that tail at the end of a stream. A format change
    flushes the old stream first, so no sample is lost. Not thread-safe.
    """

    def __init__(self, output: AudioFormat) -> None:
        self.output = output
        self.format: AudioFormat | None = None
        self._resampler: StreamResampler | None = None
        self._remix_first = False
        self.pending = False  # the resampler holds frames not yet returned
        self.last_input = 0.0  # time.monotonic() of the last chunk

    def convert(self, data: Buffer, fmt: AudioFormat) -> tuple[Frames, str, int]:
        """The chunk as output-rate float frames, the repair made ("" if none), NaN/Inf count.

        Raises:
            AudioFormatError: the chunk cannot be decoded at all.

        """
        raw = np.frombuffer(data, np.uint8)
        repairs = []
        rest = raw.size % fmt.frame_bytes
        if rest:
            repairs.append(
                f"{raw.size} bytes is not a whole number of {fmt.frame_bytes}-byte frames "
                f"({fmt.describe()}); dropped the trailing {rest} bytes")
            raw = raw[: raw.size - rest]
        frames = to_float(raw, fmt)
        bad = count_non_finite(frames) if fmt.sample_format is SampleFormat.F32LE else 0
        if bad:
            repairs.append(f"{bad} NaN/Inf samples replaced (NaN -> 0, Inf -> full scale)")
            np.nan_to_num(frames, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        head = self._switch(fmt) if fmt != self.format else None
        out = self._process(frames)
        if head is not None and len(head):
            out = np.concatenate((head, out))
        self.last_input = time.monotonic()
        return out, "; ".join(repairs), bad

    def _switch(self, fmt: AudioFormat) -> Frames | None:
        tail = self.flush() if self.format is not None else None
        self.format = fmt
        self._remix_first = fmt.channels > self.output.channels
        channels = min(fmt.channels, self.output.channels)
        self._resampler = StreamResampler(fmt.sample_rate_hz, self.output.sample_rate_hz,
                                          channels)
        return tail

    def _process(self, frames: Frames) -> Frames:
        assert self._resampler is not None
        # Resample the smaller channel count: mono speech to a stereo device costs one
        # resampler channel, not two.
        if self._remix_first:
            frames = remix(frames, self.output.channels)
        if not self._resampler.passthrough and len(frames):
            frames = self._resampler.process(frames)
            self.pending = True
        return remix(frames, self.output.channels)

    def flush(self) -> Frames:
        """End of stream: the resampler's held-back tail (output frames)."""
        self.pending = False
        if self._resampler is None:
            return np.zeros((0, self.output.channels), np.float32)
        return remix(self._resampler.flush(), self.output.channels)

    def reset(self) -> None:
        """Forget the stream (interrupt): what the resampler holds is discarded."""
        self.pending = False
        if self._resampler is not None:
            self._resampler.reset()


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
        self.fence_s = fence_s
        self.block_s = block_s
        #: Seconds from a pull until its first sample is heard; the sink loop keeps it current.
        self.output_latency_s = 0.0
        self._lock = threading.Lock()  # queues, counters, state: short sections only
        self._convert_lock = threading.Lock()  # the input streams; taken before _lock
        self._paused = False
        self._sound_until = 0.0  # monotonic time the last pulled speech frame is heard
        self._fade_frames = 0  # leading queued frames that are an interrupt's fade-out
        self._no_starve = False  # the next time the queue runs dry is an interrupt's end
        self._dry_at: float | None = None
        self._drained = False  # the last pull emptied the queue exactly
        self._mark: float | None = None  # receive time of an utterance's first chunk
        self._interrupted_ns: int | None = None
        self._fence_until_ns = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self._counts = dict.fromkeys(
            ("pulled", "played", "utterances", "starvations", "interrupts", "overflow",
             "interrupt", "bg_overflow", "late", "invalid", "repaired", "non_finite"), 0)
        self._mixer = Mixer(output.sample_rate_hz, output.channels, volume=volume,
                            gain=background_gain, duck_gain=duck_gain)
        self._setup(output)

    def _setup(self, output: AudioFormat) -> None:
        self._output = output
        self._rate = output.sample_rate_hz
        self._max_frames = max(1, round(self.max_queue_s * self._rate))
        self._speech = _FrameQueue(output.channels)
        self._background = _FrameQueue(output.channels)
        self._speech_in = _InputStream(output)
        self._background_in = _InputStream(output)
        self._fade_frames = 0

    # -- configuration (any thread) --------------------------------------------------------
    @property
    def output(self) -> AudioFormat:
        """The format :meth:`pull` delivers (rate and channels)."""
        return self._output

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
            self._counts["overflow"] += dropped
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
            interrupted = self._interrupted_ns
            fence_until = self._fence_until_ns
        if interrupted is not None and (
                (stamp_ns is not None and stamp_ns < interrupted)
                or (stamp_ns is None and now_ns < fence_until)):
            with self._lock:
                self._counts["late"] += 1
            why = ("stamped before the last interrupt" if stamp_ns is not None
                   else f"arrived within {self.fence_s:g} s of the last interrupt")
            return EnqueueResult(dropped=DropReason.LATE,
                                 message=f"late chunk of an interrupted utterance dropped: {why}")
        now = time.monotonic()
        with self._convert_lock:
            was_idle = not self._speech_in.pending
            try:
                frames, repair, bad = self._speech_in.convert(data, fmt)
            except AudioFormatError as err:
                with self._lock:
                    self._counts["invalid"] += 1
                return EnqueueResult(dropped=DropReason.INVALID, message=f"chunk dropped: {err}")
            with self._lock:
                if was_idle and self._speech.frames <= self._fade_frames:
                    # An utterance starts: its first sample's latency is measured. The
                    # resampler may return nothing yet; the mark waits for the first frames.
                    self._mark = receive_mono
                if len(frames):
                    self._speech.push(frames, self._mark)
                    self._mark = None
                overflow = self._trim(self._speech, "overflow")
                if repair:
                    self._counts["repaired"] += 1
                    self._counts["non_finite"] += bad
                if len(frames):
                    self._drained = False
                if len(frames) and self._dry_at is not None:
                    if now - self._dry_at < STARVE_WINDOW_S:
                        self._counts["starvations"] += 1
                    self._dry_at = None
        return EnqueueResult(frames=len(frames), repaired=bool(repair), overflow_frames=overflow,
                             message=f"chunk repaired: {repair}" if repair else "")

    def enqueue_background(self, data: Buffer, fmt: AudioFormat) -> EnqueueResult:
        """Queue one background chunk (never paused, interrupted nor fenced)."""
        with self._convert_lock:
            try:
                frames, repair, bad = self._background_in.convert(data, fmt)
            except AudioFormatError as err:
                with self._lock:
                    self._counts["invalid"] += 1
                return EnqueueResult(dropped=DropReason.INVALID,
                                     message=f"background chunk dropped: {err}")
            with self._lock:
                self._background.push(frames)
                overflow = self._trim(self._background, "bg_overflow")
                if repair:
                    self._counts["repaired"] += 1
                    self._counts["non_finite"] += bad
        return EnqueueResult(frames=len(frames), repaired=bool(repair), overflow_frames=overflow,
                             message=f"background chunk repaired: {repair}" if repair else "")

    def note_invalid(self) -> None:
        """Count a chunk the caller refused itself (e.g. its announced format is invalid)."""
        with self._lock:
            self._counts["invalid"] += 1

    def _trim(self, queue: _FrameQueue, counter: str) -> int:
        excess = queue.frames - self._max_frames
        if excess <= 0:
            return 0
        dropped = queue.drop_oldest(excess)
        if queue is self._speech:
            self._fade_frames = max(0, self._fade_frames - dropped)
        self._counts[counter] += dropped
        return dropped

    # -- housekeeping thread ---------------------------------------------------------------
    def flush_idle(self, now: float | None = None) -> bool:
        """Release the resampler's held-back tail once the producer went quiet.

        Flushes when no speech arrived for two blocks (at least 40 ms) and less than two
        blocks are queued, so the tail joins the queue before it runs dry and never splits a
        stream that is still arriving. Returns True if it flushed. Background likewise.
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

    def _went_dry(self, now: float) -> None:
        """The speech queue ran out at ``now`` (the caller holds the lock)."""
        if self._no_starve:
            self._no_starve = False
        else:
            self._dry_at = now
            self._counts["utterances"] += 1

    # -- the sink's real-time thread -------------------------------------------------------
    def pull(self, frames: int) -> PlaybackBlock:
        """Exactly ``frames`` frames of the mix (silence where nothing is queued).

        Real-time safe in the Python sense: one short lock, copies, no I/O, no logging, never
        raises. Speech is skipped while paused (its queue is kept); background always plays.
        """
        now = time.monotonic()
        with self._lock:
            speech: Frames  # not the 2-D shape type numpy 2.2 gives np.zeros((0, c))
            if self._paused:
                speech = np.zeros((0, self._output.channels), np.float32)
                marks: list[tuple[int, float]] = []
            else:
                speech, marks = self._speech.take(frames)
            background, _ = self._background.take(frames)
            mixer = self._mixer
            n = len(speech)
            latency = self.output_latency_s
            self._counts["pulled"] += frames
            fade = 0
            if n:
                fade = min(n, self._fade_frames)
                self._fade_frames -= fade
                if n > fade:
                    self._sound_until = now + latency + n / self._rate
                    self._counts["played"] += n - fade
                for pos, mark in marks:
                    self._latencies.append(now + latency + pos / self._rate - mark)
                if self._speech.frames == 0 and not self._speech_in.pending:
                    if n < frames:
                        self._went_dry(now)
                    else:
                        # Drained exactly: it is dry only if the next pull finds nothing (a
                        # producer streaming in real time refills it in between, no gap).
                        self._drained = True
            elif self._drained and not self._paused:
                self._drained = False
                self._went_dry(now)
        block = mixer.mix(frames, speech, background)
        return PlaybackBlock(block, max(n, len(background)), fade)

    # -- control (any thread) --------------------------------------------------------------
    def interrupt(self, now_ns: int) -> float:
        """Drop all queued speech now and fence off late chunks of the interrupted utterance.

        A few ms fade out instead of a click; is_speaking turns false at once. Also ends a
        pause.

        Args:
            now_ns: the interrupt's time, on the clock of :meth:`enqueue`'s ``now_ns``.

        Returns:
            Seconds of speech dropped.

        """
        with self._convert_lock:
            self._speech_in.reset()
            with self._lock:
                fade = 0 if self._paused else min(self._speech.frames,
                                                  round(FADE_S * self._rate))
                # Neither this fade nor what is left of an earlier one counts as dropped.
                dropped = max(0, self._speech.frames - max(fade, self._fade_frames))
                head, _ = self._speech.take(fade)
                self._speech.clear()
                if fade:
                    ramp = np.linspace(1.0, 0.0, fade + 2, dtype=np.float32)[1:-1]
                    self._speech.push(head * ramp[:, None])
                self._fade_frames = fade
                self._mark = None
                self._no_starve = fade > 0
                self._dry_at = None
                self._drained = False
                self._paused = False
                self._sound_until = 0.0
                self._interrupted_ns = now_ns
                self._fence_until_ns = now_ns + round(self.fence_s * NS_PER_S)
                self._counts["interrupt"] += dropped
                self._counts["interrupts"] += 1
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
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._paused and (self._speech.frames > self._fade_frames
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
        """A snapshot of state and counters."""
        state = self.state
        with self._lock:
            c = dict(self._counts)
            rate = self._rate
            return PlaybackStats(
                state=state, output=self._output,
                queued_s=self._speech.frames / rate,
                background_queued_s=self._background.frames / rate,
                output_latency_s=self.output_latency_s,
                pulled_frames=c["pulled"], played_s=c["played"] / rate,
                utterances=c["utterances"], starvations=c["starvations"],
                interrupts=c["interrupts"],
                dropped_overflow_s=c["overflow"] / rate,
                dropped_interrupt_s=c["interrupt"] / rate,
                background_dropped_s=c["bg_overflow"] / rate,
                late_chunks=c["late"], invalid_chunks=c["invalid"],
                repaired_chunks=c["repaired"], non_finite_samples=c["non_finite"],
                clipped_samples=self._mixer.clipped_samples,
                latencies_s=tuple(self._latencies),
            )
