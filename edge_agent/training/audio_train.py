"""Audio DRSN-CW on the BLDC-motor clips: training, fold evaluation (window and clip level).

Hyperparameters are fixed before any fold is scored (fixed number of steps, no early stopping),
so no held-out fold steers training. A clip's prediction is the argmax of its windows' mean
class probabilities.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_agent.nn.audio import AudioResidualNet1d, audio_drsn_cw
from edge_agent.training.audio_data import CLASS_NAMES, BalancedCropSampler, Clip, Fold, clip_windows

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioTrainConfig:
    frontend: str = "logspec"
    window_samples: int = 8192
    n_fft: int = 1024
    widths: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 1
    kernel_size: int = 3
    steps: int = 1200
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    speed_perturb: float = 0.0
    gap_fraction: float = 0.0  # crops with a silent start or end (sound starting/stopping within a window)
    speed_factors: tuple[float, ...] = ()  # training copies resampled to play this much faster (0.9: -10 %); off
    seed: int = 0

    @property
    def hop_samples(self) -> int:
        return self.window_samples // 2

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AudioTrainConfig:
        return cls(**{k: tuple(v) if k in ("widths", "speed_factors") else v for k, v in data.items()})


def build_audio_model(config: AudioTrainConfig, num_classes: int = len(CLASS_NAMES)) -> AudioResidualNet1d:
    return audio_drsn_cw(
        num_classes=num_classes,
        frontend=config.frontend,
        window_samples=config.window_samples,
        n_fft=config.n_fft,
        widths=config.widths,
        blocks_per_stage=config.blocks_per_stage,
        kernel_size=config.kernel_size,
    )


def train_audio(
    config: AudioTrainConfig, clips: Sequence[Clip], *, device: str = "cpu", progress: bool = False
) -> AudioResidualNet1d:
    """Train on ``clips`` (class-balanced random crops, AdamW, cosine lr); returns the model in eval mode on CPU."""
    torch.manual_seed(config.seed)
    model = build_audio_model(config).to(device)
    sampler = BalancedCropSampler(
        clips, config.window_samples, config.seed, config.speed_perturb, config.gap_fraction, config.speed_factors
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    started = time.perf_counter()
    for step in range(config.steps):
        windows, labels = sampler.sample(config.batch_size)
        inputs = torch.from_numpy(windows).to(device)
        loss = loss_fn(model(inputs), torch.from_numpy(labels).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress and (step + 1) % 100 == 0:
            elapsed_s = time.perf_counter() - started
            logger.info("step %d/%d loss %.4f (%.0f s)", step + 1, config.steps, loss.item(), elapsed_s)
    return model.cpu().eval()


@torch.inference_mode()
def clip_probabilities(
    module: nn.Module, clip: Clip, window_samples: int, hop_samples: int, *, device: str = "cpu"
) -> np.ndarray:
    """Class probabilities ``(windows, classes)`` of one clip's windows."""
    windows = torch.from_numpy(clip_windows(clip, window_samples, hop_samples)).to(device)
    logits = torch.cat([module(chunk) for chunk in windows.split(256)])
    return torch.softmax(logits, dim=1).cpu().numpy()


@torch.inference_mode()
def edge_predictions(module: nn.Module, clip: Clip, window_samples: int, hop_samples: int, device: str) -> np.ndarray:
    """Predicted classes of the clip's windows with one half zeroed (first half, then second, alternating)."""
    windows = torch.from_numpy(clip_windows(clip, window_samples, hop_samples)).to(device)
    half = window_samples // 2
    windows[0::2, :, :half] = 0.0
    windows[1::2, :, half:] = 0.0
    return torch.cat([module(chunk).argmax(dim=1) for chunk in windows.split(256)]).cpu().numpy()


def evaluate_clips(
    module: nn.Module, clips: Sequence[Clip], window_samples: int, hop_samples: int, *, device: str = "cpu"
) -> dict[str, Any]:
    """Window accuracy (all windows pooled), clip accuracy (mean probabilities) and per-clip detail."""
    per_clip, correct_windows, total_windows, correct_edges = [], 0, 0, 0
    for clip in clips:
        probs = clip_probabilities(module, clip, window_samples, hop_samples, device=device)
        window_pred = probs.argmax(axis=1)
        correct_windows += int((window_pred == clip.label).sum())
        total_windows += len(window_pred)
        correct_edges += int((edge_predictions(module, clip, window_samples, hop_samples, device) == clip.label).sum())
        per_clip.append(
            {
                "path": clip.path,
                "label": CLASS_NAMES[clip.label],
                "predicted": CLASS_NAMES[int(probs.mean(axis=0).argmax())],
                "window_accuracy": float((window_pred == clip.label).mean()),
                "mean_probabilities": [round(float(p), 4) for p in probs.mean(axis=0)],
            }
        )
    return {
        "window_accuracy": correct_windows / total_windows,
        "clip_accuracy": sum(c["label"] == c["predicted"] for c in per_clip) / len(per_clip),
        "windows": total_windows,
        "half_silent_window_accuracy": correct_edges / total_windows,
        "clips": per_clip,
    }


def cross_validate(
    config: AudioTrainConfig, folds: Sequence[Fold], seeds: Sequence[int], *, device: str = "cpu"
) -> list[dict[str, Any]]:
    """Train and score one model per fold and seed; one result row each."""
    rows = []
    for seed in seeds:
        seeded = dataclasses.replace(config, seed=seed)
        for fold in folds:
            started = time.perf_counter()
            model = train_audio(seeded, fold.train, device=device).to(device)
            result = evaluate_clips(model, fold.test, config.window_samples, config.hop_samples, device=device)
            rows.append({"fold": fold.name, "seed": seed, "seconds": time.perf_counter() - started, **result})
            logger.info(
                "%s seed %d: window %.3f clip %.3f", fold.name, seed, result["window_accuracy"], result["clip_accuracy"]
            )
    return rows


def summarise_cv(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean and std over seeds of the fold-pooled window and clip accuracy (each held-out item once per seed)."""
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_seed.setdefault(row["seed"], []).append(row)
    window, clip = [], []
    for seed_rows in by_seed.values():
        window.append(
            sum(r["window_accuracy"] * r["windows"] for r in seed_rows) / sum(r["windows"] for r in seed_rows)
        )
        clips = [c for r in seed_rows for c in r["clips"]]
        clip.append(sum(c["label"] == c["predicted"] for c in clips) / len(clips))
    return {
        "seeds": len(by_seed),
        "window_accuracy_mean": float(np.mean(window)),
        "window_accuracy_std": float(np.std(window)),
        "clip_accuracy_mean": float(np.mean(clip)),
        "clip_accuracy_std": float(np.std(clip)),
    }
