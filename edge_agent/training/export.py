"""Export a trained run as a self-describing TorchScript file (int8 by default).

int8 is FX static post-training quantisation of the convolutions only (engine ``onednn`` by default):
in every unit ``conv1`` (with ``bn2`` + ``relu2`` folded into it) and ``conv2``, and the
stem conv only on request (``quantize_stem``). ``conv1``'s int8 output feeds ``conv2``
directly, so each unit pays one quantize (before ``conv1``) and one dequantize (after
``conv2``); a quantised stem adds one more pair. Standardize, the threshold sub-network,
soft thresholding (``abs``/``sign`` have no quantized kernels), ``bn1``, residual adds and
the head stay float32.

Both precisions are traced from a 2-D channels-last copy of the network
(:func:`edge_agent.nn.channels_last.to_channels_last_2d`: ``(N, C, 1, L)`` NHWC, kernels ``(1, k)``),
the layout this CPU's float and int8 convolution kernels run fastest in; the weights are the
trained 1-D ones. ``GRAPH_LAYOUT`` names it in ``meta.json``.

The saved module takes raw windows ``(N, channels, window_samples)`` in g and returns logits
``(N, len(labels))``, plus a ``noise_floor`` method (``meta.json`` key ``noise_floor``); ``meta.json``
rides along through ``_extra_files`` (see :mod:`edge_agent.modelfile`).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_agent.modelfile import SCHEMA_VERSION, load_model
from edge_agent.nn.channels_last import Shrinkage2d, to_channels_last_2d
from edge_agent.training.accuracy_gate import REFUSED, LowAccuracyError, accuracy_problem
from edge_agent.training.complexity import count_macs, count_parameters
from edge_agent.training.data import CwruDataset, load_cwru, make_windows
from edge_agent.training.evaluate import EVAL_SEED, accuracy_vs_snr, predict_labels, summarize, test_windows
from edge_agent.training.label_info import CWRU_LABEL_INFO, label_info
from edge_agent.training.noise import NOISE_TYPES, add_noise, snr_label
from edge_agent.training.noise_floor_export import build_noise_floor_torchscript
from edge_agent.training.provenance import code_version
from edge_agent.training.quantize import (
    QUANTIZED_ENGINE,
    int8_module_names,
    quantize_boundaries,
    quantize_int8,
    save_torchscript,
    to_torchscript,
)
from edge_agent.training.train import TrainConfig, load_trained

logger = logging.getLogger(__name__)

DEFAULT_HOP_SAMPLES = 1024
METRIC_SNRS_DB: tuple[float | None, ...] = (-10.0, -5.0, None)
AGREEMENT_SNR_DB = -5.0
GRAPH_LAYOUT = "2d-channels-last"  # (N, C, 1, L) NHWC inside the graph; the file's input stays (N, C, L)


def describe_model(
    model: nn.Module,
    *,
    name: str,
    labels: list[str],
    sample_rate_hz: float,
    architecture: dict[str, Any],
    hop_samples: int = DEFAULT_HOP_SAMPLES,
) -> dict[str, Any]:
    """The meta of a float model that does not depend on training data (precision still float32)."""
    window_samples = int(model.window_samples)
    channels = int(model.normalize.mean.shape[1])
    return {
        "schema": SCHEMA_VERSION,
        "name": name,
        "kind": "classifier",
        "architecture": architecture,
        "labels": list(labels),
        "sample_rate_hz": sample_rate_hz,
        "window_samples": window_samples,
        "hop_samples": hop_samples,
        "channels": channels,
        "input_units": "g",
        "output": "logits",
        "normalisation": {
            "mean": model.normalize.mean.flatten().tolist(),
            "std": model.normalize.std.flatten().tolist(),
            "applied": "inside the graph",
        },
        "precision": "float32",
        "quantized_engine": None,
        "parameters": count_parameters(model),
        "macs_per_window": count_macs(model, (channels, window_samples)),
        "code_version": code_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def build_torchscript(
    model: nn.Module,
    meta: dict[str, Any],
    *,
    calibration: torch.Tensor | None = None,
    engine: str = QUANTIZED_ENGINE,
    quantize_stem: bool = False,
    reference_windows: torch.Tensor | None = None,
    reference_data: str = "",
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """int8 (when ``calibration`` is given) or float32 TorchScript of ``model``, and ``meta`` with its precision.

    ``model`` is a :class:`~edge_agent.nn.ResidualNet1d`; the graph is built from its 2-D channels-last copy.
    With ``reference_windows`` (clean windows) and shrinkage units, the module also gets a ``noise_floor``
    method (:mod:`edge_agent.training.noise_floor_export`).
    """
    example, network = torch.zeros(2, meta["channels"], meta["window_samples"]), to_channels_last_2d(model.eval())
    meta = {**meta, "graph_layout": GRAPH_LAYOUT}
    if reference_windows is not None and any(isinstance(b.shrinkage, Shrinkage2d) for b in network.blocks):
        return build_noise_floor_torchscript(
            network,
            meta,
            reference_windows=reference_windows,
            reference_data=reference_data,
            calibration=calibration,
            engine=engine,
            quantize_stem=quantize_stem,
        )
    if calibration is None:
        return to_torchscript(network, example), {**meta, "precision": "float32", "quantized_engine": None}
    quantized = quantize_int8(network, calibration, engine=engine, quantize_stem=quantize_stem)
    quantization = {
        "method": "FX static post-training quantisation, activations quint8, weights qint8 per tensor",
        "int8_layers": int8_module_names(model, quantize_stem=quantize_stem),
        "calibration_windows": len(calibration),
        **quantize_boundaries(quantized),
    }
    meta = {**meta, "precision": "int8", "quantized_engine": engine, "quantization": quantization}
    return to_torchscript(quantized, example), meta


def export_model(
    model: nn.Module,
    out: Path,
    meta: dict[str, Any],
    *,
    calibration: torch.Tensor | None = None,
    engine: str = QUANTIZED_ENGINE,
    quantize_stem: bool = False,
    **reference: Any,
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """:func:`build_torchscript` (``reference``: its ``reference_windows``/``_data``) and :func:`save_torchscript`."""
    module, meta = build_torchscript(
        model, meta, calibration=calibration, engine=engine, quantize_stem=quantize_stem, **reference
    )
    save_torchscript(module, out, meta)
    return module, meta


def calibration_set(dataset: CwruDataset, config: TrainConfig, count: int) -> torch.Tensor:
    """``count`` training windows: the first half clean, the rest with every noise type at the training SNRs."""
    if count < 2:
        raise ValueError(f"calibration_windows must be >= 2, got {count}")
    windows, _ = make_windows(dataset.splits["train"], config.window_samples, config.window_samples // 2)
    generator = torch.Generator().manual_seed(config.seed)
    picks = torch.randperm(len(windows), generator=generator)[:count]
    chosen = torch.from_numpy(windows)[picks]
    noisy = chosen[len(chosen) // 2 :]
    if config.mode == "matched":
        low = high = config.matched_snr_db
    else:
        low, high = config.snr_range_db
    snrs = low + (high - low) * torch.rand(len(noisy), generator=generator)
    kinds = torch.arange(len(noisy)) % len(NOISE_TYPES)
    parts = [chosen[: len(chosen) // 2]]
    for index, kind in enumerate(NOISE_TYPES):
        rows = kinds == index
        if rows.any():
            parts.append(add_noise(noisy[rows], kind, snrs[rows], generator))
    return torch.cat(parts)


def compute_test_metrics(
    module: torch.nn.Module, windows: torch.Tensor, labels: torch.Tensor, *, reference: nn.Module | None = None
) -> dict[str, Any]:
    """Accuracy on the test split (one noise draw per window and condition); agreement with ``reference``."""
    per_kind = accuracy_vs_snr(module, windows, labels, snrs_db=METRIC_SNRS_DB, repeats=1)
    metrics: dict[str, Any] = {
        "split": "test",
        "windows": len(labels),
        "noise_repeats": 1,
        "accuracy": summarize(per_kind),
        "accuracy_per_noise": per_kind,
    }
    if reference is not None:
        metrics["float32_accuracy"] = summarize(
            accuracy_vs_snr(reference, windows, labels, snrs_db=METRIC_SNRS_DB, repeats=1)
        )
        metrics["agreement_with_float32"] = agreement(module, reference, windows)
    return metrics


def agreement(module: torch.nn.Module, reference: torch.nn.Module, windows: torch.Tensor) -> dict[str, float]:
    """Fraction of windows where both models predict the same class: clean and at ``AGREEMENT_SNR_DB`` (all types)."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    noisy = torch.cat([add_noise(windows, kind, AGREEMENT_SNR_DB, generator) for kind in NOISE_TYPES])
    result = {}
    for label, inputs in (("clean", windows), (snr_label(AGREEMENT_SNR_DB), noisy)):
        same = predict_labels(module, inputs) == predict_labels(reference, inputs)
        result[label] = float(same.float().mean())
    return result


