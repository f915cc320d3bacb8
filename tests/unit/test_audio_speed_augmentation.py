"""Speed augmentation of the audio classifier: polyphase resampling moves a tone by the factor; the sampler's copies."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.training.audio_data import SAMPLE_RATE_HZ, BalancedCropSampler, Clip, speed_resampled
from edge_agent.training.audio_train import AudioTrainConfig
from edge_agent.training.commands import parse_floats


def _tone(frequency_hz: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return np.sin(2 * np.pi * frequency_hz * t).astype(np.float32)


def _peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE_HZ)[spectrum.argmax()])


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.05, 1.1])
def test_a_resampled_tone_moves_by_the_factor(factor: float) -> None:
    tone = _tone(440.0)
    faster = speed_resampled(tone, factor)
    assert faster.dtype == np.float32 and faster.ndim == 1
    assert abs(len(faster) - len(tone) / factor) <= 1  # fewer samples when played faster
    bin_hz = SAMPLE_RATE_HZ / len(faster)
    assert abs(_peak_hz(faster) - 440.0 * factor) <= bin_hz
    assert abs(_peak_hz(faster) - 440.0) > 10 * bin_hz  # it did move
    interior = faster[200:-200]  # polyphase filter edges aside, the level is kept
    assert np.sqrt(np.mean(interior**2)) == pytest.approx(np.sqrt(0.5), rel=0.02)


def test_factor_one_is_the_clip_itself_and_absurd_factors_are_refused() -> None:
    tone = _tone(440.0, 0.5)
    np.testing.assert_array_equal(speed_resampled(tone, 1.0), tone)
    for factor in (0.5, 2.0, -1.0):
        with pytest.raises(ValueError, match="speed factor"):
            speed_resampled(tone, factor)


def test_sampler_crops_come_from_the_original_and_every_resampled_copy() -> None:
    clips = [
        Clip(path="h", label=0, motor="M1", rpm=1600, samples=_tone(500.0)),
        Clip(path="p", label=1, motor="M1", rpm=1600, samples=_tone(500.0)),
    ]
    window_samples = 4096
    sampler = BalancedCropSampler(clips, window_samples, seed=0, speed_factors=(0.9, 1.1))
    batch, labels = sampler.sample(120)
    assert batch.shape == (120, 1, window_samples) and batch.dtype == np.float32
    assert labels.dtype == np.int64 and set(labels) == {0, 1}
    bin_hz = SAMPLE_RATE_HZ / window_samples
    peaks = np.array([_peak_hz(window) for window in batch[:, 0]])
    nearest = np.array([min((450.0, 500.0, 550.0), key=lambda f: abs(f - p)) for p in peaks])
    assert np.all(np.abs(peaks - nearest) <= bin_hz)  # every crop is one of the three speeds ...
    assert set(nearest) == {450.0, 500.0, 550.0}  # ... and each speed occurs
    assert min(np.sum(nearest == f) for f in (450.0, 500.0, 550.0)) >= 120 // 3 // 2  # roughly uniform


def test_sampler_without_factors_is_unchanged_and_two_augmentations_are_refused() -> None:
    clips = [Clip(path="h", label=0, motor="M1", rpm=1600, samples=_tone(300.0, 1.0))]
    plain, _ = BalancedCropSampler(clips, 1024, seed=3).sample(16)
    off, _ = BalancedCropSampler(clips, 1024, seed=3, speed_factors=()).sample(16)
    np.testing.assert_array_equal(plain, off)  # off by default: the shipped recipe's crops, bit for bit
    with pytest.raises(ValueError, match="choose one"):
        BalancedCropSampler(clips, 1024, seed=0, speed_perturb=0.1, speed_factors=(1.1,))


def test_config_round_trip_and_cli_parsing() -> None:
    config = AudioTrainConfig(speed_factors=(0.9, 1.1))
    assert AudioTrainConfig.from_json(config.to_json()) == config
    assert AudioTrainConfig().speed_factors == ()  # default off
    assert parse_floats("0.9,0.95,1.05,1.1") == (0.9, 0.95, 1.05, 1.1) and parse_floats("") == ()


def _row(clip: str, condition: str, probabilities: list[list[float]], seed: int = 0) -> dict[str, object]:
    return {
        "variant": "v",
        "fold": 1650,
        "seed": seed,
        "clip": clip,
        "condition": condition,
        "probabilities": probabilities,
    }


def test_votes_need_confidence_and_alerts_need_k_of_n_of_one_fault() -> None:
    from edge_agent.training.audio_unseen_text import clip_alerts, combined_flags, fault_votes

    probs = np.array([[0.1, 0.85, 0.05], [0.3, 0.6, 0.1], [0.9, 0.05, 0.05], [0.0, 0.1, 0.9]])
    np.testing.assert_array_equal(fault_votes(probs), [1, 0, 0, 2])  # 0.6 is below min_confidence
    assert clip_alerts(np.array([1, 1, 0, 1, 0]))  # 3 of 5 for propeller
    assert not clip_alerts(np.array([1, 2, 1, 2, 0]))  # never 3 of 5 for one label
    healthy = [[0.95, 0.03, 0.02]] * 5
    row = _row("Healthy/M1/1650.wav", "healthy", healthy)
    flags, alert = combined_flags(row, None)
    assert not flags.any() and not alert
    anomaly = {"scores": [0.0, 2.0, 2.0, 0.0, 2.0], "threshold": 1.0}
    flags, alert = combined_flags(row, anomaly)  # either model: the anomaly model's 3 of 5
    np.testing.assert_array_equal(flags, [False, True, True, False, True])
    assert alert
    with pytest.raises(ValueError, match="anomaly windows"):
        combined_flags(row, {"scores": [0.0], "threshold": 1.0})


def test_summary_counts_fault_recall_and_false_alarms_per_seed() -> None:
    from edge_agent.training.audio_unseen_text import summarise

    fault_probs = [[0.05, 0.9, 0.05]] * 4 + [[0.9, 0.05, 0.05]] * 4  # half the windows vote
    rows = [
        _row("Propeller/M1/1650.wav", "propeller", fault_probs),
        _row("Healthy/M1/1650.wav", "healthy", [[0.9, 0.05, 0.05]] * 8),
    ]
    anomaly = [
        {"clip": "Healthy/M1/1650.wav", "seed": 0, "scores": [2.0] + [0.0] * 7, "threshold": 1.0},
        {"clip": "Propeller/M1/1650.wav", "seed": 0, "scores": [0.0] * 4 + [2.0] * 4, "threshold": 1.0},
    ]
    result = {
        "classifier": rows,
        "anomaly": anomaly,
        "seeds": [0],
        "folds": [1650],
        "data_sha256": "x",
        "steps": 1,
        "variants": {"v": [1.1]},
        "anomaly_variant": "a",
        "seconds": 1.0,
    }
    summary = summarise(result)
    (fold,) = summary["folds"]
    assert fold["fault_window_recall"] == [0.5, 0.0] and fold["healthy_window_false"] == [0.0, 0.0]
    assert fold["fault_clips_alerted"] == "1/1" and fold["healthy_clips_alerted"] == "0/1"
    either = next(e for e in summary["combined"] if e["model"].endswith("or anomaly model"))
    assert either["fault_window_recall"] == [1.0, 0.0]  # the anomaly model flags the other half
    assert either["healthy_window_false"] == [0.125, 0.0] and either["healthy_clips_alerted"] == "0/1"
