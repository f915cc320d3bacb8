"""The network's own noise estimate: the soft thresholds ``tau`` its shrinkage units learn per window.

A residual shrinkage unit sets ``tau = alpha * mean|features|`` per channel and zeroes every feature
below it: ``tau`` is the level the network treats as noise. :class:`NoiseFloorNet2d` computes the
logits of a :class:`~edge_agent.nn.channels_last.ResidualNet2d` and, in the same pass, the noise floor:
the geometric mean, over the channels of the chosen units, of ``tau / reference``, where ``reference``
is that channel's median ``tau`` on clean training windows (measured at export). So ``1.0`` means "as
clean as the recordings it was trained on" whatever the sensor, channel scale or model; every channel
counts alike (a plain mean of ``tau`` is dominated by the channels with the largest features, which
on the vibration model's normal windows did not follow added noise). Which units track added noise
best was measured on validation data (``docs/results/noise_floor.md``): the first two.

The export splits the outputs into the scripted module's methods: ``forward`` (logits, unchanged),
``noise_floor`` (``(N,)``, only the layers up to the last chosen unit) and ``forward_with_noise_floor``
(both, one pass: what the agent calls).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edge_agent.nn.channels_last import AudioResidualNet2d, Block2d, ResidualNet2d

DEFAULT_UNITS = (0, 1)  # tracked added noise on every class of both shipped models (docs/results/noise_floor.md)


class NoiseFloorNet2d(nn.Module):
    """``forward(x) -> (logits, noise_floor)``; shares ``network``'s layers (same names, for quantisation).

    ``references``: per unit in ``units``, the ``(C,)`` thresholds that map to 1.0 (default: ones, the raw
    ``tau``; :meth:`thresholds` gives what to take their median of).
    """

    def __init__(
        self,
        network: ResidualNet2d,
        *,
        units: Sequence[int] = DEFAULT_UNITS,
        references: Sequence[torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not units or any(not 0 <= u < len(network.blocks) for u in units) or len(set(units)) != len(units):
            raise ValueError(f"units must be distinct indices in 0..{len(network.blocks) - 1}, got {tuple(units)}")
        if not all(isinstance(network.blocks[u], Block2d) for u in units):
            raise TypeError("every noise-floor unit must be a residual shrinkage unit")
        self.units = tuple(sorted(units))
        self.audio = isinstance(network, AudioResidualNet2d)
        self.abstain_rms = network.abstain_rms if isinstance(network, AudioResidualNet2d) else 0.0
        self.frontend: nn.Module = network.frontend if isinstance(network, AudioResidualNet2d) else nn.Identity()
        self.normalize = network.normalize
        self.stem = network.stem
        self.blocks = network.blocks
        self.head_bn = network.head_bn
        self.head_relu = network.head_relu
        self.fc = network.fc
        widths = [network.blocks[u].conv2.out_channels for u in self.units]
        if references is None:
            references = [torch.ones(width) for width in widths]
        reference = torch.cat([r.detach().reshape(-1) for r in references])
        if reference.numel() != sum(widths) or not bool((reference > 0).all()):
            raise ValueError(f"references must be {sum(widths)} positive thresholds, got {reference.numel()}")
        self.register_buffer("log_reference", torch.log(reference.clone()))

    def thresholds(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``tau`` ``(N, C)`` of each chosen unit (eager; for measuring references)."""
        return self._run(x)[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, taus = self._run(x)
        relative = torch.log(torch.cat(taus, dim=1).clamp_min(1e-20)) - self.log_reference
        return logits, torch.exp(relative.mean(dim=1))

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raw = x
        x = self.normalize(self.frontend(x)).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        taus: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks):
            if index in self.units and isinstance(block, Block2d):
                x, tau = block.forward_with_thresholds(x)
                taus.append(tau)
            else:
                x = block(x)
        logits = self.fc(self.head_relu(self.head_bn(x)).mean(dim=(2, 3)))
        if self.audio:
            centred = raw - raw.mean(dim=-1, keepdim=True)
            rms = torch.sqrt(centred.pow(2).mean(dim=(1, 2)))
            logits = logits * (rms >= self.abstain_rms).to(raw.dtype).unsqueeze(1)
        return logits, taus