def _training_meta(summary: dict[str, Any], config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    return {
        "run": run_dir.name,
        "mode": config.mode,
        "snr_range_db": list(config.snr_range_db),
        "matched_snr_db": config.matched_snr_db if config.mode == "matched" else None,
        "clean_fraction": config.clean_fraction,
        "seed": config.seed,
        "schedule": {
            "epochs": config.epochs,
            "steps_per_epoch": config.steps_per_epoch,
            "batch_size": config.batch_size,
            "optimizer": "sgd",
            "lr": config.lr,
            "lr_drops": list(config.lr_drops),
            "momentum": config.momentum,
            "weight_decay": config.weight_decay,
        },
        "data_sha256": summary["data_sha256"],
        "split_fractions": summary.get("split_fractions"),
        "best_val_accuracy": summary.get("best_val_accuracy"),
        "best_epoch": summary.get("best_epoch"),
    }


def _read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {run_dir} a finished training run?")
    return json.loads(path.read_text())


def export_run(
    run_dir: Path,
    out: Path,
    *,
    data: str | None = None,
    quantize: bool = True,
    calibration_windows: int = 512,
    quantize_stem: bool = False,
    engine: str = QUANTIZED_ENGINE,
    force: bool = False,
) -> dict[str, Any]:
    """Export the best checkpoint of ``run_dir`` to ``out`` with test-split metrics; returns the stored meta.

    Too close to chance on the test split: LowAccuracyError, nothing written, unless ``force`` (accuracy_gate).
    """
    summary = _read_summary(run_dir)
    dataset = load_cwru(data, fractions=tuple(summary.get("split_fractions") or (0.7, 0.1, 0.2)))
    if dataset.sha256 != summary["data_sha256"]:
        raise ValueError(
            f"data sha256 {dataset.sha256} differs from the run's data_sha256 {summary['data_sha256']} ({run_dir})"
        )
    model, config = load_trained(run_dir, len(summary["class_names"]))
    torch.set_num_threads(config.threads)
    precision = "int8" if quantize else "float32"
    meta = describe_model(
        model,
        name=f"{run_dir.name}-{precision}",
        labels=summary["class_names"],
        sample_rate_hz=summary["sample_rate_hz"],
        architecture={
            "model": config.model,
            "widths": list(config.widths),
            "blocks_per_stage": config.blocks_per_stage,
            "kernel_size": config.kernel_size,
        },
    )
    meta["training"] = _training_meta(summary, config, run_dir)
    meta["label_info"] = label_info(meta["labels"], CWRU_LABEL_INFO)  # descriptions and severities for alerts
    calibration = calibration_set(dataset, config, calibration_windows) if quantize else None
    clean = torch.from_numpy(make_windows(dataset.splits["train"], config.window_samples, config.window_samples)[0])
    module, meta = build_torchscript(
        model, meta, calibration=calibration, engine=engine, quantize_stem=quantize_stem,
        reference_windows=clean, reference_data=f"median over {len(clean)} clean training windows (hop = window)",
    )  # fmt: skip
    if quantize:
        meta["quantization"]["calibration_data"] = "train split: half clean, half noisy (every type, training SNRs)"
    windows, labels = test_windows(dataset, config.window_samples)
    meta["test_metrics"] = compute_test_metrics(module, windows, labels, reference=model if quantize else None)
    problem = accuracy_problem(meta["test_metrics"]["accuracy"]["clean"], len(meta["labels"]))
    if problem is not None and problem[0] and not force:
        raise LowAccuracyError(f"{run_dir}: {problem[1]}; {REFUSED}")
    if problem is not None:  # a weak model, or one forced past the floor: loud, in the log and by the command
        logger.warning("%s: %s", run_dir, problem[1])
    save_torchscript(module, out, meta)
    loaded = load_model(out)  # proves the file loads through the runtime path
    logger.info("wrote %s (%s, sha256 %s)", out, precision, loaded.sha256[:12])
    return dict(loaded.meta)
