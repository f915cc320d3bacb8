"""The debounce learned with the threshold (edge_agent/training/anomaly_debounce.py): the rule on hand-made
streams, and ``learn`` on a motor whose healthy recordings hold a stretch of livelier running."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edge_agent.training.anomaly_debounce import alerts, first_alert_s, learn_debounce, streams_at_hop
from edge_agent.training.anomaly_learn import anomaly_meta, learn
from edge_agent.training.anomaly_train import AnomalyConfig, scores_of
from tests.models.test_blockspread import HOP, RATE_HZ, WINDOW, motor_like


def run_at(length: int, start: int, samples: int = 40) -> np.ndarray:
    stream = np.zeros(samples)
    stream[start : start + length] = 2.0
    return stream


def test_the_smallest_quiet_n_at_the_default_share_of_votes() -> None:
    assert learn_debounce([run_at(0, 0), run_at(1, 5)], 1.0).confirm_n == 5  # nothing to pass: the default
    three = learn_debounce([run_at(3, 10), run_at(1, 2)], 1.0)  # a run of 3 passes 3 of 5
    assert (three.confirm_k, three.confirm_n, three.reached) == (4, 6, True)
    four = learn_debounce([run_at(4, 10)], 1.0)  # 4 of 6 passes a run of 4; 5 of 7 does not
    assert (four.confirm_k, four.confirm_n) == (5, 7)
    assert not alerts(run_at(4, 10) > 1.0, 5, 7) and alerts(run_at(5, 10) > 1.0, 5, 7)
    never = learn_debounce([run_at(40, 0)], 1.0, max_n=8)
    assert (never.confirm_k, never.confirm_n, never.reached) == (5, 8, False)
    assert (never.streams, never.windows) == (1, 40)


def test_streams_at_the_agent_s_hop_and_the_detection_delay() -> None:
    fine = np.arange(10.0)  # scored every 512 samples; the agent scores every 1024: two phases
    assert [s.tolist() for s in streams_at_hop([fine], 512, 1024)] == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    with pytest.raises(ValueError, match="multiple"):
        streams_at_hop([fine], 768, 1024)
    flags = np.ones(20, bool)
    assert first_alert_s(flags, 3, 5, 0.128, 1.024) == pytest.approx(2 * 0.128 + 1.024)
    assert first_alert_s(flags, 5, 7, 0.128, 1.024) == pytest.approx(4 * 0.128 + 1.024)
    assert first_alert_s(np.zeros(20, bool), 3, 5, 0.128, 1.024) is None


def livelier(x: np.ndarray, at: int, length: int, rpm: float, depth: float = 0.3) -> np.ndarray:
    """``x`` with ``length`` samples of livelier running (modulated at the rotation rate) from ``at``."""
    out = x.copy()
    t = np.arange(length) / RATE_HZ
    out[at : at + length] *= 1.0 + depth * np.sin(2 * math.pi * rpm / 60.0 * t)
    return out


def test_a_stretch_of_livelier_healthy_running_raises_no_alert_with_the_learned_debounce() -> None:
    """The defect (issue 10, M1 1550 and 2000 RPM): 0.6 s of livelier running in a healthy recording fills
    a run of overlapping 1 s windows, and 3 of 5 passes it. One learned recording holds such a stretch; the
    cross-fitted scores show its run, and the learned debounce is longer than it."""
    stretch = 9600  # 0.6 s
    recordings = []
    for i, rpm in enumerate((1400, 1600, 1800, 2000)):
        x = motor_like(rpm, 96 * HOP, seed=i)
        recordings.append((livelier(x, 30 * HOP, stretch, rpm) if i == 1 else x)[None, :])
    config = AnomalyConfig(
        network="consensus",
        frontend="blockspread",
        window_samples=WINDOW,
        hop_samples=HOP,
        train_hop_samples=HOP,
        cross_fit=True,
    )
    result = learn(recordings, RATE_HZ, config)
    assert result.debounce is not None and result.debounce.reached
    k, n = result.debounce.confirm_k, result.debounce.confirm_n
    assert k > 3 and anomaly_meta(result, name="m")["debounce"]["confirm_n"] == n
    module = torch.jit.script(result.detector.eval())
    healthy = livelier(motor_like(1700.0, 60 * HOP, seed=9), 25 * HOP, stretch, 1700.0)[None, :]
    fault = motor_like(1700.0, 60 * HOP, depth=0.5, seed=9)[None, :]
    healthy_flags = scores_of(module, [healthy], WINDOW, HOP) > result.threshold
    fault_flags = scores_of(module, [fault], WINDOW, HOP) > result.threshold
    assert alerts(healthy_flags, 3, 5)  # the default debounce alerts on the healthy stretch
    assert not alerts(healthy_flags, k, n)
    assert alerts(fault_flags, k, n)
