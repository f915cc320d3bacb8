"""Additive noise at a requested signal-to-noise ratio, per window.

SNR_dB = 10 * log10(P_signal / P_noise), with powers measured over each window (all channels).
The noise is rescaled by its own measured power, so the achieved SNR equals the request.
"""

from __future__ import annotations

import math

import torch

NOISE_TYPES = ("gaussian", "laplacian", "pink")


def _unit_noise(kind: str, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
    if kind == "gaussian":
        return torch.randn(shape, generator=generator)
    if kind == "laplacian":
        uniform = torch.rand(shape, generator=generator) * 0.999998 + 1e-6 - 0.5
        return -torch.sign(uniform) * torch.log1p(-2.0 * uniform.abs())
    if kind == "pink":
        white = torch.randn(shape, generator=generator)
        spectrum = torch.fft.rfft(white, dim=-1)
        freqs = torch.arange(spectrum.shape[-1], dtype=torch.float32)
        freqs[0] = 1.0  # keep DC finite; it is removed below
        spectrum = spectrum / torch.sqrt(freqs)  # power ~ 1/f
        spectrum[..., 0] = 0
        return torch.fft.irfft(spectrum, n=shape[-1], dim=-1)
    raise ValueError(f"unknown noise type {kind!r}; choose one of {', '.join(NOISE_TYPES)}")


def add_noise(
    windows: torch.Tensor,
    kind: str,
    snr_db: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``windows`` ``(N, C, L)`` plus ``kind`` noise at ``snr_db`` (scalar or ``(N,)``)."""
    noise = _unit_noise(kind, windows.shape, generator)
    signal_power = windows.pow(2).mean(dim=(1, 2), keepdim=True)
    noise_power = noise.pow(2).mean(dim=(1, 2), keepdim=True).clamp_min(1e-20)
    snr = torch.as_tensor(snr_db, dtype=windows.dtype).reshape(-1, 1, 1)
    target_power = signal_power / torch.pow(10.0, snr / 10.0)
    return windows + noise * torch.sqrt(target_power / noise_power)


def measured_snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Per-window SNR in dB of ``noisy`` against ``clean``."""
    noise = noisy - clean
    ratio = clean.pow(2).mean(dim=(1, 2)) / noise.pow(2).mean(dim=(1, 2))
    return 10.0 * torch.log10(ratio)


class NoiseAugmenter:
    """Random noise type and SNR per window; a fraction of windows stays clean."""

    def __init__(
        self,
        snr_range_db: tuple[float, float],
        *,
        clean_fraction: float,
        kinds: tuple[str, ...] = NOISE_TYPES,
        seed: int = 0,
    ) -> None:
        if snr_range_db[0] > snr_range_db[1]:
            raise ValueError(f"snr_range_db must be (low, high), got {snr_range_db}")
        if not 0.0 <= clean_fraction <= 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1], got {clean_fraction}")
        self.snr_range_db = snr_range_db
        self.clean_fraction = clean_fraction
        self.kinds = kinds
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        n = windows.shape[0]
        low, high = self.snr_range_db
        snr = low + (high - low) * torch.rand(n, generator=self.generator)
        kind_index = torch.randint(len(self.kinds), (n,), generator=self.generator)
        clean = torch.rand(n, generator=self.generator) < self.clean_fraction
        out = windows.clone()
        for index, kind in enumerate(self.kinds):
            rows = ((kind_index == index) & ~clean).nonzero().flatten()
            if rows.numel():
                out[rows] = add_noise(windows[rows], kind, snr[rows], self.generator)
        return out


def snr_label(snr_db: float | None) -> str:
    return "clean" if snr_db is None or math.isinf(snr_db) else f"{snr_db:g}"
