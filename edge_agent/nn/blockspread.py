"""``blockspread``: the envelope spread of ``envspread``, made robust to one transient and cheap to compute.

The window is cut into sub-blocks of :data:`BLOCK_SAMPLES` samples (the whole window if shorter) at a hop
of half a block; in each sub-block, per band and per frame length of :data:`BLOCK_FRAMES` (those giving
>= :data:`MIN_FRAMES` frames per block), the short-time log envelope ``0.5 * log(frame power)`` and its
spread, ``log`` of its standard deviation over the sub-block (``envspread`` takes the 10-90 % range over the
whole window: a sort per feature, the most expensive step); the feature is the **median over the
sub-blocks**. A single event (a knock, a start-up surge) lifts the spread of the sub-blocks it falls in and
leaves the median alone; a fault that modulates the sound lifts every sub-block. On a window of 16384
samples (7 sub-blocks) an event shorter than about 2048 samples touches at most 3 of the 7; on 8192 (3
sub-blocks), 2 of the 3 when it falls in the middle.

Cheap: the band power of a frame is the sum of its DFT power over the band's bins (Parseval), so one
``rfft`` of the framed window per frame length replaces a band-pass filter per band (an inverse FFT of the
whole window each) of ``envspread``; the band matrices are one buffer. Bands: the whole window (DC
excluded) and ``bands`` log-spaced bands from :data:`~edge_agent.nn.anomaly_frontends.SPREAD_LOW_HZ` (or
Nyquist / 4, if lower) to Nyquist; where a frame is too short for a band to hold a bin, the nearest bin
stands in. Output ``(N, C, (bands + 1) * len(frames))``, band-major like ``envspread``.
"""

import itertools

import numpy as np
import torch
from torch import nn

BLOCK_FRAMES = (32, 128, 512)  # frame lengths (samples) of the short-time envelope
BLOCK_SAMPLES = 4096  # sub-block length (samples); the hop between sub-blocks is half of it
MIN_FRAMES = 2  # a frame length is used where a sub-block holds this many (4096 samples: 128, 32 and 8)
LOG_FLOOR = 1e-10


def band_bins(frame_samples: int, sample_rate_hz: float, edges_hz: list[tuple[float, float]]) -> np.ndarray:
    """0/1 matrix ``(frame_samples // 2 + 1, len(edges_hz))``: the rfft bins of a frame in each band."""
    freqs_hz = np.fft.rfftfreq(frame_samples, 1.0 / sample_rate_hz)
    bank = np.zeros((len(freqs_hz), len(edges_hz)), np.float32)
    for band, (low_hz, high_hz) in enumerate(edges_hz):
        inside = (freqs_hz >= low_hz) & (freqs_hz < high_hz)
        inside[0] = False  # no DC
        if not inside.any():
            inside[1 + int(np.argmin(np.abs(freqs_hz[1:] - 0.5 * (low_hz + high_hz))))] = True
        bank[inside, band] = 1.0
    return bank


def _at(ordered: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile of each row of sorted ``ordered`` (linear interpolation, as ``torch.quantile``)."""
    position = q * (ordered.shape[-1] - 1)
    below = int(position)
    above = min(below + 1, ordered.shape[-1] - 1)
    fraction = position - below
    return ordered[..., below] * (1.0 - fraction) + ordered[..., above] * fraction


def _median(x: torch.Tensor) -> torch.Tensor:
    return _at(x.sort(dim=-1).values, 0.5)


class BlockSpread(nn.Module):
    """Raw (zero-mean) windows ``(N, C, window_samples)`` -> sub-block median envelope spreads ``(N, C, F)``."""

    frames: list[int]  # empty when the front-end is another kind (the module is then never called)
    offsets: list[int]

    def __init__(self, window_samples: int, sample_rate_hz: float, bands: int, low_hz: float, active: bool) -> None:
        super().__init__()
        self.block = min(BLOCK_SAMPLES, window_samples)
        self.block_hop = max(1, self.block // 2)
        self.frames = [f for f in BLOCK_FRAMES if self.block // f >= MIN_FRAMES] if active else []
        if active and not self.frames:
            raise ValueError(
                f"blockspread needs window_samples >= {MIN_FRAMES * BLOCK_FRAMES[0]}, got {window_samples}"
            )
        nyquist_hz = sample_rate_hz / 2.0
        edges = [(0.0, nyquist_hz + 1.0)]
        if bands:
            edges += list(itertools.pairwise(np.geomspace(min(low_hz, nyquist_hz / 4.0), nyquist_hz, bands + 1)))
        banks = [band_bins(f, sample_rate_hz, edges) for f in self.frames]
        self.offsets = [0, *itertools.accumulate(len(b) for b in banks)]
        self.register_buffer("bank", torch.from_numpy(np.concatenate(banks)) if banks else torch.zeros(1, 1))
        self.log_floor = LOG_FLOOR
        self.out_features = len(edges) * len(self.frames)
        self.groups = max(1, len(self.frames))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        spreads = []
        for index, frame in enumerate(self.frames):
            count = x.shape[-1] // frame
            framed = x[..., : count * frame].reshape(n, c, count, frame)
            spectrum = torch.fft.rfft(framed, dim=-1)
            power = spectrum.real.pow(2) + spectrum.imag.pow(2)  # (N, C, frames, bins)
            bank = self.bank[self.offsets[index] : self.offsets[index + 1]]
            log_envelope = 0.5 * torch.log(torch.matmul(power, bank) + self.log_floor)  # (N, C, frames, B)
            spreads.append(_median(self._block_spread(log_envelope, self.block_hop // frame)))  # (N, C, B)
        return torch.stack(spreads, dim=-1).flatten(2)

    def _block_spread(self, log_envelope: torch.Tensor, chunk: int) -> torch.Tensor:
        """``0.5 * log(variance)`` of ``(N, C, frames, B)`` over each sub-block of two neighbouring half-blocks
        of ``chunk`` frames: ``(N, C, B, blocks)``. From sums per half-block, added in pairs (7x cheaper than
        the variance of an unfolded, strided view at 32-sample frames)."""
        chunks = log_envelope.shape[2] // chunk
        centred = log_envelope - log_envelope.mean(dim=2, keepdim=True)  # a shift: the variance keeps
        shaped = centred[:, :, : chunks * chunk].reshape(centred.shape[0], centred.shape[1], chunks, chunk, -1)
        sums, squares = shaped.sum(dim=3), shaped.pow(2).sum(dim=3)  # (N, C, chunks, B)
        sums = sums[:, :, 1:] + sums[:, :, :-1]
        squares = squares[:, :, 1:] + squares[:, :, :-1]
        mean = sums / float(2 * chunk)
        variance = (squares / float(2 * chunk) - mean.pow(2)).clamp_min(0.0)
        return 0.5 * torch.log(variance + 1e-12).transpose(2, 3)
