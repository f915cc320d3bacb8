"""Train the shipped audio model on every BLDC clip and export it (int8 and float32 TorchScript).

The module takes raw windows ``(N, 1, window_samples)`` of full-scale samples (what the
``soundcard`` source emits with ``scale = 1``: float32 in [-1, 1] whatever the device's dtype),
normalises each window inside the graph (gain-invariant) and returns logits over
``healthy, propeller, bearing``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_agent.modelfile import load_model
from edge_agent.training.audio_data import CLASS_NAMES, BldcDataset, clip_windows
from edge_agent.training.audio_train import AudioTrainConfig, build_audio_model, train_audio
from edge_agent.training.complexity import count_macs, count_parameters
from edge_agent.training.export import SCHEMA_VERSION, build_torchscript, code_version
from edge_agent.training.label_info import AUDIO_LABEL_INFO, label_info
from edge_agent.training.quantize import QUANTIZED_ENGINE, save_torchscript

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
INPUT_UNITS = "full scale (float32 in [-1, 1]: the soundcard source's samples with scale = 1)"


def train_shipped(config: AudioTrainConfig, dataset: BldcDataset, run_dir: Path, *, device: str = "cpu") -> Path:
    """Train on all clips and save ``checkpoint.pt`` (kept: an existing one is reused)."""
    path = run_dir / CHECKPOINT
    if path.is_file():
        state = torch.load(path, weights_only=False)
        if state["config"] != config.to_json() or state["data_sha256"] != dataset.sha256:
            raise ValueError(f"{path} was trained with another configuration or data; use a new run folder")
        logger.info("reusing %s", path)
        return path
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = train_audio(config, dataset.clips, device=device, progress=True)
    state = {
        "config": config.to_json(),
        "model": model.state_dict(),
        "data_sha256": dataset.sha256,
        "train_seconds": time.perf_counter() - started,
        "device": device,
        "torch": torch.__version__,
    }
    torch.save(state, path)
    return path


def all_windows(dataset: BldcDataset, config: AudioTrainConfig) -> torch.Tensor:
    parts = [clip_windows(c, config.window_samples, config.hop_samples) for c in dataset.clips]
    return torch.from_numpy(np.concatenate(parts))


def predictions(module: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([module(chunk).argmax(dim=1) for chunk in windows.split(256)])


def export_audio(
    run_dir: Path,
    out: Path,
    dataset: BldcDataset,
    *,
    float_out: Path | None = None,
    cv_summary: dict[str, Any] | None = None,
    calibration_windows: int = 256,
    engine: str = QUANTIZED_ENGINE,
) -> dict[str, Any]:
    """Export ``run_dir``'s checkpoint to ``out`` (int8) and optionally ``float_out``; returns the int8 meta."""
    state = torch.load(run_dir / CHECKPOINT, weights_only=False)
    if state["data_sha256"] != dataset.sha256:
        raise ValueError(f"data sha256 {dataset.sha256} differs from the checkpoint's {state['data_sha256']}")
    config = AudioTrainConfig.from_json(state["config"])
    torch.manual_seed(config.seed)
    model = build_audio_model(config)
    model.load_state_dict(state["model"])
    model.eval()
    windows = all_windows(dataset, config)
    labels = torch.from_numpy(
        np.concatenate(
            [np.full(len(clip_windows(c, config.window_samples, config.hop_samples)), c.label) for c in dataset.clips]
        )
    )
    picks = torch.randperm(len(windows), generator=torch.Generator().manual_seed(config.seed))[:calibration_windows]
    meta: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "name": f"drsn_cw_bldc_audio-{config.frontend}-{config.window_samples}",
        "kind": "classifier",
        "architecture": {
            "model": "audio_drsn_cw",
            "frontend": config.frontend,
            "n_fft": config.n_fft if config.frontend == "logspec" else None,
            "widths": list(config.widths),
            "blocks_per_stage": config.blocks_per_stage,
            "kernel_size": config.kernel_size,
        },
        "labels": list(CLASS_NAMES),
        "label_info": label_info(CLASS_NAMES, AUDIO_LABEL_INFO),
        "sample_rate_hz": dataset.sample_rate_hz,
        "window_samples": config.window_samples,
        "hop_samples": config.hop_samples,
        "channels": 1,
        "input_units": INPUT_UNITS,
        "output": "logits",
        "normalisation": {
            "applied": "inside the graph",
            "method": "per window: subtract the mean, divide by the RMS (any input gain gives the same logits)",
            "abstain_below_rms": model.abstain_rms,
            "abstain": "windows below that RMS (about -90 dBFS, digital silence) get all-zero logits (uniform)",
        },
        "precision": "float32",
        "quantized_engine": None,
        "parameters": count_parameters(model),
        "macs_per_window": count_macs(model, (1, config.window_samples)),
        "code_version": code_version(),
        "training": {
            "data": "machine_sound/bldc_motor: all 31 clips (mono mean, 16 kHz, unit RMS per clip)",
            "data_sha256": dataset.sha256,
            "config": config.to_json(),
            "train_seconds": round(state["train_seconds"], 1),
            "device": state["device"],
            "torch": state["torch"],
        },
        "evaluation": {"cross_validation": cv_summary} if cv_summary else {},
    }
    reference = {"reference_windows": windows, "reference_data": f"median over all {len(windows)} training windows"}
    float_module, float_meta = build_torchscript(model, meta, **reference)
    module, meta = build_torchscript(model, meta, calibration=windows[picks], engine=engine, **reference)
    meta["quantization"]["calibration_data"] = f"{len(picks)} windows drawn from all clips"
    float_pred, int8_pred = predictions(float_module, windows), predictions(module, windows)
    checks = {
        "windows": len(windows),
        "int8_agreement_with_float32": float((float_pred == int8_pred).float().mean()),
        "training_windows_accuracy_int8": float((int8_pred == labels).float().mean()),
        "training_windows_accuracy_float32": float((float_pred == labels).float().mean()),
        "note": "all windows of the 31 training clips (not held out): agreement, not generalisation",
    }
    generator = torch.Generator().manual_seed(config.seed)
    for snr_db in (10.0, 0.0):  # off the training data: white noise added at this SNR
        noisy = windows + torch.randn(windows.shape, generator=generator) * windows.std() * 10 ** (-snr_db / 20)
        same = predictions(float_module, noisy) == predictions(module, noisy)
        checks[f"int8_agreement_with_float32_white_noise_{snr_db:+.0f}dB"] = float(same.float().mean())
    meta["evaluation"]["export_check"] = checks
    float_meta["evaluation"] = meta["evaluation"]
    save_torchscript(module, out, meta)
    if float_out is not None:
        save_torchscript(float_module, float_out, float_meta)
        load_model(float_out)
    loaded = load_model(out)
    logger.info("wrote %s (sha256 %s): %s", out, loaded.sha256[:12], json.dumps(checks))
    return dict(loaded.meta)


