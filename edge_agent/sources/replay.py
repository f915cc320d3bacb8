"""``replay`` source: plays a recording (WAV, NPY, CSV or the CWRU npz) as a live sensor stream.

At ``speed`` 1.0 chunks leave at real-time pace, ``speed`` 0 plays as fast as the pipeline
takes them. Consecutive npz records are separate recordings: between them the sequence number
jumps, so the windowing resets rather than stitching two recordings into one window.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edge_agent.config import SourceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.types import Chunk

logger = logging.getLogger(__name__)


def read_recording(section: SourceSection) -> tuple[list[np.ndarray], float]:
    """The recordings to play, each ``(channels, n)`` float32, and their sample rate in Hz."""
    path = Path(section.path)
    if not path.is_file():
        raise FileNotFoundError(f"sources.{section.name}.path: {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path, section)
    if suffix == ".wav":
        signal, rate_hz = _read_wav(path)
    elif suffix == ".npy":
        signal, rate_hz = np.load(path, allow_pickle=False).astype(np.float32), section.sample_rate_hz
    elif suffix == ".csv":
        with path.open() as handle:
            rows = [[float(v) for v in row] for row in csv.reader(handle) if row]
        signal, rate_hz = np.asarray(rows, dtype=np.float32), section.sample_rate_hz
    else:
        raise ValueError(f"sources.{section.name}.path: {path.suffix!r} is not a WAV, NPY, CSV or npz file")
    if signal.ndim == 1:
        signal = signal[None, :]
    elif suffix != ".wav":
        signal = signal.T  # NPY and CSV hold one column per channel
    if rate_hz <= 0:
        raise ValueError(f"sources.{section.name}.sample_rate_hz must be > 0 for {path.suffix} files")
    return [_trim(np.ascontiguousarray(signal, dtype=np.float32), section.start_fraction)], float(rate_hz)


def _read_npz(path: Path, section: SourceSection) -> tuple[list[np.ndarray], float]:
    with np.load(path, allow_pickle=False) as pack:
        keys = section.records or tuple(str(k) for k in pack["keys"])
        missing = [k for k in keys if k not in pack.files]
        if missing:
            raise ValueError(f"sources.{section.name}.records: {missing} not in {path.name}")
        rate_hz = float(pack["fs_hz"]) if "fs_hz" in pack.files else section.sample_rate_hz
        signals = [_trim(np.asarray(pack[k], dtype=np.float32).reshape(1, -1), section.start_fraction) for k in keys]
    return signals, rate_hz


def _read_wav(path: Path) -> tuple[np.ndarray, float]:
    with wave.open(str(path), "rb") as handle:
        width, channels, rate_hz = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
        frames = handle.readframes(handle.getnframes())
    if width != 2:
        raise ValueError(f"{path}: only 16-bit PCM WAV is supported, got {8 * width}-bit")
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels).T.astype(np.float32) / 32768.0
    return samples, float(rate_hz)


def _trim(signal: np.ndarray, start_fraction: float) -> np.ndarray:
    return signal[:, round(signal.shape[1] * start_fraction) :]


class ReplaySource:
    """Plays recordings in a named thread; ``on_finished`` is called when a non-looping play ends."""

    def __init__(
        self, section: SourceSection, *, metrics: AgentMetrics, on_finished: Callable[[], None] | None = None
    ) -> None:
        self.section = section
        self.name = section.name
        self.metrics = metrics
        self.on_finished = on_finished
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = threading.Event()

    def start(self, emit: Callable[[Chunk], None]) -> None:
        signals, rate_hz = read_recording(self.section)
        self._thread = threading.Thread(
            target=self._play, args=(signals, rate_hz, emit), name=f"source-{self.name}", daemon=True
        )
        self.metrics.source_up.labels(self.name).set(1)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self.metrics.source_up.labels(self.name).set(0)

    def alive(self) -> bool:
        return self._thread is not None and (self._thread.is_alive() or self.finished.is_set())

    def _chunks(self, signals: list[np.ndarray], rate_hz: float) -> Iterator[tuple[int, float, np.ndarray]]:
        """``(seq, offset_s, samples)``; seq skips one between recordings to mark the gap."""
        seq, offset_s, size = 0, 0.0, self.section.chunk_samples
        while True:
            for signal in signals:
                for start in range(0, signal.shape[1] - size + 1, size):
                    yield seq, offset_s, signal[:, start : start + size]
                    seq += 1
                    offset_s += size / rate_hz
                seq += 1
            if not self.section.loop:
                return

    def _play(self, signals: list[np.ndarray], rate_hz: float, emit: Callable[[Chunk], None]) -> None:
        started_wall, started_mono = time.time(), time.monotonic()
        speed = self.section.speed
        for seq, offset_s, samples in self._chunks(signals, rate_hz):
            if speed > 0:
                # a chunk is due once its last sample would have been recorded
                due = started_mono + (offset_s + samples.shape[1] / rate_hz) / speed
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
            elif self._stop.is_set():
                return
            self.metrics.messages_received.labels(self.name).inc()
            self.metrics.last_sample.labels(self.section.sensor).set(time.time())
            emit(Chunk(self.section.sensor, started_wall + offset_s, rate_hz, samples, seq, time.monotonic()))
        self.finished.set()
        logger.info("replay source %s finished", self.name)
        if self.on_finished is not None:
            self.on_finished()
