"""Shared fixtures: a synthetic CWRU-shaped pack, so unit tests need no real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_fake_cwru(root: Path, *, samples_per_record: int = 20_000, classes: int = 3) -> Path:
    """Write ``root/cwru/cwru_12k_de_dev.npz`` with the real pack's keys, one record per class.

    Each class is a sine at its own frequency plus noise, so tiny models can learn it.
    """
    rng = np.random.default_rng(0)
    t = np.arange(samples_per_record) / 12_000
    keys = [f"{100 + c:03d}" for c in range(classes)]
    arrays = {
        key: (np.sin(2 * np.pi * (200 + 900 * c) * t) + 0.1 * rng.standard_normal(t.size)).astype(np.float32)
        for c, key in enumerate(keys)
    }
    folder = root / "cwru"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "cwru_12k_de_dev.npz",
        keys=np.array(keys),
        labels=np.arange(classes, dtype=np.int64),
        load_hp=np.zeros(classes, dtype=np.int64),
        class_names=np.array([f"class{c}" for c in range(classes)]),
        fs_hz=np.array(12_000),
        **arrays,
    )
    return root


@pytest.fixture
def fake_data_root(tmp_path: Path) -> Path:
    return write_fake_cwru(tmp_path / "data")


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents a test starts keep their state (the alert outbox) in a folder of that test, never in ~/.local/state."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
