"""Parts of the anomaly report: baselines on a cross-fitted split, and the goals read from the other results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_agent.training.anomaly_eval import Baselines
from edge_agent.training.anomaly_goals import LEARNING_SECTION, learning_benchmark_goal, unseen_speed_goals
from edge_agent.training.anomaly_learn import learn
from edge_agent.training.anomaly_threshold import false_rate
from edge_agent.training.anomaly_train import AnomalyConfig


def tone(samples: int, seed: int, harmonic: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 8000
    x = np.sin(2 * np.pi * 440 * t) + harmonic * np.sin(2 * np.pi * 1320 * t) + 0.05 * rng.standard_normal(samples)
    return x.astype(np.float32)[None, :]


def test_baselines_of_a_cross_fitted_recording_take_their_thresholds_from_every_time_block() -> None:
    """Before, the baselines scored ``split.held_back``, which cross-fitting leaves empty: they could not run."""
    config = AnomalyConfig(
        window_samples=256, hop_samples=128, train_hop_samples=64, steps=30, cross_fit=True, cross_fit_folds=4
    )
    result = learn([tone(20_000, 0)], 8000, config)
    assert result.split.held_back == []
    base = Baselines(result)
    assert set(base.thresholds) == {"rms", "kurtosis", "pca", "mahalanobis"}
    assert all(np.isfinite(t) for t in base.thresholds.values())
    changed = base.scores([tone(8000, 1, harmonic=0.5)])
    assert false_rate(changed["pca"], base.thresholds["pca"]) > 0.9


def test_the_learning_benchmark_goal_reads_the_benchmark_table(tmp_path: Path) -> None:
    table = (
        f"# Benchmarks\n\n{LEARNING_SECTION}\n\nsome text\n\n"
        "| phase | seconds | other sensors' windows/s (per sensor) | windows dropped | mean latency |\n"
        "|---|---|---|---|---|\n"
        "| baseline (no learning) | 30.0 | 91.3 (11.41) | 0 | 15.4 ms |\n"
        "| trainer process runs | 11.5 | 91.3 (11.41) | {dropped} | 15.3 ms |\n"
        "\n## Next section\n| a | 1 | 2 (3) | 4 |\n"
    )
    path = tmp_path / "benchmarks.md"
    path.write_text(table.format(dropped=0))
    _, met, text = learning_benchmark_goal(path)
    assert met and "11.41" in text and "0 windows dropped" in text
    path.write_text(table.format(dropped=3))
    assert not learning_benchmark_goal(path)[1]
    path.write_text("# Benchmarks\n")
    assert learning_benchmark_goal(path)[1:] == (False, "not measured")


def test_the_unseen_speed_goals_come_from_its_pooled_results(tmp_path: Path) -> None:
    def motor(auc: float, false: float) -> dict:
        pooled = {"auc": auc, "false_rate": false, "detection_rate": 0.95}
        pooled |= {"healthy_clips_with_alert": "0/6", "fault_clips_missed": "0/4"}
        choices = {"1400": {"chosen": "consensus/blockspread (16384 samples, 3 bands)"}}
        return {"nested": {"pooled": pooled, "folds": [{"auc": auc - 0.01}, {"auc": None}], "choices": choices}}

    path = tmp_path / "anomaly_unseen_speeds.json"
    path.write_text(json.dumps({"motors": {"M1": motor(0.99, 0.01), "M2": motor(0.97, 0.05)}}))
    auc, false, flagged, debounced = unseen_speed_goals(path)
    assert auc[1] and "M2 0.970 (lowest fold 0.960)" in auc[2]
    assert "(consensus/blockspread, cross-fitted threshold, chosen per fold" in auc[0]  # the detector the page chose
    assert not false[1] and "M2 5.0 %" in false[2]
    assert flagged[1] and debounced[1]
    assert unseen_speed_goals(tmp_path / "missing.json") == []


def test_a_weighted_variant_keeps_its_front_end_in_the_name_and_passes_the_weighting_on() -> None:
    from edge_agent.training.anomaly_eval import CWRU_BASE, Variant

    variant = Variant("denoising", "logspec", True, weighting="residual")
    assert variant.name == "denoising+residual/logspec"  # the report groups networks by the part after "/"
    config = variant.config(CWRU_BASE, 2)
    assert (config.network, config.weighting, config.seed, config.cross_fit) == ("denoising", "residual", 2, True)
    assert Variant("conv", "logspec", False).config(CWRU_BASE, 0).weighting == "none"
