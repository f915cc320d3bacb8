"""Choosing the CWRU threshold procedure on the learning part only (a nested replica of the report's split).

    nice -n 10 python -m edge_agent.training.anomaly_calibration [--data DIR] [--seeds 0,1,2] [--out FILE]

The report learns on the healthy record's first 60 % and checks the stored threshold on its last 40 %.
This module never reads that last 40 %: it cuts the *learning part* the same way (its first 60 %
learns, its last 40 % plays the later healthy data) and compares, at every SNR and seed, the false-window
rate on that pseudo-later part of thresholds set by

- ``holdout``: the last 25 % of the pseudo-learning part held back in time (the report's old procedure);
- ``cross-fit k``: ``learn``'s cross-fitting in ``k`` contiguous time blocks (guard gap of one window),
  the scores taken at hop ``h``;

each with the tail fits of :mod:`edge_agent.training.anomaly_threshold` at a few target rates. The
report then uses the procedure chosen here (see ``docs/results/anomaly.md``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_agent.training import anomaly_eval as ev
from edge_agent.training.anomaly_learn import time_folds
from edge_agent.training.anomaly_threshold import METHODS, false_rate, fit_threshold
from edge_agent.training.anomaly_train import build_detector, fit_detector, scores_of
from edge_agent.training.data import load_cwru

logger = logging.getLogger(__name__)

NETWORKS = ("undercomplete", "denoising")
FOLDS = (5, 8)
HOPS = (256, 64)
RATES = (0.01, 0.005)
PSEUDO_LEARN_FRACTION = 0.6


def nested_run(learning: np.ndarray, network: str, snr_db: float | None, seed: int) -> list[dict[str, Any]]:
    """Every procedure on one (network, SNR, seed): false rates on the pseudo-later part of ``learning``."""
    if snr_db is not None:
        rng = np.random.default_rng(1000 + seed)
        sigma = float(np.sqrt(np.mean(learning.astype(np.float64) ** 2) / 10 ** (snr_db / 10)))
        learning = (learning + sigma * rng.standard_normal(learning.shape)).astype(np.float32)
    cut = round(learning.shape[-1] * PSEUDO_LEARN_FRACTION)
    early, later = learning[:, :cut], learning[:, cut:]
    config = ev.Variant(network, "logspec", True).config(replace(ev.CWRU_BASE, cross_fit=False), seed)
    window, hop = config.window_samples, config.hop_samples
    shipped = build_detector(config, 1, 12_000)
    fit_detector(shipped, [early], config)
    later_scores = scores_of(shipped, [later], window, hop)
    held_cut = round(early.shape[-1] * (1 - config.holdout_fraction))
    held_model = build_detector(config, 1, 12_000)
    fit_detector(held_model, [early[:, :held_cut]], config)
    candidates = {("holdout", 0, hop): scores_of(held_model, [early[:, held_cut:]], window, hop)}
    for folds in FOLDS:
        per_hop: dict[int, list[np.ndarray]] = {h: [] for h in HOPS}
        for train, held in time_folds([early], window, folds):  # as learn's cross-fitting, scored at every hop
            model = build_detector(config, 1, 12_000)
            fit_detector(model, train, config)
            for score_hop in HOPS:
                per_hop[score_hop].append(scores_of(model, held, window, score_hop))
        for score_hop, parts in per_hop.items():
            candidates[("cross-fit", folds, score_hop)] = np.concatenate(parts)
    rows = []
    for (procedure, folds, score_hop), scores in candidates.items():
        for method, rate in itertools.product(METHODS, RATES):
            fit = fit_threshold(scores, rate, method)
            rows.append(
                {
                    "network": network,
                    "snr": "clean" if snr_db is None else f"{snr_db:g} dB",
                    "seed": seed,
                    "procedure": procedure,
                    "folds": folds,
                    "score_hop": score_hop,
                    "method": method,
                    "fitted_as": fit.method,
                    "target_false_rate": rate,
                    "calibration_windows": int(scores.size),
                    "later_windows": int(later_scores.size),
                    "false_rate": false_rate(later_scores, fit.threshold),
                }
            )
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per procedure: mean false rate at every SNR (over networks and seeds), the worst SNR and its spread."""
    keys = ("procedure", "folds", "score_hop", "method", "target_false_rate")
    out = []
    for values in dict.fromkeys(tuple(r[k] for k in keys) for r in rows):
        picked = [r for r in rows if tuple(r[k] for k in keys) == values]
        per_snr = {
            s: [r["false_rate"] for r in picked if r["snr"] == s] for s in dict.fromkeys(r["snr"] for r in picked)
        }
        means = {s: float(np.mean(v)) for s, v in per_snr.items()}
        entry = dict(zip(keys, values, strict=True))
        entry.update(
            {
                "fitted_as": sorted({r["fitted_as"] for r in picked}),
                "calibration_windows": int(np.median([r["calibration_windows"] for r in picked])),
                "false_rate_by_snr": means,
                "worst_snr_false_rate": max(means.values()),
                "mean_false_rate": float(np.mean([r["false_rate"] for r in picked])),
                "runs_over_2pct": int(sum(r["false_rate"] > 0.02 for r in picked)),
                "runs": len(picked),
            }
        )
        out.append(entry)
    return sorted(out, key=lambda e: (e["worst_snr_false_rate"], e["mean_false_rate"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding cwru/ (default: $EDGE_AGENT_DATA)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="docs/results/anomaly_calibration.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("edge_agent.training.anomaly_train").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    dataset = load_cwru(args.data, fractions=ev.CWRU_FRACTIONS)
    healthy = [s.samples for name in ("train", "val") for s in dataset.splits[name] if s.label == 0]
    learning = np.concatenate(healthy, axis=1)  # the report's learning part; its later 40 % is never read
    rows = []
    for network, snr, seed in itertools.product(NETWORKS, ev.CWRU_SNRS_DB, map(int, args.seeds.split(","))):
        rows += nested_run(learning, network, snr, seed)
        logger.info("nested %s %s seed %d", network, rows[-1]["snr"], seed)
    summary = summarise(rows)
    Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    for e in summary[:12]:
        print(json.dumps({k: v for k, v in e.items() if k != "false_rate_by_snr"}), e["false_rate_by_snr"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
