"""BLDC audio data: folds never mix a held-out speed or motor into training; WAV loading and resampling."""

from __future__ import annotations

import csv
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_agent.training.audio_data import (
    BalancedCropSampler,
    BldcDataset,
    Clip,
    clip_windows,
    load_bldc,
    motor_folds,
    speed_folds,
)

LAYOUT = [  # (condition, motor, rpm): the shape of the real set, shrunk
    ("healthy", "M1", 1400),
    ("healthy", "M2", 1400),
    ("propeller", "M1", 1400),
    ("healthy", "M1", 1550),
    ("propeller", "M2", 1550),
    ("bearing", "M4", 1700),
    ("bearing", "M4", 2000),
    ("healthy", "M3", 2000),
]


def _dataset() -> BldcDataset:
    names = ("healthy", "propeller", "bearing")
    clips = tuple(
        Clip(path=f"{c}/{m}/{r}.wav", label=names.index(c), motor=m, rpm=r, samples=np.zeros(1000, np.float32))
        for c, m, r in LAYOUT
    )
    return BldcDataset(clips=clips, sha256="x")


def test_speed_folds_never_share_a_speed() -> None:
    dataset = _dataset()
    folds = speed_folds(dataset)
    assert [f.name for f in folds] == ["rpm1400", "rpm1550", "rpm1700", "rpm2000"]
    for fold in folds:
        test_speeds = {c.rpm for c in fold.test}
        assert len(test_speeds) == 1 and not test_speeds & {c.rpm for c in fold.train}
        assert len(fold.train) + len(fold.test) == len(dataset.clips)
    tested = sorted(c.path for f in folds for c in f.test)
    assert tested == sorted(c.path for c in dataset.clips)  # every clip held out exactly once


def test_motor_folds_never_share_a_motor() -> None:
    folds = motor_folds(_dataset())
    assert [f.name for f in folds] == ["motorM1", "motorM2"]
    for fold in folds:
        assert {c.motor for c in fold.test} == {fold.name.removeprefix("motor")}
        assert fold.name.removeprefix("motor") not in {c.motor for c in fold.train}


def test_windows_and_balanced_crops() -> None:
    clip = Clip(path="a", label=0, motor="M1", rpm=1, samples=np.arange(10_000, dtype=np.float32))
    windows = clip_windows(clip, 4096, 2048)
    assert windows.shape == (3, 1, 4096) and windows[1, 0, 0] == 2048
    with pytest.raises(ValueError, match="window of 20000"):
        clip_windows(clip, 20_000, 1)
    clips = [clip, Clip(path="b", label=2, motor="M4", rpm=1, samples=np.ones(10_000, np.float32))]
    for perturb in (0.0, 0.1):
        batch, labels = BalancedCropSampler(clips, 1024, seed=0, speed_perturb=perturb).sample(200)
        assert batch.shape == (200, 1, 1024) and set(labels) == {0, 2}
        ramps = batch[labels == 0, 0]
        steps = np.diff(ramps, axis=1)  # the ramp's slope is the stretch factor
        assert np.all((steps > 1 - perturb - 1e-3) & (steps < 1 + perturb + 1e-3))
    gapped, _ = BalancedCropSampler(clips[1:], 1024, seed=0, gap_fraction=1.0).sample(100)
    zeros = (gapped[:, 0] == 0).sum(axis=1)
    assert np.all((zeros >= 1) & (zeros < 768))  # a silent start or end, up to 3/4 of the window
    assert (gapped[:, 0, 0] == 0).any() and (gapped[:, 0, -1] == 0).any()


def _write_wav(path: Path, rate_hz: int, frequency_hz: float, amplitude: float) -> None:
    t = np.arange(rate_hz) / rate_hz
    tone = np.round(amplitude * 32767 * np.sin(2 * np.pi * frequency_hz * t)).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(rate_hz)
        handle.writeframes(np.stack([tone, tone], axis=1).tobytes())


def test_load_resamples_mixes_down_and_normalises_level(tmp_path: Path) -> None:
    folder = tmp_path / "machine_sound" / "bldc_motor"
    rows = [("Healthy/M1/1400.wav", "healthy", 44_100, 0.5), ("Bearing/M4/1700.wav", "bearing", 16_000, 0.005)]
    for path, _, rate, amplitude in rows:
        _write_wav(folder / path, rate, 1000.0, amplitude)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "condition", "motor", "nominal_rpm"])
        for path, condition, _, _ in rows:
            writer.writerow([path, condition, path.split("/")[1], path.split("/")[2][:4]])
    dataset = load_bldc(tmp_path)
    assert [c.label for c in dataset.clips] == [0, 2] and dataset.speeds == [1400, 1700]
    for clip in dataset.clips:
        assert abs(len(clip.samples) - 16_000) < 200  # one second at 16 kHz (the resampler trims its filter edge)
        middle = clip.samples[2000:-2000]
        assert np.sqrt(np.mean(middle**2)) == pytest.approx(1.0, rel=0.02)  # level normalised, 40 dB apart before
        spectrum = np.abs(np.fft.rfft(middle))
        assert np.argmax(spectrum) * 16_000 / len(middle) == pytest.approx(1000.0, abs=2.0)
    with pytest.raises(FileNotFoundError, match=r"labels\.csv not found"):
        load_bldc(tmp_path / "nowhere")
