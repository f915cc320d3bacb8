"""The hold-back of ``learn``: whole recordings when there are several, else the time tail; never overlapping."""

from __future__ import annotations

import numpy as np

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
