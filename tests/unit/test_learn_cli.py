"""``edge-agent learn`` on small generated signals: learned, flagged, level-invariant, refusals, loadable output."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_agent.cli import main
from edge_agent.modelfile import load_model, read_meta

RATE_HZ = 8000
WINDOW = 512


def tone(seconds: float, *, harmonic: float = 0.0, gain: float = 1.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 440 * t + rng.uniform(0, 6)) + harmonic * np.sin(2 * np.pi * 1320 * t)
    return (gain * (x + 0.003 * rng.standard_normal(t.size))).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate_hz: int = RATE_HZ) -> Path:
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate_hz)
        handle.writeframes(pcm.tobytes())
    return path


def windows(x: np.ndarray) -> torch.Tensor:
    starts = range(0, len(x) - WINDOW + 1, WINDOW // 2)
    return torch.from_numpy(np.stack([x[s : s + WINDOW] for s in starts])[:, None, :])


def learn(tmp_path: Path, *inputs: str, extra: tuple[str, ...] = ()) -> int:
    out = tmp_path / "baseline.pt"
    args = ["learn", "--out", str(out), "--window-samples", str(WINDOW), "--steps", "300", "--quiet", *extra]
    return main([*args, *inputs])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("learn")
    assert learn(tmp_path, str(write_wav(tmp_path / "healthy.wav", tone(12.0)))) == 0
    return tmp_path / "baseline.pt"


def test_the_output_passes_the_loader_and_describes_itself(baseline: Path) -> None:
    loaded = load_model(baseline)
    meta = read_meta(baseline)
    assert meta["kind"] == "anomaly"
    assert (meta["sample_rate_hz"], meta["window_samples"], meta["hop_samples"], meta["channels"]) == (
        RATE_HZ,
        WINDOW,
        WINDOW // 2,
        1,
    )
    assert meta["threshold"] > 0 and meta["calibration"]["windows"] > 0
    assert meta["training"]["duration_s"] == pytest.approx(12.0)
    assert len(meta["training"]["data_sha256"]) == 64
    assert meta["network"]["name"] == "undercomplete" and meta["frontend"]["kind"] == "logspec"
    assert meta["code_version"]
    scores = loaded.module(windows(tone(2.0, seed=5)))
    assert scores.dtype == torch.float32 and scores.shape == (len(windows(tone(2.0))),)


def test_a_learned_tone_is_healthy_and_a_new_harmonic_is_flagged(baseline: Path) -> None:
    module, threshold = load_model(baseline).module, read_meta(baseline)["threshold"]
    with torch.inference_mode():
        healthy = module(windows(tone(4.0, seed=7)))
        changed = module(windows(tone(4.0, harmonic=0.05, seed=7)))
    assert float((healthy > threshold).float().mean()) <= 0.05
    assert float((changed > threshold).float().mean()) >= 0.95


@pytest.mark.parametrize("gain", [0.1, 3.0])
def test_a_louder_or_quieter_copy_is_not_flagged_when_level_invariant(baseline: Path, gain: float) -> None:
    module, threshold = load_model(baseline).module, read_meta(baseline)["threshold"]
    with torch.inference_mode():
        scores = module(windows(tone(4.0, gain=gain, seed=7)))
    assert float((scores > threshold).float().mean()) <= 0.05


def test_npy_and_csv_inputs_with_a_sample_rate(tmp_path: Path) -> None:
    stereo = np.stack([tone(6.0), tone(6.0, seed=1)])
    np.save(tmp_path / "a.npy", stereo)
    np.savetxt(tmp_path / "b.csv", stereo.T, delimiter=",", header="x,y", comments="")
    rate = ("--sample-rate-hz", str(RATE_HZ))
    assert learn(tmp_path, str(tmp_path / "a.npy"), str(tmp_path / "b.csv"), extra=rate) == 0
    assert read_meta(tmp_path / "baseline.pt")["channels"] == 2


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (tone(0.5), "input too short"),
        (np.zeros(RATE_HZ * 6, np.float32), "silent"),
        (np.clip(tone(6.0, gain=4.0), -0.5, 0.5), "clipped"),
    ],
    ids=["short", "silent", "clipped"],
)
def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str], samples: np.ndarray, message: str) -> None:
    assert learn(tmp_path, str(write_wav(tmp_path / "in.wav", samples))) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "baseline.pt").exists()


def test_mixed_sample_rates_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_wav(tmp_path / "a.wav", tone(6.0))
    second = write_wav(tmp_path / "b.wav", tone(6.0), rate_hz=16_000)
    assert learn(tmp_path, str(first), str(second)) == 2
    assert "mix sample rates" in capsys.readouterr().err


def test_npy_without_a_sample_rate_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "a.npy", tone(6.0))
    assert learn(tmp_path, str(tmp_path / "a.npy")) == 2
    assert "--sample-rate-hz" in capsys.readouterr().err


def test_an_anomaly_meta_needs_a_numeric_threshold_but_no_labels(baseline: Path) -> None:
    from edge_agent.modelfile import validate_meta

    meta = read_meta(baseline)
    assert "labels" not in meta
    validate_meta(meta, source="x.pt")
    for bad in ({"threshold": "high"}, {"threshold": None}):
        with pytest.raises(ValueError, match="'threshold' must be a finite number"):
            validate_meta({**meta, **bad}, source="x.pt")
    without = {k: v for k, v in meta.items() if k != "threshold"}
    with pytest.raises(ValueError, match=r"lacks key\(s\): threshold"):
        validate_meta(without, source="x.pt")


def test_cross_fit_of_one_recording_uses_time_blocks(tmp_path: Path) -> None:
    """Before, ``--cross-fit`` with one file silently fell back to the 20 % time tail (no cross-fitting)."""
    wav = write_wav(tmp_path / "healthy.wav", tone(6.0))
    assert learn(tmp_path, str(wav), extra=("--cross-fit", "--cross-fit-folds", "3")) == 0
    meta = read_meta(tmp_path / "baseline.pt")
    held = meta["training"]["held_back"]
    block_samples = 6 * RATE_HZ // 3
    assert held["kind"] == "cross-fit-time"
    assert held["windows"] == 3 * (1 + (block_samples - WINDOW) // (WINDOW // 2))  # all of the input scored
    assert meta["training"]["config"]["cross_fit_folds"] == 3
    assert meta["calibration"]["windows"] == held["windows"]
    module, threshold = load_model(tmp_path / "baseline.pt").module, meta["threshold"]
    with torch.inference_mode():
        assert float((module(windows(tone(4.0, harmonic=0.05, seed=7))) > threshold).float().mean()) >= 0.95
