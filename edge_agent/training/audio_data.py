"""BLDC-motor sound clips: loading, level normalisation, speed/motor folds and windowing.

Read at run time from ``<data_root>/machine_sound/bldc_motor`` (``labels.csv`` and the WAVs),
never copied into the project. Every clip becomes mono float32 at 16 kHz (channel mean; the
two channels are the same microphone), resampled where needed (one clip is at 44.1 kHz), and is
divided by its own RMS (recording levels differ by >20 dB between sessions). Folds hold out whole
clips, by nominal speed or by motor, never random windows.
"""

from __future__ import annotations

import csv
import hashlib
import os
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from edge_agent.common.paths import data_root
from edge_agent.pipeline.resample import StreamResampler

BLDC_DIR = Path("machine_sound") / "bldc_motor"
SAMPLE_RATE_HZ = 16_000
CLASS_NAMES = ("healthy", "propeller", "bearing")


@dataclass(frozen=True)
class Clip:
    """One recording: ``samples`` mono float32 ``(n,)`` at 16 kHz with unit RMS."""

    path: str
    label: int
    motor: str
    rpm: int
    samples: np.ndarray

    @property
    def condition(self) -> str:
        return CLASS_NAMES[self.label]


@dataclass(frozen=True)
class BldcDataset:
    clips: tuple[Clip, ...]
    sha256: str  # of labels.csv, which lists every WAV's sha256
    class_names: tuple[str, ...] = CLASS_NAMES
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def speeds(self) -> list[int]:
        return sorted({clip.rpm for clip in self.clips})

    @property
    def motors(self) -> list[str]:
        return sorted({clip.motor for clip in self.clips})


def bldc_dir(root: str | os.PathLike[str] | None = None) -> Path:
    return data_root(root) / BLDC_DIR


