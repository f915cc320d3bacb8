from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_agent.training.noise import NOISE_TYPES, NoiseAugmenter, add_noise, measured_snr_db


@pytest.mark.parametrize("kind", NOISE_TYPES)
@pytest.mark.parametrize("snr_db", [-10.0, -5.0, 0.0, 5.0])
def test_achieved_snr_matches_request(kind: str, snr_db: float) -> None:
    generator = torch.Generator().manual_seed(1)
    clean = torch.randn(32, 1, 2048, generator=generator) * torch.linspace(0.1, 3.0, 32).reshape(32, 1, 1)
    noisy = add_noise(clean, kind, snr_db, generator)
    achieved = measured_snr_db(clean, noisy)
    assert float((achieved - snr_db).abs().max()) < 0.1


def test_per_window_snrs() -> None:
    clean = torch.randn(3, 2, 1024)
    snrs = torch.tensor([-8.0, 0.0, 4.0])
    achieved = measured_snr_db(clean, add_noise(clean, "gaussian", snrs))
    torch.testing.assert_close(achieved, snrs, atol=0.1, rtol=0)


def test_pink_noise_power_falls_as_one_over_f() -> None:
    noise = add_noise(torch.ones(64, 1, 4096), "pink", 0.0) - 1.0
    power = (torch.fft.rfft(noise, dim=-1).abs() ** 2).mean(dim=(0, 1)).numpy()
    freqs = np.arange(power.size)
    band = slice(8, 1024)
    slope = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
    assert -1.2 < slope < -0.8


def test_laplacian_noise_is_heavier_tailed_than_gaussian() -> None:
    zeros = torch.ones(16, 1, 4096)
    kurtosis = {}
    for kind in ("gaussian", "laplacian"):
        n = (add_noise(zeros, kind, 0.0, torch.Generator().manual_seed(0)) - 1.0).flatten()
        kurtosis[kind] = float(((n - n.mean()) ** 4).mean() / n.var() ** 2)
    assert kurtosis["gaussian"] == pytest.approx(3.0, abs=0.2)
    assert kurtosis["laplacian"] == pytest.approx(6.0, abs=0.6)


def test_unknown_noise_type_is_named() -> None:
    with pytest.raises(ValueError, match="unknown noise type 'brown'"):
        add_noise(torch.ones(1, 1, 8), "brown", 0.0)


def test_augmenter_keeps_a_clean_fraction_and_is_deterministic() -> None:
    clean = torch.randn(2000, 1, 64)
    out_a = NoiseAugmenter((-5.0, 5.0), clean_fraction=0.25, seed=3)(clean)
    out_b = NoiseAugmenter((-5.0, 5.0), clean_fraction=0.25, seed=3)(clean)
    torch.testing.assert_close(out_a, out_b)
    untouched = (out_a == clean).all(dim=(1, 2)).float().mean().item()
    assert untouched == pytest.approx(0.25, abs=0.04)
    snr = measured_snr_db(clean, out_a)
    noisy = torch.isfinite(snr)
    assert float(snr[noisy].min()) >= -5.1 and float(snr[noisy].max()) <= 5.1
