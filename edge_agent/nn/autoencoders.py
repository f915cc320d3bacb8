"""Autoencoders for anomaly detection from healthy data only, and the exported detector around them.

An autoencoder works on standardised features ``z`` ``(N, C, F)`` (a front-end's output minus the
healthy mean, divided by the healthy standard deviation) and returns its reconstruction, same shape.
Registered by name (:func:`get_autoencoder`), like the classifiers:

- ``undercomplete``: dense encoder ``C*F -> hidden -> code`` (``code < C*F``), mirrored decoder;
- ``denoising``: the same network trained to reconstruct ``z`` from a corrupted ``z~`` (additive
  Gaussian noise of std ``noise_std`` in z units and/or a random ``mask_fraction`` of features set to 0);
  ``code_weight > 0`` adds the modified objective ``code_weight * mean((enc(z~) - enc(z))**2)``;
- ``sparse``: sigmoid code units, loss + ``beta * sum_j KL(rho || rho_hat_j)`` with ``rho_hat_j`` the
  mean activation of unit ``j`` over the batch (``rho = 0.05``);
- ``conv``: a small 1-D convolutional encoder along the features (spectra are smooth along
  frequency) with a dense decoder;
- ``excess``: no weights, nothing to train: the "reconstruction" is ``min(z, 0)``, the nearest point that is
  no higher than the healthy mean, so the score is ``mean(relu(z)**2)``, the one-sided excess of the
  features over healthy in z units. For front-ends whose features grow with a fault (``envspread``,
  ``bandkurtosis``: more modulation, more impulses); a feature that drops scores 0. It cannot learn the
  correlations of healthy features, and so it cannot mistake an unseen healthy combination of them for
  a fault either (the motor recordings at unseen speeds: docs/results/anomaly_unseen_speeds.md).
- ``consensus``: no weights either; the one-sided excess of the **median over bands**: the features are
  ``groups`` blocks (one per frame length of ``envspread``/``blockspread``, band-major), and the score is
  ``mean_g relu(median_b z[b, g])**2``: the sound must be more modulated than healthy in most bands at
  once, so one band that a recording chain or a resonance makes livelier than every learned recording
  does not carry the window. ``groups = 1``: the median over all features.

:class:`AnomalyDetector` (front-end, standardisation, autoencoder, error weights) maps raw windows to
scores ``(N,)``: ``mean_j w_j (z_j - zhat_j)**2``, the squared error per feature in healthy-z units,
weighted by ``w`` (see :func:`edge_agent.training.anomaly_train.fit_error_weights`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edge_agent.nn.anomaly_frontends import AnomalyFrontEnd
from edge_agent.nn.registry import Registry


def kl_sparsity(codes: torch.Tensor, rho: float) -> torch.Tensor:
    """``sum_j KL(rho || rho_hat_j)``, ``rho_hat_j`` = mean over the batch of sigmoid activation ``j``."""
    rho_hat = codes.mean(dim=0).clamp(1e-6, 1.0 - 1e-6)
    return (rho * torch.log(rho / rho_hat) + (1.0 - rho) * torch.log((1.0 - rho) / (1.0 - rho_hat))).sum()


class Autoencoder(nn.Module):
    """Encoder/decoder on ``(N, C, F)`` with the training objective of its kind in :meth:`loss`."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        in_channels: int,
        in_features: int,
        noise_std: float = 0.0,
        mask_fraction: float = 0.0,
        code_weight: float = 0.0,
        sparsity_weight: float = 0.0,
        sparsity_target: float = 0.05,
    ) -> None:
        super().__init__()
        if noise_std < 0 or not 0.0 <= mask_fraction < 1.0 or code_weight < 0 or sparsity_weight < 0:
            raise ValueError(
                f"invalid objective: noise_std={noise_std}, mask_fraction={mask_fraction}, "
                f"code_weight={code_weight}, sparsity_weight={sparsity_weight}"
            )
        if not 0.0 < sparsity_target < 1.0:
            raise ValueError(f"sparsity_target must be in (0, 1), got {sparsity_target}")
        self.encoder = encoder
        self.decoder = decoder
        self.in_channels = in_channels
        self.in_features = in_features
        self.noise_std = noise_std
        self.mask_fraction = mask_fraction
        self.code_weight = code_weight
        self.sparsity_weight = sparsity_weight
        self.sparsity_target = sparsity_target

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        return self.encoder(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(z)).reshape(z.shape)

    def corrupt(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``z~``: ``z`` plus Gaussian noise (``noise_std``), a ``mask_fraction`` of entries zeroed."""
        out = z
        if self.noise_std > 0:
            noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            out = out + self.noise_std * noise
        if self.mask_fraction > 0:
            keep = torch.rand(z.shape, generator=generator, device=z.device) >= self.mask_fraction
            out = out * keep.to(z.dtype)
        return out

    def loss(
        self, z: torch.Tensor, corrupted: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training objective on a batch: total loss and its parts (``reconstruction``, ...)."""
        if corrupted is None:
            corrupted = self.corrupt(z, generator) if self.noise_std > 0 or self.mask_fraction > 0 else z
        codes = self.encode(corrupted)
        parts = {"reconstruction": (self.decoder(codes).reshape(z.shape) - z).pow(2).mean()}
        if self.code_weight > 0:
            parts["code"] = self.code_weight * (codes - self.encode(z)).pow(2).mean()
        if self.sparsity_weight > 0:
            parts["sparsity"] = self.sparsity_weight * kl_sparsity(codes, self.sparsity_target)
        return sum(parts.values()), parts  # type: ignore[return-value]


def _dense_encoder(inputs: int, hidden: int, code: int, code_activation: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, code), code_activation)


