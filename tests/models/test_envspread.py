"""The ``envspread`` front-end and the ``excess`` scorer: shapes, the invariances claimed, learning end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from edge_agent.nn.anomaly_frontends import SPREAD_FRAMES, AnomalyFrontEnd
from edge_agent.nn.autoencoders import get_autoencoder, is_trainable
from edge_agent.training.anomaly_learn import learn
from edge_agent.training.anomaly_train import AnomalyConfig

RATE_HZ, WINDOW = 16_000.0, 8192
BAND_FEATURES = slice(len(SPREAD_FRAMES), None)  # the bands from 1 kHz up (the first block is the whole window)


def motor_like(rpm: float, depth: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Harmonics of the electrical rate (7 pole pairs) up to 7.5 kHz plus a noise floor, amplitude-modulated
    at the rotation rate by ``depth`` (a damaged propeller): ``(1, 1, WINDOW)``."""
    t = torch.arange(WINDOW) / RATE_HZ
    f0_hz = rpm / 60.0 * 7.0
    x = sum(torch.sin(2 * math.pi * k * f0_hz * t + k) / k for k in range(1, 40) if k * f0_hz < 7500.0)
    x = x + 0.5 * torch.randn(WINDOW, generator=torch.Generator().manual_seed(seed))
    return (x * (1.0 + depth * torch.sin(2 * math.pi * rpm / 60.0 * t))).reshape(1, 1, WINDOW)


def test_shapes_and_feature_count() -> None:
    front = AnomalyFrontEnd("envspread", window_samples=WINDOW, sample_rate_hz=RATE_HZ, spread_bands=3)
    assert front.out_features == 4 * len(SPREAD_FRAMES)
    assert front(torch.randn(5, 2, WINDOW)).shape == (5, 2, front.out_features)
    short = AnomalyFrontEnd("envspread", window_samples=256, sample_rate_hz=8000.0, spread_bands=0)
    assert short.spread_frames == [16, 64]  # 256-sample frames would give one frame per window
    with pytest.raises(ValueError, match="window_samples"):
        AnomalyFrontEnd("envspread", window_samples=32, sample_rate_hz=8000.0)


def test_a_steady_motor_keeps_its_band_features_across_speeds_and_modulation_raises_them() -> None:
    front = AnomalyFrontEnd("envspread", window_samples=WINDOW, sample_rate_hz=RATE_HZ)
    slow, fast = front(motor_like(1400.0))[..., BAND_FEATURES], front(motor_like(2000.0))[..., BAND_FEATURES]
    assert float((fast - slow).abs().mean()) < 0.1  # the lines moved by 43 %, the level swings did not
    for rpm, steady in ((1400.0, slow), (2000.0, fast)):
        modulated = front(motor_like(rpm, depth=0.5))[..., BAND_FEATURES]
        assert float((modulated - steady).min()) > 0.15
        assert float((modulated - steady).mean()) > 0.5


def test_one_click_moves_the_spread_less_than_the_standard_deviation() -> None:
    front = AnomalyFrontEnd("envspread", window_samples=WINDOW, sample_rate_hz=RATE_HZ, spread_bands=0)
    x = motor_like(1600.0)
    clicked = x.clone()
    clicked[..., 4000:4016] += 40.0  # one 1 ms click
    assert float((front(clicked) - front(x)).abs().max()) < 0.2
    frames = x.reshape(-1, 64).pow(2).mean(-1).log(), clicked.reshape(-1, 64).pow(2).mean(-1).log()
    assert float(frames[1].std().log() - frames[0].std().log()) > 0.2


def test_excess_scores_the_one_sided_excess_and_has_nothing_to_train() -> None:
    network = get_autoencoder("excess", in_channels=1, in_features=3)
    assert not is_trainable(network)
    z = torch.tensor([[[2.0, -1.0, 0.5]]])
    torch.testing.assert_close(network(z), torch.tensor([[[0.0, -1.0, 0.0]]]))
    torch.testing.assert_close(network.loss(z)[0], torch.tensor((4.0 + 0.25) / 3.0))


def test_learn_with_excess_and_cross_fitting_flags_a_modulated_recording() -> None:
    recordings = [
        motor_like(rpm, seed=i).reshape(1, -1).repeat(1, 6).numpy() for i, rpm in enumerate((1400, 1600, 1800))
    ]
    recordings = [
        r + 0.3 * np.random.default_rng(i).standard_normal(r.shape).astype(np.float32) for i, r in enumerate(recordings)
    ]
    config = AnomalyConfig(
        network="excess",
        frontend="envspread",
        window_samples=4096,
        hop_samples=2048,
        train_hop_samples=1024,
        cross_fit=True,
    )
    result = learn(recordings, RATE_HZ, config)
    assert result.split.kind == "cross-fit" and result.stats["loss_history"]
    fault = motor_like(1700.0, depth=0.6, seed=9)[..., :4096]
    healthy = motor_like(1700.0, seed=9)[..., :4096]
    with torch.inference_mode():
        assert float(result.detector(fault)) > result.threshold > float(result.detector(healthy))


def test_edge_agent_learn_writes_an_excess_envspread_model_the_runtime_loads(tmp_path: Path) -> None:

    from edge_agent.cli import main
    from edge_agent.modelfile import load_model, read_meta

    paths = []
    for i, rpm in enumerate((1400, 1600, 1800)):
        samples = motor_like(rpm, seed=i).reshape(-1).repeat(4).numpy() * 0.05
        pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
        paths.append(tmp_path / f"{rpm}.wav")
        wavfile.write(paths[-1], int(RATE_HZ), pcm)
    out = tmp_path / "motor.pt"
    args = ["learn", "--out", str(out), "--model", "excess", "--frontend", "envspread", "--cross-fit", "--quiet"]
    assert main([*args, "--window-samples", "4096", *map(str, paths)]) == 0
    meta = read_meta(out)
    assert meta["network"]["name"] == "excess" and meta["network"]["parameters"] == 0
    assert meta["frontend"]["kind"] == "envspread" and meta["training"]["held_back"]["kind"] == "cross-fit"
    module = load_model(out).module
    with torch.inference_mode():
        fault = float(module(motor_like(1700.0, depth=0.6, seed=9)[..., :4096] * 0.05))
        healthy = float(module(motor_like(1700.0, seed=9)[..., :4096] * 0.05))
    assert fault > meta["threshold"] > healthy
