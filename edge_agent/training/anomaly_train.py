"""Build and fit an :class:`~edge_agent.nn.autoencoders.AnomalyDetector` on healthy windows.

The front-end has no trainable weights, so features are computed once (in chunks, from strided
views of the recordings: no copy of overlapping windows), standardised with their healthy mean and
standard deviation (buffers of the exported graph), and the autoencoder is trained on them with Adam.
After training, the per-feature error weights are fitted (``weighting``):

- ``none``: ``w = 1``: squared error in healthy-z units, i.e. each feature's error divided by that
  feature's healthy variance;
- ``residual``: ``w_j = 1 / mean(r_j**2)`` over the training windows (normalised to mean 1): each
  feature's error divided by its healthy *reconstruction-error* variance, so features the network
  reconstructs well weigh more (a diagonal Mahalanobis distance of the residual).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from edge_agent.nn.anomaly_frontends import AnomalyFrontEnd
from edge_agent.nn.autoencoders import AnomalyDetector, get_autoencoder, is_trainable

logger = logging.getLogger(__name__)

WEIGHTINGS = ("none", "residual")
FEATURE_CHUNK = 512


@dataclass(frozen=True)
class AnomalyConfig:
    """Everything that defines a learned baseline (stored in ``meta.json``)."""

    network: str = "undercomplete"
    frontend: str = "logspec"
    level_invariant: bool = True
    window_samples: int = 2048
    hop_samples: int = 1024
    train_hop_samples: int = 256
    n_fft: int = 256
    n_bands: int = 32
    kurtosis_bands: int = 12
    spread_bands: int = 3  # bands of ``envspread`` besides the whole window
    network_options: dict[str, float] = field(default_factory=dict)
    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    weighting: str = "none"
    target_false_rate: float = 0.01
    threshold_method: str = "pot"
    holdout_fraction: float = 0.2
    cross_fit: bool = False  # threshold from cross-fitted scores of all the input (recordings, or time blocks)
    cross_fit_folds: int = 5  # time blocks when cross-fitting fewer than 3 recordings
    calibration_hop_samples: int = 0  # hop of the cross-fitted scores (0: hop_samples)
    speed_factors: tuple[float, ...] = ()  # training copies resampled to play this much faster (1.05: +5 %)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.window_samples < 16 or self.hop_samples < 1 or self.train_hop_samples < 1:
            raise ValueError(
                f"invalid windowing: window_samples={self.window_samples}, hop_samples={self.hop_samples}, "
                f"train_hop_samples={self.train_hop_samples}"
            )
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")

    @property
    def calibration_hop(self) -> int:
        return self.calibration_hop_samples or self.hop_samples

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def build_detector(config: AnomalyConfig, channels: int, sample_rate_hz: float) -> AnomalyDetector:
    front = AnomalyFrontEnd(
        config.frontend,
        window_samples=config.window_samples,
        sample_rate_hz=sample_rate_hz,
        level_invariant=config.level_invariant,
        n_fft=min(config.n_fft, config.window_samples),
        n_bands=config.n_bands,
        kurtosis_bands=config.kurtosis_bands,
        spread_bands=config.spread_bands,
    )
    torch.manual_seed(config.seed)
    options = dict(config.network_options)
    if config.network == "consensus":  # the median runs over the bands of each frame length
        options.setdefault("groups", front.feature_groups)
    network = get_autoencoder(config.network, in_channels=channels, in_features=front.out_features, **options)
    return AnomalyDetector(front, network, channels)


def window_view(samples: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """Windows ``(n, C, window_samples)`` of ``samples`` ``(C, length)`` as a strided view (no copy)."""
    if samples.shape[-1] < window_samples:
        return np.empty((0, samples.shape[0], window_samples), samples.dtype)
    view = np.lib.stride_tricks.sliding_window_view(samples, window_samples, axis=-1)  # (C, positions, W)
    return view[:, ::hop_samples].transpose(1, 0, 2)


def iter_windows(parts: Sequence[np.ndarray], window_samples: int, hop_samples: int) -> Iterator[torch.Tensor]:
    """Chunks of at most :data:`FEATURE_CHUNK` float32 windows over every part, in order."""
    for part in parts:
        view = window_view(part, window_samples, hop_samples)
        for start in range(0, len(view), FEATURE_CHUNK):
            yield torch.from_numpy(np.ascontiguousarray(view[start : start + FEATURE_CHUNK], dtype=np.float32))


def frontend_features(detector: AnomalyDetector, parts: Sequence[np.ndarray], hop_samples: int) -> torch.Tensor:
    """Un-standardised front-end features ``(n, C, F)`` of every window of ``parts``."""
    chunks = []
    with torch.inference_mode():
        for windows in iter_windows(parts, detector.window_samples, hop_samples):
            chunks.append(detector.frontend(windows))
    if not chunks:
        raise ValueError(f"no recording part holds a window of {detector.window_samples} samples")
    return torch.cat(chunks)


def scores_of(module: torch.nn.Module, parts: Sequence[np.ndarray], window_samples: int, hop: int) -> np.ndarray:
    """Scores of every window of ``parts`` (any module mapping windows to scores, e.g. a loaded file)."""
    with torch.inference_mode():
        out = [module(windows) for windows in iter_windows(parts, window_samples, hop)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.empty(0)


def fit_standardisation(detector: AnomalyDetector, features: torch.Tensor) -> None:
    """Set ``feature_mean``/``feature_std`` from healthy features; std floored at 5 % of its median."""
    mean = features.mean(dim=0, keepdim=True)
    std = features.std(dim=0, keepdim=True)
    floor = max(float(std.median()) * 0.05, 1e-6)
    detector.feature_mean.copy_(mean)
    detector.feature_std.copy_(std.clamp_min(floor))


def fit_error_weights(detector: AnomalyDetector, z: torch.Tensor, weighting: str) -> None:
    if weighting == "none":
        detector.error_weight.fill_(1.0)
        return
    with torch.inference_mode():
        residual = torch.cat([(detector.autoencoder(c) - c).pow(2) for c in z.split(1024)]).mean(dim=0, keepdim=True)
    residual = residual.clamp_min(float(residual.mean()) * 0.01)
    weight = 1.0 / residual
    detector.error_weight.copy_(weight / weight.mean())


def train_autoencoder(
    detector: AnomalyDetector, z: torch.Tensor, config: AnomalyConfig, *, progress: bool = False
) -> list[float]:
    """Adam on random batches of ``z``; returns the loss every 100 steps."""
    network = detector.autoencoder
    if not is_trainable(network):  # e.g. ``excess``: nothing to fit beyond the standardisation
        network.eval()
        with torch.no_grad():
            return [float(network.loss(z[: config.batch_size])[0])]
    network.train()
    optimiser = torch.optim.Adam(network.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    steps = range(config.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="learning", unit="step", leave=False)
    history: list[float] = []
    for step in steps:
        picks = torch.randint(len(z), (min(config.batch_size, len(z)),), generator=generator)
        loss, _ = network.loss(z[picks], generator=generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == config.steps - 1:
            history.append(float(loss.detach()))
    network.eval()
    return history


def speed_copies(parts: Sequence[np.ndarray], factors: Sequence[float]) -> list[np.ndarray]:
    """``parts`` plus copies whose frequencies are scaled by each factor (polyphase resampling, scipy)."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    out = list(parts)
    for factor in factors:
        ratio = Fraction(factor).limit_denominator(100)  # play ``factor`` times faster: fewer samples
        out += [resample_poly(p, ratio.denominator, ratio.numerator, axis=-1).astype(np.float32) for p in parts]
    return out


def fit_detector(
    detector: AnomalyDetector, parts: Sequence[np.ndarray], config: AnomalyConfig, *, progress: bool = False
) -> dict[str, object]:
    """Fit standardisation, autoencoder and error weights on the healthy ``parts`` ``[(C, n), ...]``."""
    started = time.perf_counter()
    features = frontend_features(detector, speed_copies(parts, config.speed_factors), config.train_hop_samples)
    fit_standardisation(detector, features)
    with torch.no_grad():
        z = (features - detector.feature_mean) / detector.feature_std
    history = train_autoencoder(detector, z, config, progress=progress)
    fit_error_weights(detector, z, config.weighting)
    detector.eval()
    seconds = time.perf_counter() - started
    logger.info("trained %s on %d windows in %.1f s (loss %.4f)", config.network, len(z), seconds, history[-1])
    return {"train_windows": len(z), "train_seconds": seconds, "loss_history": history}