def _dense_decoder(code: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


AutoencoderFactory = Callable[..., Autoencoder]
_AUTOENCODERS: Registry[AutoencoderFactory] = Registry("autoencoder")
register_autoencoder = _AUTOENCODERS.register
list_autoencoders = _AUTOENCODERS.names


def get_autoencoder(name: str, *, in_channels: int, in_features: int, **kwargs: object) -> Autoencoder:
    """Build a registered autoencoder for features ``(N, in_channels, in_features)``."""
    return _AUTOENCODERS.get(name)(in_channels=in_channels, in_features=in_features, **kwargs)


def _check_code(code: int, inputs: int) -> None:
    if not 1 <= code < inputs:
        raise ValueError(f"code size must be in 1..{inputs - 1} (narrower than the input), got {code}")


def _dense(
    in_channels: int, in_features: int, hidden: int, code: int, activation: nn.Module, **objective: float
) -> Autoencoder:
    """Dense encoder (its code through ``activation``) and decoder; ``objective``: the training terms."""
    inputs = in_channels * in_features
    encoder, decoder = _dense_encoder(inputs, hidden, code, activation), _dense_decoder(code, hidden, inputs)
    return Autoencoder(encoder, decoder, in_channels=in_channels, in_features=in_features, **objective)


@register_autoencoder("undercomplete")
def undercomplete(*, in_channels: int, in_features: int, hidden: int = 64, code: int = 8) -> Autoencoder:
    _check_code(code, in_channels * in_features)
    return _dense(in_channels, in_features, hidden, code, nn.Identity())


@register_autoencoder("denoising")
def denoising(
    *,
    in_channels: int,
    in_features: int,
    hidden: int = 64,
    code: int = 8,
    noise_std: float = 0.5,
    mask_fraction: float = 0.1,
    code_weight: float = 0.1,
) -> Autoencoder:
    _check_code(code, in_channels * in_features)
    objective = {"noise_std": noise_std, "mask_fraction": mask_fraction, "code_weight": code_weight}
    return _dense(in_channels, in_features, hidden, code, nn.Identity(), **objective)


@register_autoencoder("sparse")
def sparse(
    *,
    in_channels: int,
    in_features: int,
    hidden: int = 64,
    code: int = 32,
    beta: float = 0.1,
    rho: float = 0.05,
) -> Autoencoder:
    if code < 1:  # the code may be as wide as the input: the penalty keeps it sparse
        raise ValueError(f"code size must be >= 1, got {code}")
    return _dense(in_channels, in_features, hidden, code, nn.Sigmoid(), sparsity_weight=beta, sparsity_target=rho)


@register_autoencoder("conv")
def conv(*, in_channels: int, in_features: int, width: int = 8, hidden: int = 64, code: int = 8) -> Autoencoder:
    if in_features < 16:
        raise ValueError(f"the conv autoencoder needs >= 16 features, got {in_features}")
    _check_code(code, in_channels * in_features)
    pooled = ((in_features + 1) // 2 + 1) // 2  # two stride-2 convolutions, padding 2, kernel 5
    encoder = nn.Sequential(
        nn.Conv1d(in_channels, width, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv1d(width, width, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * pooled, code),
    )
    return Autoencoder(
        encoder,
        _dense_decoder(code, hidden, in_channels * in_features),
        in_channels=in_channels,
        in_features=in_features,
    )


class ClampAbove(nn.Module):
    """``min(z, ceiling)``."""

    def __init__(self, ceiling: float = 0.0) -> None:
        super().__init__()
        self.ceiling = ceiling

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.clamp(max=self.ceiling)


@register_autoencoder("excess")
def excess(*, in_channels: int, in_features: int) -> Autoencoder:
    return Autoencoder(nn.Identity(), ClampAbove(0.0), in_channels=in_channels, in_features=in_features)


class BandConsensus(nn.Module):
    """``z - relu(m)``, ``m`` the median over the bands of each of ``groups`` band-major feature blocks."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        grouped = z.reshape(z.shape[0], z.shape[1], z.shape[2] // self.groups, self.groups)  # (N, C, bands, g)
        median = torch.quantile(grouped, 0.5, dim=2, keepdim=True)
        return (grouped - torch.relu(median)).reshape(z.shape)


@register_autoencoder("consensus")
def consensus(*, in_channels: int, in_features: int, groups: int = 1) -> Autoencoder:
    if groups < 1 or in_features % groups:
        raise ValueError(f"groups must divide the {in_features} features, got {groups}")
    return Autoencoder(nn.Identity(), BandConsensus(groups), in_channels=in_channels, in_features=in_features)


def is_trainable(network: nn.Module) -> bool:
    return any(p.requires_grad for p in network.parameters())


class AnomalyDetector(nn.Module):
    """Raw windows ``(N, C, window_samples)`` in sensor units -> float32 scores ``(N,)``, higher = more anomalous."""

    def __init__(self, frontend: AnomalyFrontEnd, autoencoder: Autoencoder, channels: int) -> None:
        super().__init__()
        features = frontend.out_features
        if autoencoder.in_channels != channels or autoencoder.in_features != features:
            raise ValueError(
                f"autoencoder expects ({autoencoder.in_channels}, {autoencoder.in_features}) features, "
                f"the front-end gives ({channels}, {features})"
            )
        self.frontend = frontend
        self.autoencoder = autoencoder
        self.channels = channels
        self.window_samples = frontend.window_samples
        self.register_buffer("feature_mean", torch.zeros(1, channels, features))
        self.register_buffer("feature_std", torch.ones(1, channels, features))
        self.register_buffer("error_weight", torch.ones(1, channels, features))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised features ``z`` ``(N, C, F)`` of raw windows."""
        return (self.frontend(x) - self.feature_mean) / self.feature_std

    def score_features(self, z: torch.Tensor) -> torch.Tensor:
        return ((self.autoencoder(z) - z).pow(2) * self.error_weight).mean(dim=(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_features(self.features(x))
