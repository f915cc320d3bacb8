"""Level-invariant audio front-ends and the audio DRSN-CW (a :class:`ResidualNet1d` behind a front-end).

A microphone's gain is unknown at run time, so every front-end first standardises each window
(and channel) by its own mean and standard deviation: multiplying the input by any gain leaves
the network's input unchanged. Windows whose RMS is below ``abstain_rms`` (digital silence, a
dead input) get all-zero logits, i.e. a uniform class distribution: the model abstains rather
than guess from amplified quantisation noise (the agent's ``silent`` health alert covers them).

Front-ends (input ``(N, C, L)`` raw samples, float32):

- ``raw``: the standardised waveform ``(N, C, L)``.
- ``logspec``: a Welch log-power spectrum: Hann frames of ``n_fft`` samples at hop
  ``n_fft // 2``, power averaged over the frames, ``log``, then standardised over the bins
  (per window); bins 1 .. ``n_fft // 2`` (DC dropped), so ``(N, C, n_fft // 2)``. The network
  then convolves along frequency.

Both are plain tensor code: traceable by TorchScript and by FX (the convolutions behind them are
quantised to int8, the front-end stays float32).
"""

from __future__ import annotations

import torch
from torch import nn

from edge_agent.nn.models import ResidualNet1d

FRONTENDS = ("raw", "logspec")
DEFAULT_ABSTAIN_RMS = 3.0e-5  # about -90 dBFS for full-scale float input: 16-bit digital silence


def standardize_windows(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps**2)`` over the last axis of every window and channel (gain-invariant)."""
    centred = x - x.mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(dim=-1, keepdim=True) + eps * eps)


class RawFrontEnd(nn.Module):
    """The per-window standardised waveform ``(N, C, L)``."""

    def __init__(self, window_samples: int) -> None:
        super().__init__()
        self.window_samples = window_samples
        self.out_length = window_samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return standardize_windows(x)


class LogSpectrumFrontEnd(nn.Module):
    """Welch log-power spectrum ``(N, C, n_fft // 2)``, standardised over bins per window."""

    def __init__(self, window_samples: int, n_fft: int = 1024) -> None:
        super().__init__()
        if n_fft < 8 or n_fft > window_samples:
            raise ValueError(f"n_fft must be in 8..window_samples ({window_samples}), got {n_fft}")
        self.window_samples = window_samples
        self.n_fft = n_fft
        self.hop = n_fft // 2
        self.out_length = n_fft // 2
        self.register_buffer("taper", torch.hann_window(n_fft, periodic=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = standardize_windows(x).unfold(-1, self.n_fft, self.hop)  # (N, C, frames, n_fft)
        spectrum = torch.fft.rfft(frames * self.taper, dim=-1)
        power = (spectrum.real.pow(2) + spectrum.imag.pow(2)).mean(dim=2)[:, :, 1:]  # (N, C, n_fft // 2)
        logpower = torch.log(power + 1e-5)  # power of a unit-variance signal: the floor is -50 dB
        return standardize_windows(logpower)


class AudioResidualNet1d(ResidualNet1d):
    """A :class:`ResidualNet1d` fed by a level-invariant front-end, abstaining on silent windows.

    Takes raw windows ``(N, C, window_samples)`` (full-scale units) and returns logits. The
    inherited ``normalize`` (Standardize) is left at mean 0, std 1: the front-end normalises.
    """

    def __init__(
        self,
        *,
        frontend: str,
        window_samples: int,
        n_fft: int = 1024,
        abstain_rms: float = DEFAULT_ABSTAIN_RMS,
        **kwargs: object,
    ) -> None:
        if frontend == "raw":
            front: nn.Module = RawFrontEnd(window_samples)
        elif frontend == "logspec":
            front = LogSpectrumFrontEnd(window_samples, n_fft)
        else:
            raise ValueError(f"frontend must be one of {FRONTENDS}, got {frontend!r}")
        super().__init__(window_samples=front.out_length, **kwargs)  # type: ignore[arg-type]
        self.frontend = front
        self.frontend_name = frontend
        self.window_samples = window_samples
        self.abstain_rms = float(abstain_rms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=-1, keepdim=True)
        rms = torch.sqrt(centred.pow(2).mean(dim=(1, 2)))  # (N,)
        audible = (rms >= self.abstain_rms).to(x.dtype).unsqueeze(1)  # (N, 1)
        logits = super().forward(self.frontend(x))
        return logits * audible


def audio_drsn_cw(*, num_classes: int, frontend: str, window_samples: int, **kwargs: object) -> AudioResidualNet1d:
    """DRSN-CW (channel-wise thresholds) behind an audio front-end.

    Not in the :func:`~edge_agent.nn.get_model` registry: its models take a front-end and are
    traced (``super().forward`` is not scriptable), where the registry's are scripted too.
    """
    return AudioResidualNet1d(
        num_classes=num_classes,
        frontend=frontend,
        window_samples=window_samples,
        shrinkage="cw",
        shortcut=True,
        **kwargs,
    )
