"""Training loop: the paper's optimiser, noise augmentation, checkpoints and deterministic seeds."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_agent.nn import get_model
from edge_agent.training.complexity import count_macs, count_parameters
from edge_agent.training.data import CwruDataset, RandomCropSampler, channel_stats, make_windows
from edge_agent.training.noise import NOISE_TYPES, NoiseAugmenter, add_noise

logger = logging.getLogger(__name__)

TRAIN_MODES = ("augment", "matched", "clean")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored with every checkpoint)."""

    model: str = "drsn_cw"
    widths: tuple[int, ...] = (4, 8, 16)
    blocks_per_stage: int = 4
    kernel_size: int = 3
    window_samples: int = 2048
    epochs: int = 60
    steps_per_epoch: int = 64
    batch_size: int = 128
    lr: float = 0.1
    lr_drops: tuple[float, ...] = (0.4, 0.8)  # fractions of the epochs where lr drops 10x
    momentum: float = 0.9
    weight_decay: float = 1e-4
    mode: str = "augment"  # augment: random type and SNR; matched: one SNR; clean: no noise
    snr_range_db: tuple[float, float] = (-12.0, 6.0)
    matched_snr_db: float = 0.0
    matched_noise: str = "gaussian"
    clean_fraction: float = 0.15
    val_hop_samples: int = 1024
    val_snrs_db: tuple[float, ...] = (-10.0, -5.0, 0.0)
    seed: int = 0
    threads: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in TRAIN_MODES:
            raise ValueError(f"mode must be one of {TRAIN_MODES}, got {self.mode!r}")
        if self.matched_noise not in NOISE_TYPES:
            raise ValueError(f"matched_noise must be one of {NOISE_TYPES}, got {self.matched_noise!r}")

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TrainConfig:
        tuples = {"widths", "lr_drops", "snr_range_db", "val_snrs_db"}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})  # type: ignore[arg-type]


def build_model(config: TrainConfig, num_classes: int, in_channels: int = 1) -> nn.Module:
    return get_model(
        config.model,
        num_classes=num_classes,
        in_channels=in_channels,
        widths=config.widths,
        blocks_per_stage=config.blocks_per_stage,
        kernel_size=config.kernel_size,
        window_samples=config.window_samples,
    )


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _train_batch_noise(config: TrainConfig) -> NoiseAugmenter | None:
    if config.mode == "clean":
        return None
    if config.mode == "matched":
        snr = config.matched_snr_db
        return NoiseAugmenter((snr, snr), clean_fraction=0.0, kinds=(config.matched_noise,), seed=config.seed + 1)
    return NoiseAugmenter(config.snr_range_db, clean_fraction=config.clean_fraction, seed=config.seed + 1)


class ValidationSet:
    """Fixed noisy copies of the validation windows, so every epoch is scored on the same data."""

    def __init__(self, dataset: CwruDataset, config: TrainConfig) -> None:
        windows, labels = make_windows(dataset.splits["val"], config.window_samples, config.val_hop_samples)
        clean = torch.from_numpy(windows)
        generator = torch.Generator().manual_seed(12345)
        if config.mode == "matched":
            conditions = [(config.matched_noise, config.matched_snr_db)]
        else:
            conditions = [(kind, snr) for kind in NOISE_TYPES for snr in config.val_snrs_db]
        self.inputs = [clean] + [add_noise(clean, kind, snr, generator) for kind, snr in conditions]
        self.labels = torch.from_numpy(labels)

    def accuracy(self, model: nn.Module) -> float:
        model.eval()
        correct = 0
        with torch.inference_mode():
            for inputs in self.inputs:
                correct += int((predict(model, inputs) == self.labels).sum())
        model.train()
        return correct / (len(self.inputs) * len(self.labels))


def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return torch.cat([model(chunk).argmax(dim=1) for chunk in inputs.split(batch_size)])


def train(config: TrainConfig, dataset: CwruDataset, out_dir: Path, *, progress: bool = True) -> dict[str, object]:
    """Train one model; writes ``checkpoint.pt`` (resumable), ``best.pt`` and ``summary.json``."""
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(config, len(dataset.class_names))
    mean, std = channel_stats(dataset.splits["train"])
    model.normalize.set_stats(torch.from_numpy(mean), torch.from_numpy(std))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    milestones = [round(f * config.epochs) for f in config.lr_drops]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    sampler = RandomCropSampler(dataset.splits["train"], config.window_samples, config.seed)
    augment = _train_batch_noise(config)
    validation = ValidationSet(dataset, config)
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict[str, float]] = []
    start_epoch, best_val, train_seconds = 0, -1.0, 0.0
    checkpoint_path = out_dir / "checkpoint.pt"
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        if state["config"] != config.to_json():
            raise ValueError(f"{checkpoint_path} was written by another configuration; use a new --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        if augment is not None:
            augment.generator.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, best_val = state["epoch"], state["best_val"]
        history, train_seconds = state["history"], state["train_seconds"]
        logger.info("resumed %s at epoch %d", out_dir, start_epoch)
    model.train()
    bar = tqdm(
        range(start_epoch, config.epochs),
        desc=out_dir.name,
        disable=not progress,
        initial=start_epoch,
        total=config.epochs,
    )
    for epoch in bar:
        started = time.perf_counter()
        running_loss = 0.0
        for _ in range(config.steps_per_epoch):
            windows, labels = sampler.sample(config.batch_size)
            inputs = torch.from_numpy(windows)
            if augment is not None:
                inputs = augment(inputs)
            loss = loss_fn(model(inputs), torch.from_numpy(labels))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        scheduler.step()
        train_seconds += time.perf_counter() - started
        val_accuracy = validation.accuracy(model)
        history.append(
            {"epoch": epoch + 1, "loss": running_loss / config.steps_per_epoch, "val_accuracy": val_accuracy}
        )
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", val=f"{val_accuracy:.4f}")
        if val_accuracy >= best_val:
            best_val = val_accuracy
            torch.save(
                {"config": config.to_json(), "model": model.state_dict(), "epoch": epoch + 1}, out_dir / "best.pt"
            )
        torch.save(
            {
                "config": config.to_json(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "sampler_rng": sampler.rng.bit_generator.state,
                "augment_rng": augment.generator.get_state() if augment is not None else None,
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "best_val": best_val,
                "history": history,
                "train_seconds": train_seconds,
            },
            checkpoint_path,
        )
    summary = {
        "config": config.to_json(),
        "class_names": list(dataset.class_names),
        "sample_rate_hz": dataset.sample_rate_hz,
        "data_sha256": dataset.sha256,
        "split_fractions": list(dataset.fractions),
        "best_val_accuracy": best_val,
        "best_epoch": max(history, key=lambda h: (h["val_accuracy"], h["epoch"]))["epoch"] if history else 0,
        "train_seconds": train_seconds,
        "parameters": count_parameters(model),
        "macs_per_window": count_macs(model, (1, config.window_samples)),
        "history": history,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_trained(run_dir: Path, num_classes: int) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the best model of a run directory in eval mode."""
    state = torch.load(run_dir / "best.pt", weights_only=False)
    config = TrainConfig.from_json(state["config"])
    model = build_model(config, num_classes)
    model.load_state_dict(state["model"])
    model.eval()
    return model, config
