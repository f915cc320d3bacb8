"""``soundcard`` source: live audio from a sound card (a microphone, an accelerometer on a USB audio interface).

A ``sounddevice`` ``InputStream`` in callback mode. PortAudio's callback only copies the block
and hands it to a bounded queue (never blocking: a full queue drops the block and counts it);
the source's named thread turns blocks into :class:`Chunk` s, measures the level and emits.

- ``seq`` counts blocks. It skips one for a block that follows an input overflow, for a dropped
  block and for every (re)opened stream, so the windowing sees each loss as a gap, never
  stitching across it.
- ``t0`` is the epoch time of the block's first frame (:mod:`edge_agent.sources.audio_clock`).
- Samples are float32 ``(channels, n)`` relative to full scale (int formats divided by their
  full scale), times ``scale`` (sensor units at full scale, e.g. g for an IEPE accelerometer).
- The device (name, unique part of a name, or index) is resolved at every (re)open, after a
  re-initialisation of PortAudio, so a device that appears after the agent started is found.
  Missing at start, lost later (the stream ends) or stalled (no block for a while): the source
  closes the stream, sets ``edge_agent_source_up`` to 0 and retries with capped backoff
  (1 s to 30 s). One log line per state change (down, capturing), never a crash loop.
- Health: ``edge_agent_audio_level_dbfs`` about every second (NaN while there is no audio);
  :meth:`SoundcardSource.health` reports the ``silent`` condition (see
  :mod:`edge_agent.sources.audio_health`) for the app to raise.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from edge_agent.common.errors import first_line
from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.metrics import AgentMetrics
from edge_agent.service.backoff import RETRY_MAX_S, RETRY_MIN_S
from edge_agent.sources.audio_clock import BlockClock, adc_epoch
from edge_agent.sources.audio_health import LevelMeter, SilenceDetector, dbfs, power
from edge_agent.sources.devices import (
    PORTAUDIO,
    expected_error,
    import_sounddevice,
    list_input_devices,
    reinitialise,
    resolve_input_device,
)
from edge_agent.sources.soundcard_config import FULL_SCALE, SoundcardSection
from edge_agent.types import Chunk

logger = logging.getLogger(__name__)

SILENT = "silent"  # the health alert's label
QUEUE_S = 5.0  # audio the hand-off queue holds before it drops blocks
STALL_MIN_S = 5.0  # no block for this long (or 4 blocks plus the latency, if longer): the stream stalled
POLL_S = 0.1

_Block = tuple[int, float | None, np.ndarray, bool]  # seq, t0 (None: unknown), frames (n, channels), overflow


class SoundcardSource:
    """Captures ``section.device`` in a named thread; ``start`` returns at once, device present or not."""

    def __init__(
        self,
        section: SoundcardSection,
        *,
        metrics: AgentMetrics,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
        load_library: Callable[[], ModuleType] = import_sounddevice,
    ) -> None:
        self.name = section.name
        self.section = section
        self._retry_min_s, self._retry_max_s = retry_min_s, retry_max_s
        self._load_library = load_library
        self._stop = threading.Event()
        self._lost = threading.Event()  # set by PortAudio when the stream ends by itself (device gone)
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[_Block] = queue.Queue(maxsize=1)  # replaced for every stream
        self._seq = 0  # next block's seq: written by the callback, and by the source thread between streams
        self._rate_hz = 0.0
        self._clock = BlockClock()
        self._down_logged = False
        self._health_lock = threading.Lock()
        self._silence = SilenceDetector(section.silence_floor_dbfs, section.silence_after_s, now=time.monotonic())
        self._meter = LevelMeter()
        self._warn = RateLimitedLog(logger)
        self.internal_errors = 0  # exceptions caught in the callback or around emit (see the log)
        self.close_errors = 0  # closing a dead stream failed (ignored: the stream is discarded anyway)
        metrics.audio.init_source(self.name)  # the common source and sensor series: the router
        self._up = metrics.source_up.labels(self.name)
        self._received = metrics.messages_received.labels(self.name)
        self._last_sample = metrics.last_sample.labels(section.sensor)
        self._retries = metrics.audio.retries.labels(self.name)
        self._overflows = metrics.audio.overflows.labels(self.name)
        self._dropped = metrics.audio.blocks_dropped.labels(self.name)
        self._level = metrics.audio.level.labels(self.name, section.sensor)
        self._level.set(math.nan)  # no measurement yet (0 would read as full scale)

    # ------------------------------------------------------------------ contract

    def start(self, emit: Callable[[Chunk], None]) -> None:
        """Start capturing in the background; ``emit`` runs in the source's thread."""
        if self._thread is not None:
            raise RuntimeError(f"source {self.name} already started")
        with self._health_lock:  # the silence clock starts now: a device that never opens is reported too
            self._silence = SilenceDetector(
                self.section.silence_floor_dbfs, self.section.silence_after_s, now=time.monotonic()
            )
        self._thread = threading.Thread(target=self._run, args=(emit,), name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the stream and join the thread; safe to call twice or before start."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._up.set(0)

    def alive(self) -> bool:
        """False if the source's thread died (the app's watchdog); a missing device does not count."""
        return self._thread is not None and (self._thread.is_alive() or self._stop.is_set())

    def health(self) -> list[tuple[str, str, bool]]:
        """``(sensor, label, active)`` for each health condition this source watches (``silent``)."""
        if self._thread is None or not self._silence.enabled:
            return []
        with self._health_lock:
            silent = self._silence.silent(time.monotonic())
        return [(self.section.sensor, SILENT, silent)]

    # ------------------------------------------------------------------ supervisor (source thread)

    def _run(self, emit: Callable[[Chunk], None]) -> None:
        delay_s = self._retry_min_s
        while not self._stop.is_set():
            try:
                stream = self._open()
            except Exception as error:  # anything that keeps the device from opening is retried
                self._down(f"cannot open the sound card: {first_line(error)}", delay_s, error)
                if self._stop.wait(delay_s):
                    break
                delay_s = min(2 * delay_s, self._retry_max_s)
                continue
            delay_s = self._retry_min_s
            self._up.set(1)
            self._down_logged = False
            try:
                reason = self._pump(stream, emit)
            finally:
                self._close(stream)
                self._up.set(0)
            if reason is None:
                break
            self._down(reason, delay_s)
            if self._stop.wait(delay_s):
                break
        self._up.set(0)

    def _down(self, reason: str, delay_s: float, error: BaseException | None = None) -> None:
        """Count a failed open or a lost device; log it only when the source goes down (not on every retry)."""
        self._retries.inc()
        self._meter.reset()
        self._level.set(math.nan)  # no audio, no level (a stale one would look alive)
        if self._down_logged:
            logger.debug("source %s: still down, retrying in %g s: %s", self.name, delay_s, reason)
            return
        self._down_logged = True
        unexpected = error is not None and not expected_error(error)
        logger.error(
            "source %s: %s; retrying with backoff (%g s to %g s)",
            self.name,
            reason,
            self._retry_min_s,
            self._retry_max_s,
            exc_info=unexpected,
        )

    def _open(self) -> Any:
        """Re-initialise PortAudio, resolve the device, open and start the stream (raises on failure)."""
        sd = self._load_library()
        s = self.section
        with PORTAUDIO.lock:
            reinitialise(sd)
            device = resolve_input_device(list_input_devices(sd), s.device, s.channels)
            rate_hz = float(s.sample_rate_hz or device.default_rate_hz)
            self._lost.clear()
            self._queue = queue.Queue(maxsize=max(4, math.ceil(QUEUE_S * rate_hz / s.chunk_samples)))
            self._seq += 1  # a new stream never continues the previous one
            self._rate_hz = rate_hz
            stream = sd.InputStream(
                device=device.index,
                samplerate=rate_hz,
                channels=s.channels,
                dtype=s.dtype,
                blocksize=s.chunk_samples,
                latency=s.latency_s or "high",
                callback=self._callback,
                finished_callback=self._lost.set,
            )
            PORTAUDIO.open_streams += 1
        try:
            stream.start()
        except Exception:
            self._close(stream)
            raise
        shape = f"{rate_hz:.0f} Hz, {s.channels} channel(s), {s.dtype}, {s.chunk_samples}-frame blocks"
        logger.info("source %s: capturing from %s at %s", self.name, device.describe(), shape)
        return stream

    def _close(self, stream: Any) -> None:
        try:
            stream.abort()
            stream.close()
        except Exception:  # a lost device may fail to close; the stream is discarded either way
            self.close_errors += 1
            logger.debug("source %s: closing the stream failed", self.name, exc_info=True)
        finally:
            with PORTAUDIO.lock:
                PORTAUDIO.open_streams -= 1

    def _pump(self, stream: Any, emit: Callable[[Chunk], None]) -> str | None:
        """Emit blocks until a stop (None) or the stream ends or stalls (the reason)."""
        block_s = self.section.chunk_samples / self._rate_hz
        stall_s = max(STALL_MIN_S, 4 * block_s + float(stream.latency))
        last_block = time.monotonic()
        while not self._stop.is_set():
            if self._lost.is_set() or not stream.active:
                self._drain(emit)
                return "the input stream ended (device unplugged or its server gone?)"
            try:
                block = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if time.monotonic() - last_block > stall_s:
                    return f"no audio block for {stall_s:.0f} s (the stream stalled)"
                continue
            last_block = time.monotonic()
            self._handle(block, emit)
        return None

    def _drain(self, emit: Callable[[Chunk], None]) -> None:
        while True:
            try:
                block = self._queue.get_nowait()
            except queue.Empty:
                return
            self._handle(block, emit)

    def _handle(self, block: _Block, emit: Callable[[Chunk], None]) -> None:
        seq, t0, frames, overflow = block
        if overflow:
            self._overflows.inc()
            self._warn.warning("overflow", "source %s: input overflow, samples were lost", self.name)
        n, rate_hz = frames.shape[0], self._rate_hz
        samples = np.ascontiguousarray(frames.T, dtype=np.float32)
        full_scale = FULL_SCALE[self.section.dtype]
        if full_scale != 1.0:
            samples *= np.float32(1.0 / full_scale)
        mean_square = power(samples)
        now = time.monotonic()
        with self._health_lock:
            self._silence.block(dbfs(mean_square), now)
        level = self._meter.add(mean_square, n / rate_hz)
        if level is not None:
            self._level.set(level)
        if self.section.scale != 1.0:
            samples *= np.float32(self.section.scale)
        self._received.inc()
        self._last_sample.set(time.time())
        chunk = Chunk(self.section.sensor, self._clock.t0(seq, t0, n, rate_hz), rate_hz, samples, seq, now)
        try:
            emit(chunk)
        except Exception:  # a failure downstream costs this block, not the source
            self.internal_errors += 1
            self._warn.warning("emit", "source %s: handling a block failed", self.name, exc_info=True)

    # ------------------------------------------------------------------ PortAudio's callback thread

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """Copy the block and queue it; never blocks, never raises (an exception would end the stream)."""
        try:
            now = time.time()
            overflow = bool(status.input_overflow)
            if overflow:
                self._seq += 1  # samples were lost before this block: make the gap visible
            seq = self._seq
            self._seq += 1
            try:
                self._queue.put_nowait((seq, adc_epoch(time_info, now), indata.copy(), overflow))
            except queue.Full:
                self._dropped.inc()  # the seq jump marks the gap downstream
        except Exception:
            self.internal_errors += 1
