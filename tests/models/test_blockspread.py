"""The ``blockspread`` front-end and the ``consensus`` scorer: the numbers, one transient, a livelier band."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from edge_agent.nn.anomaly_frontends import AnomalyFrontEnd
from edge_agent.nn.autoencoders import get_autoencoder, is_trainable
from edge_agent.nn.blockspread import BLOCK_FRAMES, BLOCK_SAMPLES
from edge_agent.training.anomaly_eval import debounced_alert
from edge_agent.training.anomaly_learn import learn
from edge_agent.training.anomaly_train import AnomalyConfig, scores_of

RATE_HZ, WINDOW, HOP = 16_000.0, 16384, 2048


def motor_like(rpm: float, samples: int, depth: float = 0.0, seed: int = 0) -> np.ndarray:
    """Harmonics of the electrical rate (7 pole pairs) up to 7.5 kHz plus noise, amplitude-modulated at the
    rotation rate by ``depth`` (a damaged propeller), as in test_envspread: ``(samples,)``."""
    t = np.arange(samples) / RATE_HZ
    f0_hz = rpm / 60.0 * 7.0
    x = sum(np.sin(2 * math.pi * k * f0_hz * t + k) / k for k in range(1, 40) if k * f0_hz < 7500.0)
    x = x + 0.5 * np.random.default_rng(seed).standard_normal(samples)
    return (x * (1.0 + depth * np.sin(2 * math.pi * rpm / 60.0 * t))).astype(np.float32)


def knocked(x: np.ndarray, at: int, length: int = 1600, gain: float = 6.0) -> np.ndarray:
    """``x`` with one 100 ms event ``gain`` times louder (a healthy machine's knock or surge)."""
    out = x.copy()
    out[at : at + length] *= gain
    return out


def front(kind: str, bands: int = 3, window: int = WINDOW) -> AnomalyFrontEnd:
    return AnomalyFrontEnd(kind, window_samples=window, sample_rate_hz=RATE_HZ, spread_bands=bands)


def reference_features(x: np.ndarray, bands: int) -> np.ndarray:
    """The documented computation in plain numpy: per frame length, band powers of each frame's rfft, log
    envelope, log standard deviation per sub-block, median over sub-blocks; band-major."""
    freqs = np.geomspace(1000.0, RATE_HZ / 2, bands + 1)
    edges = [(0.0, RATE_HZ), *itertools.pairwise(freqs)]
    out = np.zeros((bands + 1, len(BLOCK_FRAMES)))
    for s, frame in enumerate(BLOCK_FRAMES):
        power = np.abs(np.fft.rfft(x.reshape(-1, frame), axis=1)) ** 2
        bin_hz = np.fft.rfftfreq(frame, 1.0 / RATE_HZ)
        for b, (low, high) in enumerate(edges):
            inside = (bin_hz >= low) & (bin_hz < high) & (bin_hz > 0)
            envelope = 0.5 * np.log(power[:, inside].sum(axis=1) + 1e-10)
            per_block, step = BLOCK_SAMPLES // frame, BLOCK_SAMPLES // 2 // frame
            blocks = np.lib.stride_tricks.sliding_window_view(envelope, per_block)[::step]
            out[b, s] = np.median(np.log(blocks.std(axis=1)))
    return out.reshape(-1)


def test_shapes_groups_and_the_documented_numbers() -> None:
    frontend = front("blockspread", bands=6)
    assert frontend.out_features == 7 * len(BLOCK_FRAMES) and frontend.feature_groups == len(BLOCK_FRAMES)
    x = motor_like(1600.0, WINDOW)
    x = (x - x.mean()) / x.std()
    with torch.inference_mode():
        got = frontend(torch.from_numpy(x).reshape(1, 1, -1)).reshape(-1).numpy()
    np.testing.assert_allclose(got, reference_features(x, 6), atol=1e-4)
    assert frontend(torch.randn(4, 2, WINDOW)).shape == (4, 2, frontend.out_features)
    with pytest.raises(ValueError, match="window_samples"):
        front("blockspread", window=32)


def test_one_knock_moves_envspread_but_not_blockspread_and_modulation_raises_both() -> None:
    steady = motor_like(1600.0, WINDOW)
    knock = knocked(steady, at=3 * HOP + 300)  # inside one sub-block pair, as the M1 1550 RPM clip starts
    modulated = motor_like(1600.0, WINDOW, depth=0.5)
    with torch.inference_mode():
        for kind, moved in (("envspread", 0.3), ("blockspread", None)):
            frontend = front(kind)
            features = [frontend(torch.from_numpy(s).reshape(1, 1, -1)).reshape(-1) for s in (steady, knock, modulated)]
            shift = float((features[1] - features[0]).abs().mean())
            if moved is None:
                assert shift < 0.1
            else:
                assert shift > moved  # the old front-end: one event carries the 10-90 % range of the window
            assert float((features[2] - features[0]).mean()) > 0.5


def test_the_band_features_move_less_with_speed_than_with_modulation() -> None:
    frontend = front("blockspread")
    with torch.inference_mode():
        slow, fast, modulated = (
            frontend(torch.from_numpy(motor_like(rpm, WINDOW, depth=depth)).reshape(1, 1, -1)).reshape(-1)
            for rpm, depth in ((1400.0, 0.0), (2000.0, 0.0), (1400.0, 0.5))
        )
    bands = slice(len(BLOCK_FRAMES), None)  # the first block is the whole window
    speed_shift = float((fast[..., bands] - slow[..., bands]).abs().mean())
    # 0.18 here (envspread: 0.09): the short frames' DFT bins are coarse, a moving harmonic changes bins
    assert speed_shift < 0.25
    assert float((modulated[..., bands] - slow[..., bands]).mean()) > 3 * speed_shift


def test_consensus_scores_the_median_over_bands_of_each_frame_length() -> None:
    network = get_autoencoder("consensus", in_channels=1, in_features=6, groups=2)
    assert not is_trainable(network)
    # band-major: (band 0: g0, g1), (band 1: g0, g1), (band 2: g0, g1)
    one_band = torch.tensor([[[9.0, 9.0, -0.5, -1.0, -0.5, -2.0]]])  # only band 0 is livelier than healthy
    every_band = torch.tensor([[[2.0, 1.0, 3.0, 1.0, 4.0, 1.0]]])  # medians: 3 (g0) and 1 (g1)
    assert float(network.loss(one_band)[0]) == 0.0
    torch.testing.assert_close(network.loss(every_band)[0], torch.tensor((9.0 + 1.0) / 2.0))
    with pytest.raises(ValueError, match="groups"):
        get_autoencoder("consensus", in_channels=1, in_features=7, groups=2)


def learned(network: str, frontend: str, window: int) -> tuple[torch.nn.Module, float]:
    recordings = [motor_like(rpm, 12 * HOP * 8, seed=i)[None, :] for i, rpm in enumerate((1400, 1600, 1800, 2000))]
    config = AnomalyConfig(
        network=network,
        frontend=frontend,
        window_samples=window,
        hop_samples=HOP,
        train_hop_samples=HOP,
        cross_fit=True,
    )
    result = learn(recordings, RATE_HZ, config)
    return torch.jit.script(result.detector.eval()), result.threshold


def test_one_knock_in_a_healthy_recording_raises_no_debounced_alert_where_envspread_raised_one() -> None:
    healthy = knocked(motor_like(1700.0, 40 * HOP, seed=9), at=20 * HOP + 300)[None, :]
    fault = motor_like(1700.0, 40 * HOP, depth=0.5, seed=9)[None, :]
    old, old_threshold = learned("excess", "envspread", 8192)
    old_flags = scores_of(old, [healthy], 8192, HOP) > old_threshold
    assert debounced_alert(old_flags)  # the defect: one event fills 3-4 overlapping windows
    new, new_threshold = learned("consensus", "blockspread", WINDOW)
    assert not debounced_alert(scores_of(new, [healthy], WINDOW, HOP) > new_threshold)
    assert debounced_alert(scores_of(new, [fault], WINDOW, HOP) > new_threshold)


def test_edge_agent_learn_writes_a_consensus_blockspread_model_the_runtime_loads(tmp_path: Path) -> None:

    from edge_agent.cli import main
    from edge_agent.modelfile import load_model, read_meta

    paths = []
    for i, rpm in enumerate((1400, 1600, 1800)):
        pcm = np.clip(np.round(motor_like(rpm, 8 * WINDOW, seed=i) * 0.05 * 32767), -32768, 32767).astype("<i2")
        paths.append(tmp_path / f"{rpm}.wav")
        wavfile.write(paths[-1], int(RATE_HZ), pcm)
    out = tmp_path / "motor.pt"
    args = ["learn", "--out", str(out), "--model", "consensus", "--frontend", "blockspread", "--cross-fit"]
    assert main([*args, "--spread-bands", "6", "--window-samples", str(WINDOW), "--quiet", *map(str, paths)]) == 0
    meta = read_meta(out)
    assert meta["network"]["name"] == "consensus" and meta["network"]["parameters"] == 0
    assert meta["frontend"]["kind"] == "blockspread" and meta["frontend"]["bands"] == 6
    assert meta["frontend"]["over_blocks"] == "median"
    module = load_model(out).module
    with torch.inference_mode():
        fault = float(module(torch.from_numpy(motor_like(1700.0, WINDOW, depth=0.5, seed=9) * 0.05).reshape(1, 1, -1)))
        healthy = float(module(torch.from_numpy(motor_like(1700.0, WINDOW, seed=9) * 0.05).reshape(1, 1, -1)))
    assert fault > meta["threshold"] > healthy
