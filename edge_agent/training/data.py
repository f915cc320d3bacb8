"""CWRU bearing data: loading, splitting every record in time, and windowing.

The data is read at run time from ``<data_root>/cwru/cwru_12k_de_dev.npz`` and never copied
into the project. Every record is split in time (train | validation | test), so no test
window overlaps a training window.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.common.paths import DATA_ENV, data_root

CWRU_FILE = Path("cwru") / "cwru_12k_de_dev.npz"
SPLITS = ("train", "val", "test")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Segment:
    """One contiguous piece of one record, ``samples`` shaped ``(channels, n)``."""

    key: str
    label: int
    load_hp: int
    samples: np.ndarray


@dataclass(frozen=True)
class CwruDataset:
    class_names: tuple[str, ...]
    sample_rate_hz: int
    splits: dict[str, list[Segment]]
    sha256: str
    fractions: tuple[float, float, float]


def load_cwru(
    root: str | os.PathLike[str] | None = None,
    *,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> CwruDataset:
    """Load the CWRU pack and split every record in time into train / val / test."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    path = data_root(root) / CWRU_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"CWRU data not found at {path}; pass --data or set ${DATA_ENV} to the folder "
            "that holds cwru/cwru_12k_de_dev.npz"
        )
    splits: dict[str, list[Segment]] = {name: [] for name in SPLITS}
    with np.load(path, allow_pickle=False) as pack:
        class_names = tuple(str(name) for name in pack["class_names"])
        sample_rate_hz = int(pack["fs_hz"])
        for key, label, load in zip(pack["keys"], pack["labels"], pack["load_hp"], strict=True):
            signal = np.asarray(pack[str(key)], dtype=np.float32)
            bounds = np.cumsum([0.0, *fractions]) * signal.size
            for name, start, stop in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
                piece = signal[round(start) : round(stop)][None, :]
                splits[name].append(Segment(str(key), int(label), int(load), piece))
    return CwruDataset(class_names, sample_rate_hz, splits, file_sha256(path), fractions)


def make_windows(segments: list[Segment], window_samples: int, hop_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut segments into windows ``(N, channels, window_samples)`` and labels ``(N,)``."""
    if window_samples < 1 or hop_samples < 1:
        raise ValueError(f"window_samples and hop_samples must be >= 1, got {window_samples}, {hop_samples}")
    windows: list[np.ndarray] = []
    labels: list[int] = []
    for segment in segments:
        n = segment.samples.shape[1]
        for start in range(0, n - window_samples + 1, hop_samples):
            windows.append(segment.samples[:, start : start + window_samples])
            labels.append(segment.label)
    if not windows:
        raise ValueError(f"no segment is long enough for a window of {window_samples} samples")
    return np.stack(windows), np.asarray(labels, dtype=np.int64)


class RandomCropSampler:
    """Draws class-balanced training windows at random offsets inside the training segments."""

    def __init__(self, segments: list[Segment], window_samples: int, seed: int) -> None:
        self.segments = [s for s in segments if s.samples.shape[1] >= window_samples]
        if not self.segments:
            raise ValueError(f"no training segment holds {window_samples} samples")
        self.window_samples = window_samples
        self.rng = np.random.default_rng(seed)
        labels = np.array([s.label for s in self.segments])
        lengths = np.array([s.samples.shape[1] - window_samples + 1 for s in self.segments], float)
        # each class gets equal probability; inside a class, segments by their length
        weights = np.zeros(len(self.segments))
        for label in np.unique(labels):
            mask = labels == label
            weights[mask] = lengths[mask] / lengths[mask].sum()
        self.probabilities = weights / weights.sum()

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        picks = self.rng.choice(len(self.segments), size=batch_size, p=self.probabilities)
        windows = np.empty((batch_size, self.segments[0].samples.shape[0], self.window_samples), np.float32)
        labels = np.empty(batch_size, np.int64)
        for row, index in enumerate(picks):
            segment = self.segments[index]
            start = self.rng.integers(0, segment.samples.shape[1] - self.window_samples + 1)
            windows[row] = segment.samples[:, start : start + self.window_samples]
            labels[row] = segment.label
        return windows, labels


def channel_stats(segments: list[Segment]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over all samples of the segments."""
    joined = np.concatenate([s.samples for s in segments], axis=1).astype(np.float64)
    return joined.mean(axis=1).astype(np.float32), joined.std(axis=1).astype(np.float32)
