"""``edge-agent learn --out OUT.pt [options] INPUT...``: learn a healthy baseline from recorded files.

Inputs: ``.wav`` (16-bit PCM, 32-bit float or 32-bit PCM; rate and channels from the file, samples
as full scale), ``.npy`` (1-D, or ``(channels, samples)``) and ``.csv`` (one column per channel, an
optional header row), the last two at ``--sample-rate-hz``. Refused, with the reason: input too
short, silent, clipped, with differing sample rates or channel counts.

``edge-agent learn --sensor NAME --duration 10m``: ask the running agent (its control socket,
edge_agent.service.control) to learn that sensor's live stream instead; --model, --false-rate and
--steps go with the request (the source's ``[sources.learn]`` gives the rest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.common.learning import (
    DEFAULT_FALSE_RATE,
    DEFAULT_FRONTEND,
    DEFAULT_NETWORK,
    DEFAULT_STEPS,
    FRONTENDS,
    NETWORKS,
)

logger = logging.getLogger(__name__)

MIN_TRAIN_WINDOWS = 32
SILENT_RMS = 1e-6  # relative to the largest recording's RMS: a dead channel / digital silence
CLIPPED_FRACTION = 1e-3  # of samples in flat runs at the recording's extreme value: saturated input
LIVE_DEFAULT = "; with --sensor: the source's [sources.learn] value"


def read_recording(path: Path, sample_rate_hz: float | None) -> tuple[np.ndarray, float, bool]:
    """``(samples (C, n) float32, rate_hz, full_scale)``; ``full_scale`` when the file has a fixed range (PCM)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if suffix == ".wav":
        return *_read_wav(path), True
    if sample_rate_hz is None:
        raise ValueError(f"{path}: {suffix} files carry no sample rate; pass --sample-rate-hz")
    if suffix == ".npy":
        data = np.load(path, allow_pickle=False)
        if data.ndim == 1:
            data = data[None, :]
        if data.ndim != 2 or data.shape[0] > data.shape[1]:
            raise ValueError(f"{path}: expected a 1-D array or (channels, samples), got shape {data.shape}")
    elif suffix == ".csv":
        data = _read_csv(path).T
    else:
        raise ValueError(f"{path}: unsupported input type {suffix!r} (use .wav, .npy or .csv)")
    if not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"{path}: not numeric data ({data.dtype})")
    return np.asarray(data, dtype=np.float32), float(sample_rate_hz), False


def _read_csv(path: Path) -> np.ndarray:
    with path.open() as handle:
        first = handle.readline()
    try:
        [float(cell) for cell in first.strip().split(",")]
        skip = 0
    except ValueError:
        skip = 1  # a header row
    data = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2)
    return data


def _read_wav(path: Path) -> tuple[np.ndarray, float]:
    try:
        with wave.open(str(path), "rb") as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            raw = handle.readframes(handle.getnframes())
        if width == 2:
            pcm = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        elif width == 4:
            pcm = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
        else:
            raise ValueError(f"{path}: {8 * width}-bit WAV is not supported (use 16- or 32-bit PCM)")
    except wave.Error as error:
        if "unknown format: 3" not in str(error):
            raise ValueError(f"{path}: not a readable WAV file ({error})") from error
        from scipy.io import wavfile  # 32-bit float WAV (format 3), which the wave module does not read

        rate, data = wavfile.read(path)
        pcm, channels = np.asarray(data, np.float32).reshape(-1), 1 if data.ndim == 1 else data.shape[1]
    return pcm.reshape(-1, channels).T.copy(), float(rate)