def read_wav_mono(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV as float32 full scale, channels averaged; returns ``(samples, rate_hz)``."""
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * handle.getsampwidth()}-bit samples")
        channels, rate = handle.getnchannels(), handle.getframerate()
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    frames = pcm.reshape(-1, channels).astype(np.float32) / 32768.0
    return frames.mean(axis=1), rate


def to_rate(samples: np.ndarray, rate_hz: int, target_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    if rate_hz == target_hz:
        return samples
    return StreamResampler(rate_hz, target_hz, 1).process(samples[None, :].astype(np.float32))[0]


def normalise_level(samples: np.ndarray) -> np.ndarray:
    """Remove the mean and divide by the RMS (the clip's recording level)."""
    centred = samples - samples.mean()
    rms = float(np.sqrt(np.mean(centred**2)))
    if rms == 0.0:
        raise ValueError("clip is digital silence")
    return (centred / rms).astype(np.float32)


def load_bldc(root: str | os.PathLike[str] | None = None) -> BldcDataset:
    """Every clip listed in ``labels.csv``, mono, 16 kHz, unit RMS."""
    folder = bldc_dir(root)
    labels_csv = folder / "labels.csv"
    if not labels_csv.is_file():
        raise FileNotFoundError(
            f"{labels_csv} not found (set $EDGE_AGENT_DATA or --data to the folder holding machine_sound/)"
        )
    clips = []
    with labels_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            samples, rate = read_wav_mono(folder / row["path"])
            if row["condition"] not in CLASS_NAMES:
                raise ValueError(f"{labels_csv}: unknown condition {row['condition']!r} for {row['path']}")
            clips.append(
                Clip(
                    path=row["path"],
                    label=CLASS_NAMES.index(row["condition"]),
                    motor=row["motor"],
                    rpm=int(row["nominal_rpm"]),
                    samples=normalise_level(to_rate(samples, rate)),
                )
            )
    sha256 = hashlib.sha256(labels_csv.read_bytes()).hexdigest()
    return BldcDataset(clips=tuple(clips), sha256=sha256)


# ---------------------------------------------------------------- folds


@dataclass(frozen=True)
class Fold:
    name: str
    train: tuple[Clip, ...]
    test: tuple[Clip, ...]


def speed_folds(dataset: BldcDataset) -> list[Fold]:
    """Leave one nominal speed out: every clip at that speed (all motors, all conditions) is test."""
    return [
        Fold(
            name=f"rpm{rpm}",
            train=tuple(c for c in dataset.clips if c.rpm != rpm),
            test=tuple(c for c in dataset.clips if c.rpm == rpm),
        )
        for rpm in dataset.speeds
    ]


def motor_folds(dataset: BldcDataset, motors: Sequence[str] = ("M1", "M2")) -> list[Fold]:
    """Leave one motor out (M1, M2: the motors with healthy and propeller clips)."""
    return [
        Fold(
            name=f"motor{motor}",
            train=tuple(c for c in dataset.clips if c.motor != motor),
            test=tuple(c for c in dataset.clips if c.motor == motor),
        )
        for motor in motors
    ]


# ---------------------------------------------------------------- windows


def speed_resampled(samples: np.ndarray, factor: float) -> np.ndarray:
    """``samples`` played ``factor`` times faster: every frequency times ``factor``, ``len / factor`` samples.

    Polyphase resampling (scipy) by the nearest ratio with a denominator of at most 100; a motor
    running ``factor`` times faster moves its rotation lines (and their orders) by the same factor.
    """
    if not 0.5 < factor < 2.0:
        raise ValueError(f"speed factor must be in (0.5, 2), got {factor}")
    ratio = Fraction(factor).limit_denominator(100)
    if ratio == 1:
        return samples.astype(np.float32)
    return resample_poly(samples, ratio.denominator, ratio.numerator).astype(np.float32)


def clip_windows(clip: Clip, window_samples: int, hop_samples: int) -> np.ndarray:
    """Windows ``(n, 1, window_samples)`` of one clip at ``hop_samples``."""
    count = 1 + (len(clip.samples) - window_samples) // hop_samples
    if count < 1:
        raise ValueError(f"{clip.path}: {len(clip.samples)} samples < window of {window_samples}")
    starts = np.arange(count) * hop_samples
    return np.stack([clip.samples[s : s + window_samples] for s in starts])[:, None, :]


class BalancedCropSampler:
    """Random crops: a class uniformly, then a clip of that class, then an offset (classes balanced).

    ``speed_factors`` (e.g. 0.9, 0.95, 1.05, 1.1): each clip is also resampled once per factor
    (:func:`speed_resampled`), and every crop takes the original or one of these copies uniformly:
    the same recording as if the motor ran that much faster or slower.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        window_samples: int,
        seed: int,
        speed_perturb: float = 0.0,
        gap_fraction: float = 0.0,
        speed_factors: Sequence[float] = (),
    ) -> None:
        if not 0.0 <= speed_perturb < 0.5:
            raise ValueError(f"speed_perturb must be in [0, 0.5), got {speed_perturb}")
        if not 0.0 <= gap_fraction <= 1.0:
            raise ValueError(f"gap_fraction must be in [0, 1], got {gap_fraction}")
        self.window_samples = window_samples
        self.speed_perturb = speed_perturb
        self.gap_fraction = gap_fraction
        if speed_factors and speed_perturb:
            raise ValueError("speed_factors and speed_perturb are two speed augmentations: choose one")
        self.by_class: dict[int, list[list[np.ndarray]]] = {}
        for clip in clips:
            copies = [clip.samples] + [speed_resampled(clip.samples, f) for f in speed_factors]
            self.by_class.setdefault(clip.label, []).append(copies)
        self.labels = sorted(self.by_class)
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        labels = self.rng.choice(self.labels, size=batch_size)
        windows = np.empty((batch_size, 1, self.window_samples), np.float32)
        for row, label in enumerate(labels):
            group = self.by_class[int(label)]
            copies = group[self.rng.integers(len(group))]
            windows[row, 0] = self._crop(copies[self.rng.integers(len(copies))] if len(copies) > 1 else copies[0])
            if self.rng.random() < self.gap_fraction:
                self._silence_an_edge(windows[row, 0])
        return windows, labels.astype(np.int64)

    def _crop(self, samples: np.ndarray) -> np.ndarray:
        """A random window; with ``speed_perturb`` p, time-stretched by a factor in [1-p, 1+p] (linear interp.)."""
        if self.speed_perturb == 0.0:
            start = self.rng.integers(len(samples) - self.window_samples + 1)
            return samples[start : start + self.window_samples]
        factor = 1.0 + self.rng.uniform(-self.speed_perturb, self.speed_perturb)  # >1: faster (higher pitch)
        span = int(np.ceil(self.window_samples * factor)) + 1
        start = self.rng.integers(len(samples) - span + 1)
        positions = start + np.arange(self.window_samples) * factor
        return np.interp(positions, np.arange(start, start + span), samples[start : start + span]).astype(np.float32)

    def _silence_an_edge(self, window: np.ndarray) -> None:
        """Zero a random start or end (up to 3/4 of the window): sound starting or stopping mid-window."""
        length = int(self.rng.integers(1, 3 * self.window_samples // 4))
        if self.rng.random() < 0.5:
            window[:length] = 0.0
        else:
            window[-length:] = 0.0
