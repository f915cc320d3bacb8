"""The noise_floor method: on both shipped models (both precisions), rising with added noise, and from the export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_agent.modelfile import load_model
from edge_agent.nn import get_model
from edge_agent.nn.channels_last import to_channels_last_2d
from edge_agent.nn.noise_floor import NoiseFloorNet2d
from edge_agent.training.export import describe_model, export_model
from edge_agent.training.noise_floor_export import split_outputs
from edge_agent.training.unfreeze import network_from_frozen

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [REPO / "models" / name for name in ("drsn_cw_cwru.pt", "drsn_cw_bldc_audio.pt")]
SHIPPED_ALL = [path for int8 in SHIPPED for path in (int8, int8.with_name(f"{int8.stem}_float.pt"))]
SNRS_DB = (20.0, 10.0, 0.0, -10.0, -20.0)

pytestmark = pytest.mark.usefixtures("one_thread_and_engine")


def tones(rate_hz: float, samples: int, count: int, tones_hz_g: dict[float, float]) -> np.ndarray:
    """``count`` windows ``(count, 1, samples)`` of a sum of sines with random phases (seeded)."""
    generator = np.random.default_rng(0)
    t = np.arange(samples) / rate_hz
    rows = [
        sum(a * np.sin(2 * np.pi * f * t + generator.uniform(0, 2 * np.pi)) for f, a in tones_hz_g.items())
        for _ in range(count)
    ]
    return np.stack(rows)[:, None, :].astype(np.float32)


def floors_vs_noise(path: Path, signal: np.ndarray) -> list[float]:
    """Mean noise floor of ``signal`` clean, then with white noise at each of ``SNRS_DB``."""
    module = load_model(path).module
    generator = np.random.default_rng(1)
    rms = float(np.sqrt(np.mean(signal**2)))
    inputs = [signal] + [
        signal + generator.standard_normal(signal.shape).astype(np.float32) * rms * 10 ** (-snr / 20) for snr in SNRS_DB
    ]
    with torch.inference_mode():
        return [float(module.noise_floor(torch.from_numpy(x)).mean()) for x in inputs]


@pytest.mark.parametrize("path", SHIPPED_ALL, ids=lambda p: p.name)
def test_shipped_models_have_the_method_and_return_one_finite_value_per_window(path: Path) -> None:
    loaded = load_model(path)
    assert loaded.meta.noise_floor is not None
    assert loaded.meta.noise_floor.units == ("blocks.0", "blocks.1")
    inputs = torch.randn(5, loaded.channels, loaded.window_samples, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        floor = loaded.module.noise_floor(inputs)
        logits, both = loaded.module.forward_with_noise_floor(inputs)
        alone = loaded.module(inputs)
    assert floor.shape == (5,)
    assert all(math.isfinite(v) and v > 0 for v in floor.tolist())
    assert torch.allclose(both, floor, atol=1e-6)
    assert torch.allclose(logits, alone, atol=1e-6)  # forward's contract is untouched


@pytest.mark.parametrize("path", [SHIPPED[0], SHIPPED[0].with_name("drsn_cw_cwru_float.pt")], ids=lambda p: p.name)
def test_vibration_noise_floor_rises_with_added_noise_on_a_synthetic_signal(path: Path) -> None:
    signal = tones(12_000.0, 2048, 8, {29.9: 0.05, 162.0: 0.03, 1600.0: 0.08})
    floors = floors_vs_noise(path, signal)
    assert floors == sorted(floors), floors  # clean, +20, +10, 0, -10, -20 dB
    assert floors[-1] > 1.5 * floors[0], floors


AUDIO = [SHIPPED[1], SHIPPED[1].with_name("drsn_cw_bldc_audio_float.pt")]
# The audio model retrained with +-10 % speed augmentation (2026-12-01, models/README.md) fails this on pure
# synthetic tones: its floor is 1.18 clean, 1.19 at 0 dB, then falls to 1.10 at -20 dB (the previous file rose,
# 1.07 -> 1.12). Kept and strict, so a file that passes again shows; on real motor windows (next test) it rises.
HUM_FALLS = pytest.mark.xfail(strict=True, reason="the retrained audio model's floor falls on pure tones + noise")


@pytest.mark.parametrize("path", [pytest.param(p, marks=HUM_FALLS, id=p.name) for p in AUDIO])
def test_audio_noise_floor_rises_with_added_noise_on_a_synthetic_hum(path: Path) -> None:
    signal = tones(16_000.0, 4096, 8, {190.0: 0.3, 380.0: 0.2, 570.0: 0.1, 1140.0: 0.05})
    floors = floors_vs_noise(path, signal)
    # weaker than the vibration model's (docs/results/noise_floor.md): per-window standardisation
    assert floors[0] < floors[3] < floors[5], floors
    assert floors[5] > 1.03 * floors[0], floors


@pytest.fixture(scope="module")
def motor_windows() -> np.ndarray:
    """The first 4 windows (hop 2048) of each BLDC clip, read at run time; skips without the shared data."""
    from edge_agent.training.audio_data import clip_windows, load_bldc

    try:
        dataset = load_bldc()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    return np.concatenate([clip_windows(clip, 4096, 2048)[:4] for clip in dataset.clips])


@pytest.mark.parametrize("path", AUDIO, ids=lambda p: p.name)
def test_audio_noise_floor_rises_with_added_noise_on_real_motor_windows(path: Path, motor_windows: np.ndarray) -> None:
    floors = floors_vs_noise(path, motor_windows)  # clean, +20, +10, 0, -10, -20 dB white noise
    assert floors == sorted(floors), floors
    assert floors[5] > 1.05 * floors[0], floors


@pytest.mark.parametrize("stem", ["drsn_cw_cwru", "drsn_cw_bldc_audio"])
def test_the_eager_network_rebuilt_from_a_float_file_gives_its_logits(stem: str) -> None:
    path = REPO / "models" / f"{stem}_float.pt"
    network, meta = network_from_frozen(path)
    inputs = 0.3 * torch.randn(8, 1, meta["window_samples"], generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.allclose(network(inputs), load_model(path).module(inputs), atol=1e-5)


def tiny(model: str = "drsn_cw") -> torch.nn.Module:
    torch.manual_seed(0)
    network = get_model(model, num_classes=3, widths=(4, 8), blocks_per_stage=1, window_samples=256)
    return network.eval()


@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
def test_export_adds_the_methods_and_keeps_forward(tmp_path: Path, int8: bool) -> None:
    model = tiny()
    windows = torch.randn(64, 1, 256, generator=torch.Generator().manual_seed(3))
    meta = describe_model(model, name="tiny", labels=["a", "b", "c"], sample_rate_hz=12_000, architecture={})
    _, meta = export_model(
        model,
        tmp_path / "tiny.pt",
        meta,
        calibration=windows if int8 else None,
        reference_windows=windows,
        reference_data="64 random windows",
    )
    loaded = load_model(tmp_path / "tiny.pt")
    assert loaded.meta.noise_floor is not None and meta["noise_floor"]["channels"] == 4 + 8
    with torch.inference_mode():
        if not int8:
            assert torch.allclose(loaded.module(windows), model(windows), atol=1e-5)
        floors = loaded.module.noise_floor(windows)
    # the references are the clean windows' per-channel medians: their own floor sits around 1
    assert 0.5 < float(floors.median()) < 2.0


def test_a_baseline_without_shrinkage_gets_no_noise_floor(tmp_path: Path) -> None:
    model = tiny("resnet")
    meta = describe_model(model, name="tiny", labels=["a", "b", "c"], sample_rate_hz=12_000, architecture={})
    _, meta = export_model(model, tmp_path / "r.pt", meta, reference_windows=torch.randn(8, 1, 256))
    assert "noise_floor" not in meta
    assert load_model(tmp_path / "r.pt").meta.noise_floor is None


def test_the_noise_graph_stops_at_its_last_unit() -> None:
    network = to_channels_last_2d(tiny())
    graph = torch.fx.symbolic_trace(NoiseFloorNet2d(network, units=(0,)))
    classify, noise = split_outputs(graph)
    called = {str(node.target) for node in noise.graph.nodes if node.op == "call_module"}
    assert "blocks.0.conv2" in called and "blocks.1.conv1" not in called and "fc" not in called
    assert "fc" in {str(node.target) for node in classify.graph.nodes if node.op == "call_module"}