def run_train_audio(args: Any) -> int:
    """``edge-agent train-audio``: cross-validate (``--cv``) or train on all clips and export."""
    import dataclasses

    from edge_agent.training.audio_data import load_bldc, motor_folds, speed_folds
    from edge_agent.training.audio_train import cross_validate, summarise_cv

    torch.set_num_threads(args.threads)
    dataset = load_bldc(args.data)
    config = AudioTrainConfig(
        frontend=args.frontend,
        window_samples=args.window_samples,
        steps=args.steps,
        gap_fraction=args.gap_fraction,
        speed_factors=tuple(args.speed_factors),
        seed=args.seed,
    )
    if args.cv:
        speed = cross_validate(config, speed_folds(dataset), args.seeds, device=args.device)
        motor = cross_validate(config, motor_folds(dataset), args.seeds, device=args.device)
        result = {
            "config": dataclasses.replace(config, seed=-1).to_json(),
            "data_sha256": dataset.sha256,
            "speed": summarise_cv(speed),
            "motor": summarise_cv(motor),
            "speed_rows": speed,
            "motor_rows": motor,
        }
        Path(args.cv).parent.mkdir(parents=True, exist_ok=True)
        Path(args.cv).write_text(json.dumps(result))
        print(json.dumps({"speed": result["speed"], "motor": result["motor"]}, indent=2))
        return 0
    run_dir = Path(args.out)
    train_shipped(config, dataset, run_dir, device=args.device)
    cv_summary = None
    if args.cv_summary:
        cv = json.loads(Path(args.cv_summary).read_text())
        cv_summary = {"leave_one_speed_out": cv["speed"], "leave_one_motor_out": cv["motor"], "config": cv["config"]}
    meta = export_audio(
        run_dir,
        Path(args.model_out),
        dataset,
        float_out=Path(args.float_out) if args.float_out else None,
        cv_summary=cv_summary,
    )
    print(json.dumps(meta["evaluation"], indent=2))
    return 0
