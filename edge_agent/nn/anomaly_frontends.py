"""Front-ends of the anomaly detectors: raw windows ``(N, C, L)`` in sensor units -> features ``(N, C, F)``.

Each runs inside the exported graph (plain tensor code, TorchScript-clean). ``level_invariant``
first scales every window (and channel) to zero mean and unit RMS, so a louder or quieter copy of
the same signal gives the same features (a microphone's gain is unknown); without it the features
keep the sensor's level (on vibration a fault often shows first as more energy).

- ``raw``: the (optionally standardised) waveform, ``F = window_samples``.
- ``logspec``: Welch log-power spectrum: Hann frames of ``n_fft`` at hop ``n_fft // 2``, power averaged
  over frames, bins 1 .. ``n_fft // 2`` (DC dropped), natural log: ``F = n_fft // 2``.
- ``logmel``: the same Welch power pooled by ``n_bands`` triangular mel-scale filters, log: ``F = n_bands``.
- ``envelope``: Hilbert envelope of the window band-passed to ``[band_low_hz, band_high_hz]``
  (in the frequency domain), its power spectrum over the whole window, log, bins 1 .. ``n_bins``
  (the bearing defect rates live at tens to hundreds of Hz): ``F = n_bins``.
- ``bandkurtosis``: log kurtosis ``log(E[y^4] / E[y^2]^2)`` of the whole window and of the window
  band-passed (in the frequency domain) to each of ``kurtosis_bands`` log-spaced bands from 50 Hz to Nyquist:
  impulsiveness per band, scale-free (level-invariant by construction) and barely moved by a change of
  speed, where spectral lines move: ``F = kurtosis_bands + 1``.
- ``envspread``: amplitude modulation, scale-free and speed-stable. The window and its band-passed copies
  (``spread_bands`` log-spaced bands from :data:`SPREAD_LOW_HZ` to Nyquist, in the frequency domain) are cut
  into frames of each of :data:`SPREAD_FRAMES` samples (those giving >= 4 frames); the short-time envelope
  ``0.5 * log(frame power)`` is taken per frame, and the feature is ``log(q90 - q10)`` of it over the frames:
  how much the level swings inside the window (a loose or damaged propeller modulates the sound; a
  stationary healthy whine, at whatever speed and pitch, does not), the 10-90 % range rather than the
  standard deviation so that one click does not carry the window. A gain cancels in the difference of
  logs: ``F = (spread_bands + 1) * len(frames)``.
- ``blockspread``: the envelope's spread (log standard deviation) per sub-block of the window, median over
  the sub-blocks (robust to one transient), from one framed ``rfft`` per frame length and no sort (cheap):
  :mod:`edge_agent.nn.blockspread`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

from edge_agent.nn.blockspread import BlockSpread

FRONTENDS = ("raw", "logspec", "logmel", "envelope", "bandkurtosis", "envspread", "blockspread")
# ratios of the signal to itself: level-invariant whatever the setting
SCALE_FREE = ("bandkurtosis", "envspread", "blockspread")
SPREAD_FRAMES = (16, 64, 256)  # envelope frame lengths (samples) of ``envspread``
SPREAD_LOW_HZ = 1000.0  # lowest band edge of ``envspread``
SPREAD_QUANTILES = (0.1, 0.9)
LOG_FLOOR = 1e-10  # added to powers before the log: -100 dB of a unit-RMS (or 1 g RMS) signal


def standardize_windows(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps**2)`` over the last axis of every window and channel."""
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(dim=-1, keepdim=True) + eps * eps)


def mel_filterbank(n_bins: int, n_bands: int, sample_rate_hz: float, f_min_hz: float = 0.0) -> np.ndarray:
    """Triangular filters ``(n_bins, n_bands)`` on the mel scale over rfft bins 1 .. n_bins (HTK mel)."""

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    nyquist_hz = sample_rate_hz / 2.0
    bin_hz = np.arange(1, n_bins + 1) * nyquist_hz / n_bins
    edges_hz = hz(np.linspace(mel(f_min_hz), mel(nyquist_hz), n_bands + 2))
    bank = np.zeros((n_bins, n_bands), np.float32)
    for band in range(n_bands):
        low, centre, high = edges_hz[band : band + 3]
        rising = (bin_hz - low) / max(centre - low, 1e-9)
        falling = (high - bin_hz) / max(high - centre, 1e-9)
        bank[:, band] = np.clip(np.minimum(rising, falling), 0.0, None)
        if bank[:, band].sum() == 0.0:  # a band narrower than a bin: take the nearest bin
            bank[int(np.argmin(np.abs(bin_hz - centre))), band] = 1.0
    return bank / bank.sum(axis=0, keepdims=True)


