"""Experiments of the anomaly report: CWRU (noise floor at an SNR) and BLDC motor sound (speeds held out).

Every experiment learns through :func:`edge_agent.training.anomaly_learn.learn` (the same split and
threshold code as ``edge-agent learn``) and scores with the detector. Baselines on the same splits
and the same held-back data for their thresholds: window RMS, window kurtosis, and PCA reconstruction
error and Mahalanobis distance (Ledoit-Wolf covariance) on the detector's standardised features.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from scipy import stats
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from edge_agent.training.anomaly_learn import LearnResult, learn, time_folds
from edge_agent.training.anomaly_threshold import false_rate, fit_threshold
from edge_agent.training.anomaly_train import AnomalyConfig, iter_windows, scores_of
from edge_agent.training.audio_data import BldcDataset
from edge_agent.training.data import CwruDataset

logger = logging.getLogger(__name__)

CWRU_FRACTIONS = (0.45, 0.15, 0.4)  # learning (0.45 + 0.15, cross-fitted), later healthy test
CWRU_SNRS_DB: tuple[float | None, ...] = (None, 0.0, -5.0, -10.0)
# The threshold procedure was chosen on the learning part only (edge_agent.training.anomaly_calibration):
# cross-fitting in 5 time blocks, scores at hop 64, peaks over threshold at a 0.5 % target.
CWRU_BASE = AnomalyConfig(
    window_samples=1024,
    hop_samples=256,
    train_hop_samples=64,
    holdout_fraction=0.25,  # only without cross-fitting (the old procedure, compared in anomaly_calibration)
    cross_fit=True,
    cross_fit_folds=5,
    calibration_hop_samples=64,
    target_false_rate=0.005,
)
MOTOR_BASE = AnomalyConfig(window_samples=4096, hop_samples=2048, train_hop_samples=512, n_fft=1024, n_bands=64)
MOTOR_SPEED_FOLDS = ((1400,), (1450,), (1550,), (1650,), (1950,), (2000,))  # leave one speed out
DEBOUNCE_K, DEBOUNCE_N = 3, 5  # the agent's default confirm_k of confirm_n
BASELINES = ("rms", "kurtosis", "pca", "mahalanobis")


@dataclass(frozen=True)
class Variant:
    network: str
    frontend: str
    level_invariant: bool
    options: dict[str, float] = field(default_factory=dict)
    cross_fit: bool = False
    weighting: str = "none"  # per-feature error weights (anomaly_train.WEIGHTINGS)

    @property
    def name(self) -> str:
        weighting = "" if self.weighting == "none" else f"+{self.weighting}"
        suffix = f"{'' if self.level_invariant else '-abs'}{'+cross-fit' * self.cross_fit}"
        return f"{self.network}{weighting}/{self.frontend}{suffix}"

    def config(self, base: AnomalyConfig, seed: int) -> AnomalyConfig:
        return replace(
            base,
            network=self.network,
            frontend=self.frontend,
            level_invariant=self.level_invariant,
            network_options=dict(self.options),
            cross_fit=self.cross_fit or base.cross_fit,
            weighting=self.weighting,
            seed=seed,
        )


def auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(labels, np.r_[negatives, positives]))


def debounced_alert(flags: np.ndarray, k: int = DEBOUNCE_K, n: int = DEBOUNCE_N) -> bool:
    """Whether ``k`` of any ``n`` consecutive windows are anomalous (the agent's k-of-n confirmation)."""
    if len(flags) < n:
        return bool(flags.sum() >= k)
    return bool((np.convolve(flags.astype(int), np.ones(n, int), mode="valid") >= k).any())


class Baselines:
    """The simple baselines, fitted on the learner's training part; thresholds from the same healthy scores.

    With ``learn``'s cross-fitting in time, PCA and Mahalanobis are cross-fitted on the same time blocks
    (each block scored by the baseline fitted on the others, less the guard gap), RMS and kurtosis (nothing
    to fit) score the blocks directly; without it, the held-back part is scored.
    """

    def __init__(self, result: LearnResult) -> None:
        self.detector = result.detector
        self.config = result.config
        self.pca, self.covariance = self._fit(result.split.train)
        if result.split.kind == "cross-fit-time":
            folds = time_folds(result.split.train, self.config.window_samples, self.config.cross_fit_folds)
            per_fold = [self.scores(held, *self._fit(train), self.config.calibration_hop) for train, held in folds]
            held = {name: np.concatenate([s[name] for s in per_fold]) for name in per_fold[0]}
        else:
            held = self.scores(result.split.held_back)
        self.thresholds = {name: fit_threshold(held[name], self.config.target_false_rate).threshold for name in held}

    def _fit(self, parts: Sequence[np.ndarray]) -> tuple[PCA, LedoitWolf]:
        z = self._features(parts, self.config.train_hop_samples)
        return PCA(n_components=min(8, z.shape[1] - 1), random_state=0).fit(z), LedoitWolf().fit(z)

    def _features(self, parts: Sequence[np.ndarray], hop: int) -> np.ndarray:
        with torch.inference_mode():
            windows = iter_windows(parts, self.config.window_samples, hop)
            chunks = [self.detector.features(w).flatten(1) for w in windows]
        return torch.cat(chunks).numpy().astype(np.float64)

    def scores(
        self,
        parts: Sequence[np.ndarray],
        pca: PCA | None = None,
        covariance: LedoitWolf | None = None,
        hop: int | None = None,
    ) -> dict[str, np.ndarray]:
        pca = self.pca if pca is None else pca
        covariance = self.covariance if covariance is None else covariance
        hop = hop or self.config.hop_samples
        windows = np.concatenate([w.numpy() for w in iter_windows(parts, self.config.window_samples, hop)])
        centred = windows - windows.mean(axis=-1, keepdims=True)
        z = self._features(parts, hop)
        reconstructed = pca.inverse_transform(pca.transform(z))
        return {
            "rms": np.sqrt((centred**2).mean(axis=(1, 2))),
            "kurtosis": stats.kurtosis(windows, axis=-1).mean(axis=1),
            "pca": ((z - reconstructed) ** 2).mean(axis=1),
            "mahalanobis": covariance.mahalanobis(z),
        }


# ---------------------------------------------------------------- CWRU


def _floor_noise(parts: Sequence[np.ndarray], sigma: float, rng: np.random.Generator) -> list[np.ndarray]:
    return [(p + sigma * rng.standard_normal(p.shape)).astype(np.float32) for p in parts]


def cwru_run(
    dataset: CwruDataset, variant: Variant, snr_db: float | None, seed: int, *, baselines: bool = False
) -> dict[str, Any]:
    """One model on the healthy record's early part; AUC of later healthy windows against every fault class.

    The noise is a stationary white floor: its power is set from the healthy learning data at
    ``snr_db`` and the same floor is added to every test record (healthy and faults).
    """
    healthy = {name: [s.samples for s in dataset.splits[name] if s.label == 0] for name in ("train", "val", "test")}
    learn_part = [np.concatenate(healthy["train"] + healthy["val"], axis=1)]
    faults_val = {c: [s.samples for s in dataset.splits["val"] if s.label == c] for c in range(1, 10)}
    faults_test = {c: [s.samples for s in dataset.splits["test"] if s.label == c] for c in range(1, 10)}
    test_healthy = healthy["test"]
    if snr_db is not None:
        rng = np.random.default_rng(1000 + seed)
        sigma = float(np.sqrt(np.mean(learn_part[0].astype(np.float64) ** 2) / 10 ** (snr_db / 10)))
        learn_part, test_healthy = _floor_noise(learn_part, sigma, rng), _floor_noise(test_healthy, sigma, rng)
        faults_val = {c: _floor_noise(p, sigma, rng) for c, p in faults_val.items()}
        faults_test = {c: _floor_noise(p, sigma, rng) for c, p in faults_test.items()}
    config = variant.config(CWRU_BASE, seed)
    result = learn(learn_part, dataset.sample_rate_hz, config)
    hop = config.hop_samples
    healthy_scores = scores_of(result.detector, test_healthy, config.window_samples, hop)
    row: dict[str, Any] = {
        "variant": variant.name,
        "snr": "clean" if snr_db is None else f"{snr_db:g} dB",
        "seed": seed,
        "threshold": result.threshold,
        "held_back_false_rate": result.held_back_false_rate,
        "false_rate": false_rate(healthy_scores, result.threshold),
        "train_seconds": result.stats["train_seconds"],
        "healthy_test_windows": len(healthy_scores),
        "held_back_windows": len(result.held_back_scores),
    }
    names = dataset.class_names
    for c in range(1, 10):
        val = scores_of(result.detector, faults_val[c], config.window_samples, hop)
        test = scores_of(result.detector, faults_test[c], config.window_samples, hop)
        row[f"val_auc/{names[c]}"] = auc(result.held_back_scores, val)
        row[f"auc/{names[c]}"] = auc(healthy_scores, test)
        row[f"detected/{names[c]}"] = false_rate(test, result.threshold)
    if baselines:
        base = Baselines(result)
        healthy_base = base.scores(test_healthy)
        for name in BASELINES:
            row[f"{name}:false_rate"] = false_rate(healthy_base[name], base.thresholds[name])
        for c in range(1, 10):
            fault_base = base.scores(faults_test[c])
            for name in BASELINES:
                row[f"{name}:auc/{names[c]}"] = auc(healthy_base[name], fault_base[name])
    return row


# ---------------------------------------------------------------- motor sound


def motor_runs(dataset: BldcDataset, motor: str, variant: Variant, seed: int, *, baselines: bool = False) -> list:
    """One model per speed fold: healthy clips at the other speeds learned (one whole clip held back)."""
    rows = []
    for held_speeds in MOTOR_SPEED_FOLDS:
        clips = [c for c in dataset.clips if c.motor == motor and c.condition in ("healthy", "propeller")]
        train = [c.samples[None, :] for c in clips if c.condition == "healthy" and c.rpm not in held_speeds]
        tests = [c for c in clips if c.rpm in held_speeds]
        config = variant.config(MOTOR_BASE, seed)
        result = learn(train, dataset.sample_rate_hz, config)
        base = Baselines(result) if baselines else None
        for clip in tests:
            scores = scores_of(result.detector, [clip.samples[None, :]], config.window_samples, config.hop_samples)
            row = {
                "variant": variant.name,
                "motor": motor,
                "fold": "+".join(map(str, held_speeds)),
                "seed": seed,
                "clip": clip.path,
                "rpm": clip.rpm,
                "anomalous": clip.condition != "healthy",
                "scores": scores.tolist(),
                "threshold": result.threshold,
                "held_back_false_rate": result.held_back_false_rate,
                "train_seconds": result.stats["train_seconds"],
            }
            if base is not None:
                for name, values in base.scores([clip.samples[None, :]]).items():
                    row[f"{name}:scores"] = values.tolist()
                    row[f"{name}:threshold"] = base.thresholds[name]
            rows.append(row)
    return rows


def motor_summary(rows: list[dict[str, Any]], prefix: str = "") -> dict[str, float]:
    """AUC (per fold, averaged over folds with both classes), rates at the threshold, debounced clip alerts
    (k of n: a row's ``confirm_k``/``confirm_n`` where it has them, the agent's default otherwise)."""
    key, threshold_key = f"{prefix}scores", f"{prefix}threshold"
    aucs, flags_h, flags_f, false_alerts, missed, healthy_clips, fault_clips = [], [], [], 0, 0, 0, 0
    for fold in sorted({r["fold"] for r in rows}):
        fold_rows = [r for r in rows if r["fold"] == fold]
        neg = np.concatenate([r[key] for r in fold_rows if not r["anomalous"]] or [np.empty(0)])
        pos = np.concatenate([r[key] for r in fold_rows if r["anomalous"]] or [np.empty(0)])
        if len(neg) and len(pos):
            aucs.append(auc(neg, pos))
        for r in fold_rows:
            flags = np.asarray(r[key]) > r[threshold_key]
            alert = debounced_alert(flags, r.get("confirm_k", DEBOUNCE_K), r.get("confirm_n", DEBOUNCE_N))
            if r["anomalous"]:
                flags_f.append(flags)
                fault_clips, missed = fault_clips + 1, missed + (not alert)
            else:
                flags_h.append(flags)
                healthy_clips, false_alerts = healthy_clips + 1, false_alerts + alert
    return {
        "auc": float(np.mean(aucs)),
        "false_rate": float(np.concatenate(flags_h).mean()),
        "detection_rate": float(np.concatenate(flags_f).mean()),
        "healthy_clips_with_alert": f"{false_alerts}/{healthy_clips}",
        "fault_clips_missed": f"{missed}/{fault_clips}",
    }
