"""The network's own noise estimate: the soft thresholds ``tau`` one shrinkage unit learns per window.

A residual shrinkage unit sets ``tau = alpha * mean|features|`` per channel and zeroes every feature
below it: ``tau`` is the level the network treats as noise. :class:`NoiseFloorNet2d` computes the
logits of a :class:`~edge_agent.nn.channels_last.ResidualNet2d` and, in the same pass, the mean over
channels of ``tau`` of one unit divided by a reference (the median on clean held-out windows, measured
at export), so ``1.0`` means "as clean as the recordings it was trained on" whatever the sensor or model.
The export splits the two outputs into the scripted module's ``forward`` (logits, unchanged) and its
``noise_floor`` method (``(N,)``, only the layers up to that unit). Which unit tracks added noise best
was measured on held-out data (``docs/results/noise_floor.md``).
"""

from __future__ import annotations

import torch
from torch import nn

from edge_agent.nn.channels_last import AudioResidualNet2d, Block2d, ResidualNet2d

DEFAULT_UNIT = 1  # blocks.1: tracked added noise best on both shipped models (docs/results/noise_floor.md)


class NoiseFloorNet2d(nn.Module):
    """``forward(x) -> (logits, noise_floor)``; shares ``network``'s layers (same names, for quantisation)."""

    def __init__(self, network: ResidualNet2d, *, unit: int = DEFAULT_UNIT, reference: float = 1.0) -> None:
        super().__init__()
        if not 0 <= unit < len(network.blocks):
            raise ValueError(f"unit must be in 0..{len(network.blocks) - 1}, got {unit}")
        if not reference > 0:
            raise ValueError(f"reference must be > 0, got {reference}")
        self.unit = unit
        self.reference = float(reference)
        self.audio = isinstance(network, AudioResidualNet2d)
        self.abstain_rms = network.abstain_rms if isinstance(network, AudioResidualNet2d) else 0.0
        self.frontend: nn.Module = network.frontend if isinstance(network, AudioResidualNet2d) else nn.Identity()
        self.normalize = network.normalize
        self.stem = network.stem
        self.blocks = network.blocks
        self.head_bn = network.head_bn
        self.head_relu = network.head_relu
        self.fc = network.fc

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = x
        x = self.normalize(self.frontend(x)).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        noise = x.new_zeros(x.shape[0])
        for index, block in enumerate(self.blocks):
            if index == self.unit and isinstance(block, Block2d):
                x, tau = block.forward_with_thresholds(x)
                noise = tau.mean(dim=1) / self.reference
            else:
                x = block(x)
        logits = self.fc(self.head_relu(self.head_bn(x)).mean(dim=(2, 3)))
        if self.audio:
            centred = raw - raw.mean(dim=-1, keepdim=True)
            rms = torch.sqrt(centred.pow(2).mean(dim=(1, 2)))
            logits = logits * (rms >= self.abstain_rms).to(raw.dtype).unsqueeze(1)
        return logits, noise
