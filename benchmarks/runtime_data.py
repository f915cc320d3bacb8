"""Real windows for ``bench_runtimes.py``: held-out windows (timing, agreement) and calibration windows.

Read from the data folder at run time (``--data`` or ``$EDGE_AGENT_DATA``, default ``../shared/data``);
nothing here is written anywhere.

- CWRU (``drsn_cw_cwru``): the test split the model card names (the last 20 % in time of every record,
  hop 1024: 650 windows), and for calibration the shipped int8 file's own recipe
  (:func:`edge_agent.training.export.calibration_set`: 512 training windows of every class, half clean,
  half with noise at the training SNRs, seeded by the run's seed).
- Motor sound (``drsn_cw_bldc_audio``): the model saw all 31 clips (1750 and 1850 RPM are held back by
  the data owners), so no held-out windows exist; the windows of every clip at the training hop stand in,
  and calibration is the shipped recipe's seeded pick of 256 of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

MODELS = {"cwru": "drsn_cw_cwru", "audio": "drsn_cw_bldc_audio"}


@dataclass(frozen=True)
class Windows:
    """``held_out`` ``(N, C, L)`` float32 with ``labels`` ``(N,)``, ``calibration`` ``(M, C, L)``, and what they are."""

    held_out: np.ndarray
    labels: np.ndarray
    calibration: np.ndarray
    description: str


def model_paths(key: str, models_dir: Path = Path("models")) -> tuple[Path, Path]:
    """(int8 file, float32 file) of the shipped model ``key`` (``cwru`` or ``audio``)."""
    stem = MODELS[key]
    return models_dir / f"{stem}.pt", models_dir / f"{stem}_float.pt"


def load_windows(int8_path: Path, data: str | None = None) -> Windows:
    """Held-out and calibration windows for the shipped model ``int8_path`` (its meta says which data)."""
    from edge_agent.modelfile import load_model

    meta: dict[str, Any] = dict(load_model(int8_path).meta)
    if meta["architecture"]["model"] == "audio_drsn_cw":
        return _audio_windows(meta, data)
    return _cwru_windows(meta, data)


def _cwru_windows(meta: dict[str, Any], data: str | None) -> Windows:
    from edge_agent.training.evaluate import test_windows
    from edge_agent.training.export import calibration_set
    from edge_agent.training.unfreeze import shipped_cwru_data

    training = meta["training"]
    config, dataset = shipped_cwru_data(meta, data)
    windows, labels = test_windows(dataset, config.window_samples)
    count = int(meta["quantization"]["calibration_windows"])
    calibration = calibration_set(dataset, config, count)
    return Windows(
        windows.numpy(),
        labels.numpy(),
        calibration.numpy(),
        f"CWRU test split (last {training['split_fractions'][2]:.0%} of every record, hop 1024): "
        f"{len(windows)} windows; int8 calibration: the shipped recipe, {count} training windows",
    )


def _audio_windows(meta: dict[str, Any], data: str | None) -> Windows:
    from edge_agent.training.audio_data import clip_windows
    from edge_agent.training.unfreeze import shipped_audio_data

    config, dataset = shipped_audio_data(meta, data)
    parts = [clip_windows(clip, config.window_samples, config.hop_samples) for clip in dataset.clips]
    windows = np.concatenate(parts).astype(np.float32)
    labels = np.concatenate([np.full(len(part), clip.label) for part, clip in zip(parts, dataset.clips, strict=True)])
    count = int(meta["quantization"]["calibration_windows"])
    picks = torch.randperm(len(windows), generator=torch.Generator().manual_seed(config.seed))[:count].numpy()
    return Windows(
        windows,
        labels,
        windows[picks],
        f"all {len(dataset.clips)} machine_sound/bldc_motor clips, hop {config.hop_samples} ({len(windows)} windows; "
        f"the model saw every clip: none is held out); int8 calibration: the shipped recipe, {count} of them",
    )


def noisy(windows: np.ndarray, snr_db: float, seed: int = 7) -> np.ndarray:
    """``windows`` plus white Gaussian noise at ``snr_db`` per window (seeded: every runtime gets the same)."""
    from edge_agent.training.noise import add_noise

    generator = torch.Generator().manual_seed(seed)
    return add_noise(torch.from_numpy(windows), "gaussian", snr_db, generator).numpy().astype(np.float32)


def subset(windows: Windows, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most ``count`` held-out windows and labels, a seeded pick in their original order."""
    if count <= 0 or count >= len(windows.held_out):
        return windows.held_out, windows.labels
    picks = np.sort(np.random.default_rng(seed).choice(len(windows.held_out), count, replace=False))
    return windows.held_out[picks], windows.labels[picks]
