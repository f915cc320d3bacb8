"""The hold-back of ``learn``: whole recordings when there are several, else the time tail; never overlapping."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edge_agent.training.anomaly_learn import split_recordings
from edge_agent.training.anomaly_train import window_view


def test_one_recording_is_split_in_time_without_overlap() -> None:
    recording = np.arange(10_000, dtype=np.float32)[None, :]
    split = split_recordings([recording], 256, 0.2)
    assert split.kind == "time"
    train_windows = window_view(split.train[0], 256, 64)
    held_windows = window_view(split.held_back[0], 256, 128)
    assert train_windows.max() < held_windows.min()  # every held-back sample comes after every training sample
    assert split.train[0].shape[1] + split.held_back[0].shape[1] == 10_000


def test_several_recordings_hold_back_whole_ones_from_inside_the_list() -> None:
    recordings = [np.full((1, 1000), i, np.float32) for i in range(5)]
    split = split_recordings(recordings, 256, 0.2)
    assert split.kind == "recordings"
    assert split.held_back_recordings == [2]
    assert [int(r[0, 0]) for r in split.train] == [0, 1, 3, 4]
    assert [int(r[0, 0]) for r in split.held_back] == [2]


def test_at_least_one_recording_is_always_left_to_train_on() -> None:
    recordings = [np.zeros((1, 1000), np.float32) for _ in range(3)]
    split = split_recordings(recordings, 256, 0.9)
    assert len(split.train) >= 1 and len(split.held_back) >= 1


def test_window_view_is_a_view_of_the_samples() -> None:
    samples = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
    view = window_view(samples, 100, 50)
    assert view.shape == (19, 2, 100)
    np.testing.assert_array_equal(view[3], samples[:, 150:250])
    assert np.shares_memory(view, samples)


def test_cross_fit_scores_every_recording_with_a_model_that_never_heard_it() -> None:
    from edge_agent.training.anomaly_learn import learn
    from edge_agent.training.anomaly_train import AnomalyConfig

    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    recordings = [
        (np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)[None, :]
        for f in (400, 440, 480)
    ]
    config = AnomalyConfig(window_samples=256, hop_samples=128, train_hop_samples=64, steps=50, cross_fit=True)
    result = learn(recordings, 8000, config)
    assert result.split.kind == "cross-fit"
    assert len(result.split.train) == 3  # the shipped model learned every recording
    assert result.held_back_scores.size == 3 * (1 + (8000 - 256) // 128)


def test_time_folds_hold_out_contiguous_blocks_with_a_guard_gap_of_one_window() -> None:
    from edge_agent.training.anomaly_learn import time_folds

    recording = np.arange(10_000, dtype=np.float32)[None, :]
    folds = time_folds([recording], 256, 4)
    assert len(folds) == 4
    held = np.concatenate([np.concatenate(h, axis=1) for _, h in folds], axis=1)
    np.testing.assert_array_equal(held, recording)  # the blocks cover the recording once, in order
    for train, (block,) in folds:
        first, last = block[0, 0], block[0, -1]
        for part in train:
            assert part.shape[1] >= 256
            assert part[0, -1] < first - 256 or part[0, 0] > last + 256  # a whole window between them
    train_samples = [sum(p.shape[1] for p in train) for train, _ in folds]
    assert train_samples == [10_000 - 2500 - 256, 10_000 - 2500 - 512, 10_000 - 2500 - 512, 10_000 - 2500 - 256]


def test_time_folds_refuse_blocks_shorter_than_a_window() -> None:
    from edge_agent.training.anomaly_learn import time_folds

    with pytest.raises(ValueError, match="shorter than a window"):
        time_folds([np.zeros((1, 1000), np.float32)], 256, 5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        time_folds([np.zeros((1, 1000), np.float32)], 256, 1)


def test_cross_fit_of_one_recording_scores_every_time_block_and_ships_a_model_of_all_of_it() -> None:
    from edge_agent.training.anomaly_learn import learn
    from edge_agent.training.anomaly_train import AnomalyConfig

    rng = np.random.default_rng(0)
    t = np.arange(20_000) / 8000
    recording = (np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)[None, :]
    config = AnomalyConfig(
        window_samples=256, hop_samples=128, train_hop_samples=64, steps=50, cross_fit=True, cross_fit_folds=4
    )
    result = learn([recording], 8000, config)
    assert result.split.kind == "cross-fit-time"
    assert result.split.train[0] is recording  # the shipped model learned all of it
    assert result.stats["train_windows"] == 1 + (20_000 - 256) // 64
    assert result.held_back_scores.size == 4 * (1 + (5000 - 256) // 128)  # every block, at the agent's hop
    denser = learn([recording], 8000, replace(config, calibration_hop_samples=32))
    assert denser.held_back_scores.size == 4 * (1 + (5000 - 256) // 32)
    plain = learn([recording], 8000, replace(config, cross_fit=False))
    assert plain.split.kind == "time"  # without --cross-fit: the time tail, as before
