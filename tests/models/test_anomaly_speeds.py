"""The unseen-speed report's helpers: its fast path is the exported detector's arithmetic; the selection rule."""

from __future__ import annotations

import numpy as np
import torch

from edge_agent.training.anomaly_speeds import MAX_FALSE_RATE, FastScorer, choose
from edge_agent.training.anomaly_train import AnomalyConfig, build_detector, fit_detector, frontend_features


def test_the_fast_scorer_gives_the_learned_excess_detector_s_scores() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((1, 40_000)).astype(np.float32) * (1 + 0.3 * i) for i in range(3)]
    config = AnomalyConfig(
        network="excess", frontend="envspread", window_samples=2048, hop_samples=1024, train_hop_samples=1024
    )
    detector = build_detector(config, 1, 16_000.0)
    fit_detector(detector, parts, config)
    features = frontend_features(detector, parts, 1024).flatten(1).numpy()
    tests = torch.from_numpy(rng.standard_normal((6, 1, 2048)).astype(np.float32))
    tests[3:, 0, :1024] *= 4.0  # a level swing inside the window: more than healthy
    with torch.inference_mode():
        expected = detector(tests).numpy()
        scorer = FastScorer([features])
        got = scorer(detector.frontend(tests).flatten(1).numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert got[3:].min() > got[:3].max()


def test_the_selection_prefers_auc_then_calibration_then_detection() -> None:
    scores = {
        "a": {"auc": 0.90, "false_rate": 0.0, "detection": 1.0},
        "b": {"auc": 0.99, "false_rate": MAX_FALSE_RATE + 0.05, "detection": 0.9},
        "c": {"auc": 0.988, "false_rate": 0.01, "detection": 0.6},
        "d": {"auc": 0.987, "false_rate": 0.015, "detection": 0.7},
    }
    assert choose(scores) == "d"  # a: AUC too low; b: too many false windows; d detects more than c
    assert choose({k: scores[k] for k in "ab"}) == "b"  # a is not within the AUC tie


def test_the_fast_scorer_gives_the_learned_consensus_detector_s_scores() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.standard_normal((1, 40_000)).astype(np.float32) * (1 + 0.3 * i) for i in range(3)]
    config = AnomalyConfig(
        network="consensus",
        frontend="blockspread",
        window_samples=8192,
        hop_samples=2048,
        train_hop_samples=2048,
        spread_bands=6,
    )
    detector = build_detector(config, 1, 16_000.0)
    fit_detector(detector, parts, config)
    features = frontend_features(detector, parts, 2048).flatten(1).numpy()
    tests = torch.from_numpy(rng.standard_normal((6, 1, 8192)).astype(np.float32))
    tests[3:] *= 1.0 + 0.8 * torch.sin(torch.arange(8192) / 100.0)  # modulated through the whole window
    with torch.inference_mode():
        expected = detector(tests).numpy()
        got = FastScorer([features], detector.frontend.feature_groups)(detector.frontend(tests).flatten(1).numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert got[3:].min() > got[:3].max()


def test_the_selection_puts_validation_false_alerts_before_false_windows_and_detection() -> None:
    scores = {
        "alerting": {"auc": 0.999, "false_rate": 0.005, "detection": 1.0, "false_alerts": 1},
        "quiet": {"auc": 0.997, "false_rate": 0.03, "detection": 0.8, "false_alerts": 0},
    }
    assert choose(scores) == "quiet"


def test_the_alerting_rules_from_the_cross_fitted_streams() -> None:
    from edge_agent.training.anomaly_speeds_select import alerting

    crossed = [np.array([0.0, 0.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0]), np.zeros(8)]  # one run of 3 above 1.0
    assert alerting(crossed, 1.0, "default") == (1.0, 3, 5)
    assert alerting(crossed, 1.0, "learned") == (1.0, 4, 6)  # 3 of 5 passes the run, 4 of 6 does not
    assert alerting(crossed, 1.0, "episode") == (2.0, 3, 5)  # above 2.0 the run keeps 2 windows
    assert alerting(crossed, 5.0, "episode") == (5.0, 3, 5)  # never lowered


def test_the_selection_counts_fault_clips_the_debounce_misses_as_wrong() -> None:
    scores = {
        "slow": {"auc": 0.999, "false_rate": 0.0, "detection": 1.0, "false_alerts": 0, "missed": 1},
        "alerting": {"auc": 0.999, "false_rate": 0.0, "detection": 0.9, "false_alerts": 1, "missed": 0},
        "right": {"auc": 0.998, "false_rate": 0.01, "detection": 0.8, "false_alerts": 0, "missed": 0},
    }
    assert choose(scores) == "right"
