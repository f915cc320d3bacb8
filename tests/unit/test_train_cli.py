"""`edge-agent train` end to end on a synthetic pack: checkpoints, resume, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edge_agent.cli import main

TINY_ARGS = [
    "--widths",
    "4,8",
    "--blocks-per-stage",
    "1",
    "--window-samples",
    "512",
    "--steps-per-epoch",
    "2",
    "--batch-size",
    "16",
    "--quiet",
]


def _train(data: Path, out: Path, epochs: int, seed: int = 0) -> int:
    return main(
        ["train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), "--seed", str(seed), *TINY_ARGS]
    )


def test_train_writes_checkpoints_and_summary(fake_data_root: Path, tmp_path: Path) -> None:
    assert _train(fake_data_root, tmp_path / "run", epochs=2) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert summary["class_names"] == ["class0", "class1", "class2"]
    assert len(summary["data_sha256"]) == 64 and summary["macs_per_window"] > 0
    assert (tmp_path / "run" / "best.pt").exists()


def test_same_seed_gives_the_same_weights(fake_data_root: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert _train(fake_data_root, tmp_path / name, epochs=1, seed=7) == 0
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_existing_run_with_another_config_is_refused(fake_data_root: Path, tmp_path: Path, capsys) -> None:
    assert _train(fake_data_root, tmp_path / "run", epochs=1) == 0
    assert _train(fake_data_root, tmp_path / "run", epochs=3) == 2
    assert "another configuration" in capsys.readouterr().err
