"""Learn a healthy baseline from recordings: hold data back, train, set the threshold, export.

Hold-back (:func:`split_recordings`): with at least :data:`MIN_RECORDINGS_FOR_WHOLE` recordings,
whole recordings (about ``holdout_fraction`` of the duration, picked evenly through the list, so the
threshold sees the spread between operating points); otherwise the last ``holdout_fraction`` of
every recording in time. Training and held-back windows are cut from disjoint sample ranges, so no
window of one overlaps a window of the other. The threshold is fitted on the held-back scores only.

Cross-fitting (``config.cross_fit``) scores *all* the input with models that did not train on it, and
the shipped model then trains on all of it: with at least :data:`MIN_RECORDINGS_FOR_WHOLE` recordings,
leave one recording out; with fewer, ``cross_fit_folds`` contiguous time blocks of every recording
(:func:`time_folds`), each scored by a model trained on the rest less a guard gap of one window on
either side of the block.

The same held-back (or cross-fitted) scores, per recording in time order, set the debounce the model
recommends (:mod:`edge_agent.training.anomaly_debounce`: the smallest k of n that raises no episode on them
at the threshold), stored in the meta as ``debounce``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_agent.modelfile import SCHEMA_VERSION, load_model
from edge_agent.nn.anomaly_frontends import describe_frontend
from edge_agent.nn.autoencoders import AnomalyDetector
from edge_agent.training.anomaly_debounce import Debounce, learn_debounce, streams_at_hop
from edge_agent.training.anomaly_threshold import ThresholdFit, calibration, false_rate, fit_threshold
from edge_agent.training.anomaly_train import AnomalyConfig, build_detector, fit_detector, scores_of
from edge_agent.training.complexity import count_macs, count_parameters
from edge_agent.training.export import code_version
from edge_agent.training.quantize import save_torchscript

logger = logging.getLogger(__name__)

MIN_RECORDINGS_FOR_WHOLE = 3
SCORE_DEFINITION = (
    "mean over channels and features of error_weight * (z - autoencoder(z))**2, "
    "z = (front-end features - healthy mean) / healthy std"
)


@dataclass(frozen=True)
class Split:
    train: list[np.ndarray]
    held_back: list[np.ndarray]
    kind: str  # "recordings" or "time"
    held_back_recordings: list[int] = field(default_factory=list)


@dataclass
class LearnResult:
    detector: AnomalyDetector
    config: AnomalyConfig
    sample_rate_hz: float
    fit: ThresholdFit
    held_back_scores: np.ndarray
    split: Split
    duration_s: float
    stats: dict[str, Any]
    debounce: Debounce | None = None  # None: the calibration scores were not at a divisor of the hop

    @property
    def threshold(self) -> float:
        return self.fit.threshold

    @property
    def held_back_false_rate(self) -> float:
        return false_rate(self.held_back_scores, self.fit.threshold)


def split_recordings(recordings: Sequence[np.ndarray], window_samples: int, holdout_fraction: float) -> Split:
    """Training and held-back parts of ``recordings`` ``[(C, n), ...]`` (see the module doc)."""
    if len(recordings) >= MIN_RECORDINGS_FOR_WHOLE:
        count = min(len(recordings) - 1, max(1, round(holdout_fraction * len(recordings))))
        picks = sorted({int(i) for i in np.linspace(0, len(recordings) - 1, count + 2)[1:-1].round()})
        train = [r for i, r in enumerate(recordings) if i not in picks]
        return Split(train, [recordings[i] for i in picks], "recordings", picks)
    train, held = [], []
    for recording in recordings:
        cut = round(recording.shape[-1] * (1.0 - holdout_fraction))
        train.append(recording[:, :cut])
        held.append(recording[:, cut:])
    return Split(train, held, "time")


def learn(
    recordings: Sequence[np.ndarray], sample_rate_hz: float, config: AnomalyConfig, *, progress: bool = False
) -> LearnResult:
    """Train on the training part of healthy ``recordings`` and set the threshold on the held-back part."""
    if not recordings:
        raise ValueError("no recordings to learn from")
    channels = {r.shape[0] for r in recordings}
    if len(channels) != 1:
        raise ValueError(f"recordings have different channel counts: {sorted(channels)}")
    started = time.perf_counter()
    count = channels.pop()
    if config.cross_fit and len(recordings) >= MIN_RECORDINGS_FOR_WHOLE:
        folds = [([r for j, r in enumerate(recordings) if j != i], [r]) for i, r in enumerate(recordings)]
        streams = _cross_fit_scores(folds, sample_rate_hz, config, count)
        split = Split(list(recordings), [], "cross-fit", list(range(len(recordings))))
    elif config.cross_fit:
        folds = time_folds(recordings, config.window_samples, config.cross_fit_folds)
        streams = _cross_fit_scores(folds, sample_rate_hz, config, count)
        split = Split(list(recordings), [], "cross-fit-time")
    else:
        split = split_recordings(recordings, config.window_samples, config.holdout_fraction)
    detector = build_detector(config, count, sample_rate_hz)
    stats = fit_detector(detector, split.train, config, progress=progress)
    score_hop = config.calibration_hop if split.kind.startswith("cross-fit") else config.hop_samples
    if not split.kind.startswith("cross-fit"):
        streams = [scores_of(detector, [part], config.window_samples, score_hop) for part in split.held_back]
    held_scores = np.concatenate(streams) if streams else np.empty(0)
    if held_scores.size < 2:
        raise ValueError(
            f"the held-back part gives {held_scores.size} window(s) of {config.window_samples} samples; "
            "record longer (or use a shorter --window-samples)"
        )
    fit = fit_threshold(held_scores, config.target_false_rate, config.threshold_method)
    debounce = None
    if config.hop_samples % score_hop == 0:
        debounce = learn_debounce(streams_at_hop(streams, score_hop, config.hop_samples), fit.threshold)
    stats["seconds"] = time.perf_counter() - started
    duration_s = sum(r.shape[-1] for r in recordings) / sample_rate_hz
    return LearnResult(detector, config, sample_rate_hz, fit, held_scores, split, duration_s, stats, debounce)


Fold = tuple[list[np.ndarray], list[np.ndarray]]  # (training parts, held-out parts)


def time_folds(recordings: Sequence[np.ndarray], window_samples: int, folds: int) -> list[Fold]:
    """``folds`` contiguous time blocks of every recording; each fold trains on the rest less a guard gap.

    The guard gap is one window (``window_samples``) on either side of the held-out block, so no
    training window overlaps or touches a held-out one; pieces shorter than a window are dropped.
    """
    if folds < 2:
        raise ValueError(f"cross-fitting in time needs at least 2 folds, got {folds}")
    out: list[Fold] = []
    for fold in range(folds):
        train, held = [], []
        for recording in recordings:
            edges = np.linspace(0, recording.shape[-1], folds + 1).round().astype(int)
            start, stop = int(edges[fold]), int(edges[fold + 1])
            if stop - start < window_samples:
                raise ValueError(
                    f"a time block of {stop - start} samples is shorter than a window of {window_samples}; "
                    "record longer or use fewer cross-fit folds"
                )
            held.append(recording[:, start:stop])
            pieces = (recording[:, : max(0, start - window_samples)], recording[:, stop + window_samples :])
            train += [p for p in pieces if p.shape[-1] >= window_samples]
        out.append((train, held))
    return out


def _cross_fit_scores(
    folds: Sequence[Fold], sample_rate_hz: float, config: AnomalyConfig, channels: int
) -> list[np.ndarray]:
    """Scores of every fold's held-out parts (one stream per part) from a model trained on that fold's
    training parts only.

    The threshold then sees how novel each operating point (or stretch of time) looks to a model that
    never heard it; the shipped model is trained on all of the input, so its scores on it are, if
    anything, lower.
    """
    scores = []
    for train, held in folds:
        detector = build_detector(config, channels, sample_rate_hz)
        fit_detector(detector, train, config)
        scores += [scores_of(detector, [part], config.window_samples, config.calibration_hop) for part in held]
    return scores


def arrays_sha256(recordings: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for recording in recordings:
        digest.update(np.ascontiguousarray(recording, dtype=np.float32).tobytes())
    return digest.hexdigest()


def anomaly_meta(
    result: LearnResult,
    *,
    name: str,
    data_sha256: str | None = None,
    input_units: str = "sensor units",
    sources: Sequence[str] = (),
) -> dict[str, Any]:
    """``meta.json`` of an anomaly model file (kind ``anomaly``)."""
    detector, config = result.detector, result.config
    channels = detector.channels
    return {
        "schema": SCHEMA_VERSION,
        "name": name,
        "kind": "anomaly",
        "sample_rate_hz": result.sample_rate_hz,
        "window_samples": config.window_samples,
        "hop_samples": config.hop_samples,
        "channels": channels,
        "input_units": input_units,
        "output": "score",
        "threshold": float(result.threshold),
        "calibration": calibration(result.held_back_scores, result.fit),
        **({"debounce": result.debounce.to_meta()} if result.debounce is not None else {}),
        "score": {"definition": SCORE_DEFINITION, "weighting": config.weighting, "anomalous": "score > threshold"},
        "normalisation": {
            "applied": "inside the graph",
            "method": "front-end features standardised by their healthy mean and std (floored at 5 % of the median)",
        },
        "network": {
            "name": config.network,
            "options": dict(config.network_options),
            "parameters": count_parameters(detector),
        },
        "frontend": describe_frontend(detector.frontend, result.sample_rate_hz),
        "precision": "float32",
        "quantized_engine": None,
        "macs_per_window": count_macs(detector, (channels, config.window_samples)),
        "training": {
            "data_sha256": data_sha256 or arrays_sha256(result.split.train + result.split.held_back),
            "duration_s": round(result.duration_s, 3),
            "sources": list(sources),
            "train_windows": result.stats["train_windows"],
            "held_back": {
                "kind": result.split.kind,
                "recordings": result.split.held_back_recordings,
                "windows": int(result.held_back_scores.size),
                "false_window_rate": result.held_back_false_rate,
            },
            "config": config.to_json(),
            "train_seconds": round(float(result.stats["train_seconds"]), 2),
            "torch": torch.__version__,
        },
        "code_version": code_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def export_anomaly(result: LearnResult, meta: dict[str, Any], out: Path) -> Path:
    """Script the detector, write it with ``meta.json``, and load it back through the runtime loader."""
    module = torch.jit.script(result.detector.eval())
    save_torchscript(module, out, meta)
    loaded = load_model(out)
    logger.info("wrote %s (sha256 %s)", out, loaded.sha256[:12])
    return out
