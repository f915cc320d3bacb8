"""The ingress change detector (edge_agent.sources.change): warm-up, baseline, threshold, hold, freezing, rebase."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from edge_agent.sources import change
from edge_agent.sources.change import REBASE_S, WARMUP_MESSAGES, ChangeDetector, SourceChange, features

BASE = np.random.default_rng(3).normal(0.0, 1.0, 1024).astype(np.float32)
PERIOD_S = 1024 / 12000


def steady(detector: ChangeDetector, count: int, t_s: float = 0.0, sensor: str = "p") -> float:
    """``count`` messages of one signal (levels 1.0 / 1.001 in turn: a spread below the floor); returns the time."""
    for k in range(count):
        assert detector.observe(sensor, BASE * (1.0 + 0.001 * (k % 2)), t_s) is None
        t_s += PERIOD_S
    return t_s


def test_no_mark_during_the_warm_up_then_a_level_change_is_marked() -> None:
    detector = ChangeDetector(10.0)
    assert all(detector.observe("p", BASE * 50.0**k, k * PERIOD_S) is None for k in range(WARMUP_MESSAGES))
    detector = ChangeDetector(10.0)
    t_s = steady(detector, WARMUP_MESSAGES + 5)
    score = detector.observe("p", BASE * 4.0, t_s)
    assert score is not None and score == pytest.approx(math.log(4.0) / change.SPREAD_FLOOR[0], rel=0.02)


def test_the_threshold_counts_spreads_of_the_sensors_own_baseline() -> None:
    shift = math.exp(5 * change.SPREAD_FLOOR[0])  # 5 spreads (the floor: this stream is steadier than it)
    for threshold, marked in ((10.0, False), (4.0, True)):
        detector = ChangeDetector(threshold)
        t_s = steady(detector, WARMUP_MESSAGES + 5)
        assert (detector.observe("p", BASE * shift, t_s) is not None) is marked
    other = ChangeDetector(10.0)  # each sensor has its own baseline: a loud sensor is no change
    steady(other, WARMUP_MESSAGES, sensor="quiet")
    t_s = steady(other, WARMUP_MESSAGES, sensor="loud")
    assert other.observe("loud", BASE * 1.0005, t_s) is None
    assert other.observe("quiet", BASE * 4.0, t_s) is not None


def test_an_impulsive_signal_at_the_same_level_is_marked_by_its_kurtosis() -> None:
    detector = ChangeDetector(10.0)
    t_s = steady(detector, WARMUP_MESSAGES + 5)
    impulses = np.zeros(1024, np.float32)
    impulses[::128] = 1.0
    impulsive = (BASE * 0.3 + impulses * 8.0).astype(np.float32)
    impulsive *= np.float32(np.std(BASE) / np.std(impulsive))  # the level of the baseline
    log_rms, _log_kurtosis = features(impulsive) or (0.0, 0.0)
    assert abs(log_rms - features(BASE)[0]) < 0.01  # type: ignore[index]
    assert detector.observe("p", impulsive, t_s) is not None


def test_the_baseline_does_not_learn_while_held_or_while_the_queue_calls_it_a_suspect() -> None:
    detector = ChangeDetector(10.0, hold_s=1.0)
    t_s = steady(detector, WARMUP_MESSAGES + 5)
    first = detector.observe("p", BASE * 4.0, t_s)
    for k in range(1, 10):  # the change goes on within the hold: marked every time, the same score
        assert detector.observe("p", BASE * 4.0, t_s + k * 0.1) == pytest.approx(first)
    slight = BASE * math.exp(3 * change.SPREAD_FLOOR[0])  # 3 spreads: below the threshold
    t_s += 5.0
    frozen = [detector.observe("p", slight, t_s + k * PERIOD_S, suspect=True) for k in range(100)]
    assert frozen == [None] * 100
    assert detector.last_score == pytest.approx(3.0, rel=0.05)  # a suspect's messages taught it nothing
    for k in range(100):  # not a suspect: the baseline moves to the new level
        detector.observe("p", slight, t_s + (100 + k) * PERIOD_S)
    assert detector.last_score is not None and detector.last_score < 1.0


def test_a_change_that_lasts_becomes_the_new_baseline() -> None:
    detector = ChangeDetector(10.0)
    t_s = steady(detector, WARMUP_MESSAGES + 5)
    scores, end_s = [], t_s + REBASE_S + 0.5
    while t_s < end_s:
        scores.append(detector.observe("p", BASE * 4.0, t_s))
        t_s += PERIOD_S
    assert scores[0] is not None and scores[-1] is None and detector.rebases == 1
    steady(detector, WARMUP_MESSAGES, t_s)  # warm-up on the new level ...
    assert detector.observe("p", BASE * 4.0, t_s + 10.0) is None  # ... which is no change any more


@pytest.mark.parametrize(
    ("fmt", "payload"),
    [
        ("f32le", b"\x00\x01\x02"),  # shorter than a sample
        ("f32le", np.full(1024, np.nan, "<f4").tobytes()),
        ("f32le", np.zeros(1024, "<f4").tobytes()),  # flat: no level to compare
        ("i16le", b"\x01" * 2047),  # odd length: the whole samples only
        ("json", b"not json"),
        ("json", b'{"samples": [1, "x"]}'),
        ("json", b'{"samples": 3}'),
        ("json", b"[" * 5000),
    ],
)
def test_bad_payloads_are_never_a_mark_and_never_raise(fmt: str, payload: bytes) -> None:
    source = SourceChange(fmt, 10.0)
    for k in range(WARMUP_MESSAGES + 2):
        assert source.check("p", payload, k * PERIOD_S, suspect=False) is None


def test_json_and_i16le_payloads_are_looked_at_too() -> None:
    body = b'{"samples": [%s]}' % ",".join(f"{v:.5f}" for v in BASE.tolist()).encode()
    loud = b'{"samples": [%s]}' % ",".join(f"{4 * v:.5f}" for v in BASE.tolist()).encode()
    for fmt, quiet_body, loud_body in (
        ("json", body, loud),
        ("i16le", (BASE * 1000).astype("<i2").tobytes(), (BASE * 4000).astype("<i2").tobytes()),
    ):
        source = SourceChange(fmt, 10.0)
        for k in range(WARMUP_MESSAGES + 2):
            assert source.check("p", quiet_body, k * PERIOD_S, suspect=False) is None
        assert source.check("p", loud_body, 100.0, suspect=False) is not None


def test_a_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ChangeDetector(0.0)


@pytest.mark.parametrize(
    "samples",
    [
        BASE,
        (BASE * 1000).astype("<i2").reshape(-1, 2),  # interleaved channels: all values together
        np.float32(3e38) * np.sign(BASE),  # huge but finite: the 4th power still fits float64
        BASE + np.float32(50.0),  # an offset far above the spread
    ],
)
def test_features_are_the_log_rms_and_log_kurtosis_of_all_values(samples: np.ndarray) -> None:
    from scipy.stats import kurtosis

    values = samples.reshape(-1).astype(np.float64)
    found = features(samples)
    assert found is not None
    assert found[0] == pytest.approx(0.5 * math.log(np.var(values)), rel=1e-9, abs=1e-9)
    assert found[1] == pytest.approx(math.log(kurtosis(values, fisher=False)), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("bad", [[np.nan], [np.inf], [-np.inf], [np.inf, -np.inf]])
def test_non_finite_samples_have_no_features_and_no_floating_point_warning(bad: list[float]) -> None:
    samples = BASE.copy()
    samples[: len(bad)] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from numpy would raise here
        assert features(samples) is None
        assert SourceChange("f32le", 10.0).check("p", samples.tobytes(), 0.0, suspect=False) is None


def test_a_payload_shorter_than_min_samples_is_not_looked_at() -> None:
    source = SourceChange("f32le", 10.0)
    short = BASE[: change.MIN_SAMPLES - 1].tobytes() + b"\x00\x00"  # and a partial sample
    for k in range(WARMUP_MESSAGES + 2):
        assert source.check("p", short, k * PERIOD_S, suspect=False) is None
    assert source.detector.last_score is None
