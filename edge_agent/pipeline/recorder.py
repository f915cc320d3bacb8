"""Records one sensor's live windows (raw samples, sensor units) to the state folder for learning.

The windows of a sensor overlap by ``window - hop`` samples; the recorder keeps the stream itself:
the whole first window, then the ``hop`` new samples of each following window (one whose start is
within half a hop of the expected time; a window after a gap is kept whole and counted as a gap). Samples are appended
as float32, interleaved ``(samples, channels)``, to ``recording.f32``; at ``max_bytes`` the
recorder stops taking windows and counts them as ``refused``. :meth:`WindowRecorder.finish` writes
``recording.npy`` (``(channels, samples)``, what ``edge-agent learn`` reads).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.types import Window

logger = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 4  # float32


@dataclass
class RecorderCounts:
    windows: int = 0  # windows whose samples were kept
    samples: int = 0  # samples per channel written
    bytes: int = 0
    refused: int = 0  # windows that came after max_bytes was reached
    gaps: int = 0  # windows that did not follow the previous one (kept whole)


class WindowRecorder:
    """Appends the new samples of each window of one sensor; bounded by ``max_bytes``; thread-safe."""

    def __init__(self, folder: Path, *, channels: int, hop_samples: int, sample_rate_hz: float, max_bytes: int) -> None:
        if max_bytes <= 0 or hop_samples <= 0 or channels <= 0 or sample_rate_hz <= 0:
            raise ValueError("max_bytes, hop_samples, sample_rate_hz and channels must be > 0")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / "recording.f32"
        self.channels = channels
        self.hop_samples = hop_samples
        self.max_bytes = max_bytes
        self.sample_rate_hz = sample_rate_hz
        self.counts = RecorderCounts()
        self._last_start_s: float | None = None  # t_start of the last window kept
        self._lock = threading.Lock()
        self._handle = self.path.open("wb", buffering=0)  # what is counted is on disk

    @property
    def full(self) -> bool:
        return self.counts.refused > 0

    @property
    def seconds(self) -> float:
        return self.counts.samples / self.sample_rate_hz

    def add(self, window: Window) -> bool:
        """Keep ``window``'s new samples; False (and counted) once the byte bound is reached or after ``close``."""
        samples = np.asarray(window.samples, dtype=np.float32)
        if samples.shape[0] != self.channels:
            raise ValueError(f"window has {samples.shape[0]} channels, the recording {self.channels}")
        width = samples.shape[1]
        with self._lock:
            last = self._last_start_s
            step = None if last is None else (window.t_start - last) * self.sample_rate_hz
            # the windowing clock follows a stream's drift by small steps; a gap starts a new segment far away
            follows = (
                step is not None and abs(step - self.hop_samples) < self.hop_samples / 2 and self.hop_samples <= width
            )
            new = samples[:, width - self.hop_samples :] if follows else samples
            room = (self.max_bytes - self.counts.bytes) // (self.channels * BYTES_PER_SAMPLE)
            if self._handle.closed or room < new.shape[1]:
                self.counts.refused += 1
                return False
            if last is not None and not follows:
                self.counts.gaps += 1
            data = np.ascontiguousarray(new.T).tobytes()
            self._handle.write(data)
            self._last_start_s = window.t_start
            self.counts.windows += 1
            self.counts.samples += new.shape[1]
            self.counts.bytes += len(data)
            return True

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.close()

    def finish(self) -> Path:
        """Close and write ``recording.npy`` (channels, samples); the raw file is removed."""
        self.close()
        data = np.fromfile(self.path, dtype=np.float32).reshape(-1, self.channels).T
        out = self.folder / "recording.npy"
        np.save(out, np.ascontiguousarray(data))
        self.path.unlink(missing_ok=True)
        return out

    def discard(self) -> None:
        self.close()
        for path in (self.path, self.folder / "recording.npy"):
            path.unlink(missing_ok=True)