def check_recordings(recordings: list[np.ndarray], paths: list[Path], window: int) -> None:
    """Refuse input that is silent, clipped or too short (``ValueError`` saying which file and why)."""
    largest = max(float(np.sqrt(np.mean((r - r.mean(axis=1, keepdims=True)) ** 2))) for r in recordings)
    for recording, path in zip(recordings, paths, strict=True):
        if not np.all(np.isfinite(recording)):
            raise ValueError(f"{path}: contains NaN or infinite samples")
        centred = recording - recording.mean(axis=1, keepdims=True)
        rms = np.sqrt(np.mean(centred**2, axis=1))
        if largest == 0.0 or np.any(rms <= SILENT_RMS * max(largest, 1e-30)) or np.any(np.ptp(recording, axis=1) == 0):
            raise ValueError(f"{path}: silent (a channel is flat or at RMS {float(rms.min()):.3g}); nothing to learn")
        peak = np.abs(recording).max(axis=1, keepdims=True)
        at_peak = np.abs(recording) >= peak * (1 - 1e-6)
        flat = at_peak[:, :-2] & at_peak[:, 1:-1] & at_peak[:, 2:]  # flat tops: 3 samples in a row at the extreme
        at_peak = flat.mean(axis=1)
        if np.any(at_peak > CLIPPED_FRACTION):
            raise ValueError(
                f"{path}: clipped ({100 * float(at_peak.max()):.2f} % of samples at the peak {float(peak.max()):.4g}); "
                "lower the gain and record again"
            )
    windows = sum(max(0, 1 + (r.shape[1] - window) // max(1, window // 4)) for r in recordings)
    if windows < MIN_TRAIN_WINDOWS * 2:
        total = sum(r.shape[1] for r in recordings)
        raise ValueError(
            f"input too short: {total} samples give {windows} windows of {window} samples at hop {window // 4}; "
            f"need at least {2 * MIN_TRAIN_WINDOWS} (record longer or use a shorter --window-samples)"
        )


def add_parser(subparsers: Any, **parser_options: Any) -> argparse.ArgumentParser:
    what = "learn a healthy baseline (autoencoder anomaly model) from recordings"
    p = subparsers.add_parser("learn", help=what, description=what, **parser_options)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="healthy recordings: .wav, .npy or .csv")
    p.add_argument("--out", help="model file to write (TorchScript, kind = anomaly); needed with INPUT")
    live = p.add_argument_group("learning on a running agent, from a sensor's live stream (its control socket)")
    live.add_argument(
        "--sensor", help="the sensor to learn (instead of INPUT files); --model, --false-rate, --steps apply"
    )
    live.add_argument("--duration", default="10m", help="how long to record the live stream (s, m or h)")
    live.add_argument("--config", default="config.toml", help="the running agent's configuration (its state folder)")
    live.add_argument("--state-dir", help="the running agent's state folder (instead of reading --config)")
    live.add_argument(
        "--force",
        action="store_true",
        help="learn even if the running anomaly model flags most of the recording (after a repair or a new "
        "operating point; a classifier fault still refuses)",
    )
    p.add_argument("--sample-rate-hz", type=float, help="sample rate of .npy and .csv inputs")
    p.add_argument("--window-samples", type=int, default=2048, help="window length in samples (as the agent cuts)")
    p.add_argument("--hop-samples", type=int, help="hop of the agent's windows (default: window / 2)")
    p.add_argument("--model", choices=NETWORKS, help=f"autoencoder type (default {DEFAULT_NETWORK}){LIVE_DEFAULT}")
    p.add_argument(
        "--frontend", choices=FRONTENDS, help=f"features inside the model (default {DEFAULT_FRONTEND}){LIVE_DEFAULT}"
    )
    p.add_argument(
        "--spread-bands",
        type=int,
        default=3,
        help="envspread/blockspread: log-spaced bands from 1 kHz to Nyquist besides the whole window (default 3)",
    )
    p.add_argument(
        "--absolute-level",
        action="store_true",
        help="keep the signal's level in the features (default: level-invariant, a gain change is not an anomaly)",
    )
    p.add_argument(
        "--false-rate",
        type=float,
        help=f"target false-window rate on healthy data (default {DEFAULT_FALSE_RATE:g}){LIVE_DEFAULT}",
    )
    p.add_argument(
        "--threshold-method",
        choices=("pot", "gamma", "empirical"),
        default="pot",
        help="how the threshold is fitted to held-back healthy scores (pot: peaks over threshold)",
    )
    p.add_argument("--holdout-fraction", type=float, default=0.2, help="part of the input held back for the threshold")
    p.add_argument(
        "--cross-fit",
        action="store_true",
        help="threshold from cross-fitted scores of all the input, then the model learns all of it: with >= 3 "
        "recordings leave one recording out, else --cross-fit-folds time blocks (one extra model each)",
    )
    p.add_argument(
        "--cross-fit-folds",
        type=int,
        default=5,
        help="time blocks of --cross-fit with fewer than 3 recordings (a guard gap of one window around each)",
    )
    p.add_argument("--steps", type=int, help=f"optimiser steps (default {DEFAULT_STEPS}){LIVE_DEFAULT}")
    p.add_argument("--seed", type=int, default=0, help="random seed (initialisation, batch order, corruption)")
    p.add_argument("--units", default="sensor units", help="input units recorded in meta.json (e.g. g)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.sensor:
        from edge_agent.service.control import request_learning

        return request_learning(args)
    if not args.inputs or not args.out:
        raise ValueError("learning from files needs INPUT... and --out (or --sensor NAME: a running agent's stream)")
    import torch

    from edge_agent.training.anomaly_learn import anomaly_meta, export_anomaly, learn
    from edge_agent.training.anomaly_train import AnomalyConfig

    torch.set_num_threads(1)
    started = time.perf_counter()
    paths = [Path(p) for p in args.inputs]
    loaded = [read_recording(p, args.sample_rate_hz) for p in paths]
    rates = {rate for _, rate, _ in loaded}
    if len(rates) != 1:
        listing = ", ".join(f"{p.name}: {rate:g} Hz" for p, (_, rate, _) in zip(paths, loaded, strict=True))
        raise ValueError(f"inputs mix sample rates ({listing}); resample them to one rate first")
    channels = {r.shape[0] for r, _, _ in loaded}
    if len(channels) != 1:
        raise ValueError(f"inputs mix channel counts: {sorted(channels)}")
    recordings = [r for r, _, _ in loaded]
    check_recordings(recordings, paths, args.window_samples)
    config = AnomalyConfig(
        network=args.model or DEFAULT_NETWORK,
        frontend=args.frontend or DEFAULT_FRONTEND,
        level_invariant=not args.absolute_level,
        window_samples=args.window_samples,
        hop_samples=args.hop_samples or args.window_samples // 2,
        train_hop_samples=max(1, args.window_samples // 8),
        spread_bands=args.spread_bands,
        steps=args.steps if args.steps is not None else DEFAULT_STEPS,
        target_false_rate=args.false_rate if args.false_rate is not None else DEFAULT_FALSE_RATE,
        threshold_method=args.threshold_method,
        holdout_fraction=args.holdout_fraction,
        cross_fit=args.cross_fit,
        cross_fit_folds=args.cross_fit_folds,
        seed=args.seed,
    )
    rate = rates.pop()
    result = learn(recordings, rate, config, progress=not args.quiet)
    digest = hashlib.sha256()
    for path in paths:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    out = Path(args.out)
    name = f"anomaly-{config.network}-{config.frontend}-{out.stem}"
    meta = anomaly_meta(result, name=name, data_sha256=digest.hexdigest(), input_units=args.units, sources=args.inputs)
    export_anomaly(result, meta, out)
    summary = {
        "out": str(out),
        "duration_s": round(result.duration_s, 2),
        "recordings": len(recordings),
        "sample_rate_hz": rate,
        "train_windows": result.stats["train_windows"],
        "held_back": f"{result.split.kind}: {result.held_back_scores.size} windows",
        "threshold": round(result.threshold, 6),
        "threshold_method": result.fit.method,
        "target_false_rate": config.target_false_rate,
        "held_back_false_rate": round(result.held_back_false_rate, 4),
        "debounce": None if result.debounce is None else f"{result.debounce.confirm_k} of {result.debounce.confirm_n}",
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary, indent=2))
    return 0