def band_mask(freqs_hz: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """1.0 on rfft bins in ``[low_hz, high_hz)``, DC excluded."""
    mask = ((freqs_hz >= low_hz) & (freqs_hz < high_hz)).astype(np.float32)
    mask[0] = 0.0
    return mask


class AnomalyFrontEnd(nn.Module):
    """One of :data:`FRONTENDS`; ``out_features`` is ``F``."""

    def __init__(
        self,
        kind: str,
        *,
        window_samples: int,
        sample_rate_hz: float,
        level_invariant: bool = True,
        n_fft: int = 256,
        n_bands: int = 32,
        band_low_hz: float = 2000.0,
        band_high_hz: float = 5000.0,
        n_bins: int = 128,
        kurtosis_bands: int = 12,
        spread_bands: int = 3,
    ) -> None:
        super().__init__()
        if kind not in FRONTENDS:
            raise ValueError(f"front-end must be one of {FRONTENDS}, got {kind!r}")
        if kind in ("logspec", "logmel") and not 8 <= n_fft <= window_samples:
            raise ValueError(f"n_fft must be in 8..window_samples ({window_samples}), got {n_fft}")
        self.kind = kind
        self.level_invariant = level_invariant
        self.log_floor = LOG_FLOOR
        self.window_samples = window_samples
        self.n_fft = n_fft
        self.hop = max(1, n_fft // 2)
        self.register_buffer("taper", torch.hann_window(n_fft, periodic=True))
        bins = n_fft // 2
        n_bands = min(n_bands, bins)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(bins, n_bands, sample_rate_hz)))
        half = window_samples // 2 + 1
        freqs_hz = torch.arange(half, dtype=torch.float32) * sample_rate_hz / window_samples
        nyquist_hz = sample_rate_hz / 2.0
        low_hz, high_hz = min(band_low_hz, 0.8 * nyquist_hz), min(band_high_hz, nyquist_hz)
        passband = ((freqs_hz >= low_hz) & (freqs_hz <= high_hz)).to(torch.float32)
        self.register_buffer("passband", passband * 2.0)  # one-sided spectrum: the analytic signal
        self.n_bins = min(n_bins, window_samples // 2)
        edges_hz = np.geomspace(50.0, nyquist_hz, kurtosis_bands + 1)
        masks = [np.ones(half, np.float32)] + [
            ((freqs_hz.numpy() >= lo) & (freqs_hz.numpy() < hi)).astype(np.float32)
            for lo, hi in itertools.pairwise(edges_hz)
        ]
        masks[0][0] = 0.0
        self.register_buffer(
            "band_masks", torch.from_numpy(np.stack(masks)) if kind == "bandkurtosis" else torch.zeros(1, 1)
        )
        low_hz = min(SPREAD_LOW_HZ, nyquist_hz / 4.0)
        spread = [band_mask(freqs_hz.numpy(), 0.0, nyquist_hz + 1.0)]
        spread += (
            [
                band_mask(freqs_hz.numpy(), lo, hi)
                for lo, hi in itertools.pairwise(np.geomspace(low_hz, nyquist_hz, spread_bands + 1))
            ]
            if spread_bands
            else []
        )
        self.register_buffer(
            "spread_masks", torch.from_numpy(np.stack(spread)) if kind == "envspread" else torch.zeros(1, 1)
        )
        self.spread_frames: list[int] = [f for f in SPREAD_FRAMES if window_samples // f >= 4]
        if kind == "envspread" and not self.spread_frames:
            raise ValueError(f"envspread needs window_samples >= {4 * SPREAD_FRAMES[0]}, got {window_samples}")
        self.register_buffer("spread_quantiles", torch.tensor(SPREAD_QUANTILES))
        active = kind == "blockspread"
        self.blockspread = BlockSpread(window_samples, sample_rate_hz, spread_bands, SPREAD_LOW_HZ, active)
        groups = {"envspread": len(self.spread_frames), "blockspread": self.blockspread.groups}
        self.feature_groups = groups.get(kind, 1)  # feature blocks (frame lengths), band-major within
        self.out_features = {
            "raw": window_samples,
            "logspec": bins,
            "logmel": n_bands,
            "envelope": self.n_bins,
            "bandkurtosis": kurtosis_bands + 1,
            "envspread": (spread_bands + 1) * len(self.spread_frames),
            "blockspread": self.blockspread.out_features,
        }[kind]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = standardize_windows(x) if self.level_invariant else x - x.mean(dim=-1, keepdim=True)
        if self.kind == "raw":
            return x
        if self.kind == "envelope":
            return self._envelope(x)
        if self.kind == "bandkurtosis":
            return self._band_kurtosis(x)
        if self.kind == "envspread":
            return self._envelope_spread(x)
        if self.kind == "blockspread":
            return self.blockspread(x)
        power = self._welch(x)
        if self.kind == "logmel":
            power = torch.matmul(power, self.mel)
        return torch.log(power + self.log_floor)

    def _welch(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.unfold(-1, self.n_fft, self.hop)  # (N, C, frames, n_fft)
        spectrum = torch.fft.rfft(frames * self.taper, dim=-1)
        power = spectrum.real.pow(2) + spectrum.imag.pow(2)
        return power.mean(dim=2)[:, :, 1:] / float(self.n_fft)  # (N, C, n_fft // 2)

    def _band_kurtosis(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x, dim=-1).unsqueeze(2)  # (N, C, 1, half)
        bands = torch.fft.irfft(spectrum * self.band_masks, n=self.window_samples, dim=-1)  # (N, C, B, L)
        power = bands.pow(2).mean(dim=-1)
        return torch.log(bands.pow(4).mean(dim=-1) / (power.pow(2) + self.log_floor) + self.log_floor)

    def _envelope_spread(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x, dim=-1).unsqueeze(2)  # (N, C, 1, half)
        bands = torch.fft.irfft(spectrum * self.spread_masks, n=self.window_samples, dim=-1)  # (N, C, B, L)
        spreads = []
        for frame in self.spread_frames:
            count = self.window_samples // frame
            framed = bands[..., : count * frame].reshape(bands.shape[0], bands.shape[1], bands.shape[2], count, frame)
            log_envelope = 0.5 * torch.log(framed.pow(2).mean(dim=-1) + self.log_floor)  # (N, C, B, frames)
            low_high = torch.quantile(log_envelope, self.spread_quantiles, dim=-1)  # (2, N, C, B)
            spreads.append(torch.log(low_high[1] - low_high[0] + 1e-6))
        return torch.stack(spreads, dim=-1).flatten(2)  # (N, C, B * frames), band-major

    def _envelope(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x, dim=-1) * self.passband
        analytic = torch.fft.ifft(spectrum, n=self.window_samples, dim=-1)  # positive frequencies only
        envelope = analytic.abs()
        envelope = envelope - envelope.mean(dim=-1, keepdim=True)
        env_spectrum = torch.fft.rfft(envelope, dim=-1)[:, :, 1 : self.n_bins + 1]
        power = (env_spectrum.real.pow(2) + env_spectrum.imag.pow(2)) / float(self.window_samples)
        return torch.log(power + self.log_floor)


def describe_frontend(front: AnomalyFrontEnd, sample_rate_hz: float) -> dict[str, object]:
    """The front-end's settings for ``meta.json``."""
    info: dict[str, object] = {"kind": front.kind, "level_invariant": front.level_invariant}
    info["features"] = front.out_features
    if front.kind in ("logspec", "logmel"):
        info.update(n_fft=front.n_fft, hop=front.hop, bin_hz=sample_rate_hz / front.n_fft, log="natural, power + 1e-10")
    if front.kind == "logmel":
        info["bands"] = int(front.mel.shape[1])
    if front.kind == "bandkurtosis":
        info["bands"] = int(front.band_masks.shape[0]) - 1
    if front.kind == "envspread":
        info.update(
            bands=int(front.spread_masks.shape[0]) - 1,
            low_hz=min(SPREAD_LOW_HZ, sample_rate_hz / 8.0),
            frames_samples=list(front.spread_frames),
            quantiles=list(SPREAD_QUANTILES),
        )
    if front.kind == "blockspread":
        block = front.blockspread
        info.update(
            bands=front.out_features // block.groups - 1,
            low_hz=min(SPREAD_LOW_HZ, sample_rate_hz / 8.0),
            frames_samples=list(block.frames),
            block_samples=block.block,
            block_hop_samples=block.block_hop,
            spread="log std of the log envelope per sub-block",
            over_blocks="median",
        )
    if front.kind == "envelope":
        band = (front.passband > 0).nonzero().flatten()
        step_hz = sample_rate_hz / front.window_samples
        info.update(
            band_hz=[float(band.min()) * step_hz, float(band.max()) * step_hz] if band.numel() else None,
            bins=front.n_bins,
            bin_hz=step_hz,
            max_hz=math.floor(front.n_bins * step_hz),
        )
    return info
