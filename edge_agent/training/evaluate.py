"""Accuracy versus SNR on the time-held-out test split."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edge_agent.training.data import CwruDataset, load_cwru, make_windows
from edge_agent.training.noise import NOISE_TYPES, add_noise, snr_label

EVAL_SNRS_DB: tuple[float | None, ...] = (-10.0, -8.0, -6.0, -5.0, -4.0, -2.0, 0.0, 2.0, 5.0, None)
TEST_HOP_SAMPLES = 1024  # test windows overlap by half, but never reach outside the test split
EVAL_SEED = 2020

Predictor = Callable[[torch.Tensor], torch.Tensor]


def test_windows(dataset: CwruDataset, window_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    windows, labels = make_windows(dataset.splits["test"], window_samples, TEST_HOP_SAMPLES)
    return torch.from_numpy(windows), torch.from_numpy(labels)


def predict_labels(model: Predictor, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(chunk).argmax(dim=1) for chunk in inputs.split(batch_size)])


def accuracy_vs_snr(
    model: Predictor,
    windows: torch.Tensor,
    labels: torch.Tensor,
    *,
    snrs_db: tuple[float | None, ...] = EVAL_SNRS_DB,
    kinds: tuple[str, ...] = NOISE_TYPES,
    repeats: int = 2,
    seed: int = EVAL_SEED,
) -> dict[str, dict[str, float]]:
    """``{noise type: {snr label: accuracy}}``; ``repeats`` noise draws per window and condition.

    The noise draws depend only on ``seed``, so every model sees exactly the same noisy data.
    """
    results: dict[str, dict[str, float]] = {}
    clean_accuracy = None
    for kind_index, kind in enumerate(kinds):
        results[kind] = {}
        for snr_index, snr in enumerate(snrs_db):
            if snr is None:
                if clean_accuracy is None:
                    clean_accuracy = float((predict_labels(model, windows) == labels).float().mean())
                results[kind]["clean"] = clean_accuracy
                continue
            generator = torch.Generator().manual_seed(seed + 1000 * kind_index + snr_index)
            correct = 0
            for _ in range(repeats):
                noisy = add_noise(windows, kind, snr, generator)
                correct += int((predict_labels(model, noisy) == labels).sum())
            results[kind][snr_label(snr)] = correct / (repeats * len(labels))
    return results


def summarize(per_kind: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean over noise types for each SNR label."""
    snr_labels = next(iter(per_kind.values())).keys()
    return {label: float(np.mean([per_kind[k][label] for k in per_kind])) for label in snr_labels}


def confusion_matrix(model: Predictor, windows: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    predicted = predict_labels(model, windows).numpy()
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.numpy(), predicted), 1)
    return matrix


def evaluate_run(run_dir: Path, *, data: str | None = None, repeats: int = 2) -> dict[str, object]:
    """Evaluate a run's best checkpoint; caches the result in ``<run>/eval.json``."""
    from edge_agent.training.train import load_trained

    cache = run_dir / "eval.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("repeats") == repeats:
            return cached
    dataset = load_cwru(data)
    model, config = load_trained(run_dir, len(dataset.class_names))
    torch.set_num_threads(config.threads)
    windows, labels = test_windows(dataset, config.window_samples)
    per_kind = accuracy_vs_snr(model, windows, labels, repeats=repeats)
    result = {"repeats": repeats, "test_windows": len(labels), "per_kind": per_kind, "summary": summarize(per_kind)}
    cache.write_text(json.dumps(result, indent=2))
    return result


def format_table(result: dict[str, object]) -> str:
    """:func:`evaluate_run`'s result as a table: one row per SNR, accuracy (%) per noise type and their mean."""
    per_kind: dict[str, dict[str, float]] = result["per_kind"]  # type: ignore[assignment]
    summary: dict[str, float] = result["summary"]  # type: ignore[assignment]
    header = ["SNR", *per_kind, "mean"]
    rows = [
        [label if label == "clean" else f"{label} dB", *(f"{per_kind[k][label]:.1%}" for k in per_kind), f"{mean:.1%}"]
        for label, mean in summary.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]]
    title = (
        f"accuracy on the time-held-out test split: {result['test_windows']} windows, "
        f"{result['repeats']} noise draws per window and condition"
    )
    return "\n".join([title, *lines])
