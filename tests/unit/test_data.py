from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.training.data import RandomCropSampler, load_cwru, make_windows


def test_every_record_is_split_in_time(fake_data_root: Path) -> None:
    dataset = load_cwru(fake_data_root)
    raw = np.load(fake_data_root / "cwru" / "cwru_12k_de_dev.npz")
    for index, key in enumerate(raw["keys"]):
        parts = [dataset.splits[name][index] for name in ("train", "val", "test")]
        assert all(p.key == key for p in parts)
        joined = np.concatenate([p.samples[0] for p in parts])
        np.testing.assert_array_equal(joined, raw[key])  # contiguous, in order, nothing shared
        assert [p.samples.shape[1] for p in parts] == [14_000, 2_000, 4_000]


def test_windows_never_cross_a_split(fake_data_root: Path) -> None:
    dataset = load_cwru(fake_data_root)
    windows, labels = make_windows(dataset.splits["test"], 1024, 512)
    assert windows.shape == (3 * 6, 1, 1024)
    assert labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6


def test_missing_file_names_the_path_and_the_remedy(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cwru_12k_de_dev.npz.*--data.*EDGE_AGENT_DATA"):
        load_cwru(tmp_path)


def test_bad_fractions_are_rejected(fake_data_root: Path) -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        load_cwru(fake_data_root, fractions=(0.5, 0.5, 0.5))


def test_sampler_balances_classes_and_stays_in_the_training_split(fake_data_root: Path) -> None:
    dataset = load_cwru(fake_data_root)
    short = dataset.splits["train"][0]
    # make class 0 ten times rarer than the others: balanced sampling must still draw it 1/3 of the time
    segments = [type(short)(short.key, 0, 0, short.samples[:, :1500]), *dataset.splits["train"][1:]]
    sampler = RandomCropSampler(segments, 1024, seed=0)
    windows, labels = sampler.sample(3000)
    assert np.bincount(labels) / 3000 == pytest.approx([1 / 3] * 3, abs=0.04)
    train_values = {float(v) for s in segments for v in s.samples[0]}
    assert {float(v) for v in windows[:50].ravel()} <= train_values
