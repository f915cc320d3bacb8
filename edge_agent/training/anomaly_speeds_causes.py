"""Measured causes of the unseen-speed page's misses (numbers on the page, not guesses).

- :func:`band_liveliness`: per healthy clip of a motor, the ``blockspread`` features (16384-sample windows,
  6 bands, the longest frame length) as medians over the clip's windows: how modulated each band is. A
  band where one clip is livelier than every other healthy clip of its motor is what a one-sided score
  flags when that clip is held out (the M1 1400 RPM clip, the only one recorded at 44.1 kHz).
- :func:`lively_stretches`: per healthy clip, the hops (128 ms) whose envelope spread (log standard
  deviation of the 128-sample-frame log envelope over the hop) is more than :data:`LIVELY_LOG` above the
  clip's median in at least 3 of the 4 bands (whole window and 3 bands): a knock, a surge, a stretch of
  livelier running, the events that can fill the 3 of 5 windows a debounced alert needs.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import torch

from edge_agent.nn.anomaly_frontends import SPREAD_LOW_HZ, AnomalyFrontEnd
from edge_agent.nn.blockspread import band_bins
from edge_agent.training.audio_data import BldcDataset

logger = logging.getLogger(__name__)

LIVELY_LOG = 0.4  # log units: 1.5 times the clip's median spread
HOP_SAMPLES = 2048
FRAME_SAMPLES = 128


def _healthy(dataset: BldcDataset, motor: str) -> list[Any]:
    return sorted((c for c in dataset.clips if (c.motor, c.condition) == (motor, "healthy")), key=lambda c: c.rpm)


def band_liveliness(dataset: BldcDataset, motor: str, bands: int = 6) -> dict[str, Any]:
    """``{"bands_hz": [...], "clips": {rpm: [per band]}, "livelier_than_all": {rpm: [band indices]}}``."""
    window = 16384
    front = AnomalyFrontEnd(
        "blockspread", window_samples=window, sample_rate_hz=dataset.sample_rate_hz, spread_bands=bands
    )
    groups = front.feature_groups
    clips = {}
    with torch.inference_mode():
        for clip in _healthy(dataset, motor):
            windows = np.lib.stride_tricks.sliding_window_view(clip.samples, window)[::HOP_SAMPLES]
            feats = front(torch.from_numpy(np.ascontiguousarray(windows[:, None, :]))).reshape(len(windows), -1, groups)
            clips[clip.rpm] = np.median(feats[:, :, -1].numpy(), axis=0)  # the longest frame, per band
    livelier = {
        rpm: [b for b in range(len(v)) if all(v[b] > o[b] for r, o in clips.items() if r != rpm)]
        for rpm, v in clips.items()
    }
    edges = np.geomspace(min(SPREAD_LOW_HZ, dataset.sample_rate_hz / 8.0), dataset.sample_rate_hz / 2.0, bands + 1)
    names = ["whole window"] + [f"{lo / 1e3:.1f}-{hi / 1e3:.1f} kHz" for lo, hi in itertools.pairwise(edges)]
    return {
        "bands": names,
        "clips": {str(r): [round(float(x), 2) for x in v] for r, v in clips.items()},
        "livelier_than_all": {str(r): b for r, b in livelier.items() if b},
    }


def lively_stretches(dataset: BldcDataset, motor: str) -> dict[str, list[float]]:
    """Per healthy clip (by RPM): start times (s) of the hops livelier than the clip's median in >= 3 of 4 bands."""
    rate = dataset.sample_rate_hz
    edges = [(0.0, rate / 2.0 + 1.0), *itertools.pairwise(np.geomspace(SPREAD_LOW_HZ, rate / 2.0, 4))]
    bank = band_bins(FRAME_SAMPLES, rate, edges)
    per_hop = HOP_SAMPLES // FRAME_SAMPLES
    out = {}
    for clip in _healthy(dataset, motor):
        frames = clip.samples[: len(clip.samples) // HOP_SAMPLES * HOP_SAMPLES].reshape(-1, FRAME_SAMPLES)
        log_envelope = 0.5 * np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 @ bank + 1e-10)  # (frames, 4)
        spread = 0.5 * np.log(log_envelope.reshape(-1, per_hop, len(edges)).var(axis=1) + 1e-12)  # (hops, 4)
        lively = ((spread - np.median(spread, axis=0)) > LIVELY_LOG).sum(axis=1) >= 3
        out[str(clip.rpm)] = [round(float(i) * HOP_SAMPLES / rate, 3) for i in np.flatnonzero(lively)]
    return out


def causes(dataset: BldcDataset, motors: tuple[str, ...]) -> dict[str, Any]:
    return {
        m: {"band_liveliness": band_liveliness(dataset, m), "lively_stretches": lively_stretches(dataset, m)}
        for m in motors
    }
