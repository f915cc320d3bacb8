"""Export to TorchScript (float32 and int8) and back through the runtime loader, on tiny models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.ao.nn import quantized as nnq
from torch.ao.nn.intrinsic import quantized as nniq

from edge_agent.cli import main
from edge_agent.modelfile import load_model, read_meta
from edge_agent.nn import get_model
from edge_agent.training.export import describe_model, export_model, export_run
from edge_agent.training.quantize import QUANTIZED_ENGINE, conv_module_names, quantize_boundaries, quantize_int8

WINDOW = 256
LABELS = ["low", "mid", "high"]
FREQUENCIES_HZ = (300.0, 1200.0, 3000.0)
SAMPLE_RATE_HZ = 12_000


pytestmark = pytest.mark.usefixtures("one_thread_and_engine")


def sine_windows(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``(count, 1, WINDOW)`` in g: one sine per class with random phase and amplitude, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(LABELS), (count,), generator=generator)
    t = torch.arange(WINDOW) / SAMPLE_RATE_HZ
    frequency = torch.tensor(FREQUENCIES_HZ)[labels].unsqueeze(1)
    phase = 2 * torch.pi * torch.rand(count, 1, generator=generator)
    amplitude = 0.2 + torch.rand(count, 1, generator=generator)
    signal = amplitude * torch.sin(2 * torch.pi * frequency * t + phase)
    return (signal + 0.3 * torch.randn(count, WINDOW, generator=generator)).unsqueeze(1), labels


def tiny_model(*, trained: bool) -> nn.Module:
    torch.manual_seed(0)
    model = get_model("drsn_cw", num_classes=len(LABELS), widths=(4, 8), blocks_per_stage=1, window_samples=WINDOW)
    windows, labels = sine_windows(512, seed=1)
    model.normalize.set_stats(windows.mean().reshape(1), windows.std().reshape(1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1 if trained else 0.0, momentum=0.9)
    model.train()
    for inputs, targets in zip(windows.split(16), labels.split(16), strict=True):  # also moves the BN statistics
        loss = nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    return tiny_model(trained=True)


def tiny_meta(model: nn.Module) -> dict:
    return describe_model(
        model,
        name="tiny",
        labels=LABELS,
        sample_rate_hz=SAMPLE_RATE_HZ,
        architecture={"model": "drsn_cw", "widths": [4, 8], "blocks_per_stage": 1},
    )


def test_the_tiny_model_learned_the_sines(trained: nn.Module) -> None:
    windows, labels = sine_windows(256, seed=2)
    with torch.inference_mode():
        accuracy = (trained(windows).argmax(1) == labels).float().mean()
    assert accuracy > 0.9


def test_float_export_round_trip(trained: nn.Module, tmp_path: Path) -> None:
    out = tmp_path / "tiny-fp32.pt"
    _, meta = export_model(trained, out, tiny_meta(trained))
    assert meta["precision"] == "float32" and meta["quantized_engine"] is None
    assert read_meta(out) == meta
    loaded = load_model(out)
    assert loaded.meta == meta and len(loaded.sha256) == 64
    for batch in (1, 7, 32):
        inputs = torch.randn(batch, 1, WINDOW)
        with torch.inference_mode():
            torch.testing.assert_close(loaded.module(inputs), trained(inputs), atol=1e-5, rtol=1e-5)


def test_meta_describes_the_model(trained: nn.Module) -> None:
    meta = tiny_meta(trained)
    assert meta["schema"] == 1 and meta["kind"] == "classifier" and meta["input_units"] == "g"
    assert meta["window_samples"] == WINDOW and meta["channels"] == 1 and meta["hop_samples"] > 0
    assert meta["normalisation"]["mean"] == pytest.approx(trained.normalize.mean.flatten().tolist())
    assert meta["parameters"] == sum(p.numel() for p in trained.parameters()) and meta["macs_per_window"] > 0
    assert meta["code_version"].startswith("0.") and meta["created_at"].endswith("+00:00")
    json.dumps(meta)  # plain JSON


def test_int8_export_round_trip_and_agreement(trained: nn.Module, tmp_path: Path) -> None:
    out = tmp_path / "tiny-int8.pt"
    calibration, _ = sine_windows(256, seed=3)
    _, meta = export_model(trained, out, tiny_meta(trained), calibration=calibration)
    assert meta["precision"] == "int8" and meta["quantized_engine"] == QUANTIZED_ENGINE
    torch.backends.quantized.engine = "none" if "none" in torch.backends.quantized.supported_engines else "qnnpack"
    loaded = load_model(out)
    assert torch.backends.quantized.engine == QUANTIZED_ENGINE
    assert read_meta(out) == meta == loaded.meta
    windows, labels = sine_windows(256, seed=4)
    with torch.inference_mode():
        for batch in (1, 32):
            assert loaded.module(windows[:batch]).shape == (batch, len(LABELS))
        int8, fp32 = loaded.module(windows), trained(windows)
    agreement = (int8.argmax(1) == fp32.argmax(1)).float().mean()
    # measured on this trained tiny model: agreement 1.00, max logit error ~0.5 % of the logit range
    assert agreement >= 0.97
    assert (int8 - fp32).abs().max() < 0.05 * (fp32.max() - fp32.min())
    assert (int8.argmax(1) == labels).float().mean() > 0.9


def test_int8_untrained_model_still_close_in_logits(tmp_path: Path) -> None:
    model = tiny_model(trained=False)
    calibration = torch.randn(128, 1, WINDOW)
    module, _ = export_model(model, tmp_path / "random.pt", tiny_meta(model), calibration=calibration)
    inputs = torch.randn(64, 1, WINDOW)
    with torch.inference_mode():
        int8, fp32 = module(inputs), model(inputs)
    # random weights give nearly tied logits, so compare values rather than argmax (measured error ~0.014)
    assert (int8 - fp32).abs().max() < 0.05 + 0.1 * fp32.abs().max()


def test_only_convolutions_are_int8(trained: nn.Module) -> None:
    quantized = quantize_int8(trained, sine_windows(64, seed=5)[0])
    modules = dict(quantized.named_modules())
    assert isinstance(modules["stem"], nn.Conv1d)  # float: ~1 % of the MACs, the most sensitive layer
    assert isinstance(modules["blocks.0.conv1"], nniq.ConvReLU1d)  # bn2 + relu2 folded in
    assert isinstance(modules["blocks.0.conv2"], nnq.Conv1d)
    assert "blocks.0.bn2" not in modules and isinstance(modules["blocks.0.bn1"], nn.BatchNorm1d)
    assert isinstance(modules["fc"], nn.Linear) and isinstance(modules["head_bn"], nn.BatchNorm1d)
    assert isinstance(modules["blocks.0.shrinkage.attention.0"], nn.Linear)
    int8_modules = {name for name, module in modules.items() if type(module).__module__.startswith("torch.ao.nn")}
    assert int8_modules == set(conv_module_names(trained)) - {"stem"}
    # one quantize / dequantize pair per unit: conv1 feeds conv2 in int8
    units = len(trained.blocks)
    assert quantize_boundaries(quantized) == {"quantize": units, "dequantize": units}


def test_stem_is_int8_on_request(trained: nn.Module) -> None:
    quantized = quantize_int8(trained, sine_windows(64, seed=5)[0], quantize_stem=True)
    assert isinstance(dict(quantized.named_modules())["stem"], nnq.Conv1d)
    units = len(trained.blocks)
    assert quantize_boundaries(quantized) == {"quantize": units + 1, "dequantize": units + 1}


def test_quantize_refuses_bad_calibration_and_engine(trained: nn.Module) -> None:
    with pytest.raises(
        ValueError, match=r"calibration must be a non-empty \(N, C, L\) tensor, got shape \(0, 1, 256\)"
    ):
        quantize_int8(trained, torch.empty(0, 1, WINDOW))
    with pytest.raises(ValueError, match="quantized engine 'nope' is not supported"):
        quantize_int8(trained, torch.randn(4, 1, WINDOW), engine="nope")


def train_tiny_run(data: Path, run: Path) -> Path:
    args = [
        "--widths",
        "4,8",
        "--blocks-per-stage",
        "1",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--window-samples",
        "512",
    ]
    assert main(["train", "--data", str(data), "--out", str(run), "--batch-size", "16", "--quiet", *args]) == 0
    return run


def test_cli_export_of_a_run(fake_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = train_tiny_run(fake_data_root, tmp_path / "run")
    capsys.readouterr()
    out = tmp_path / "model.pt"
    # two optimiser steps leave the tiny run at chance: export refuses it without --force (next test)
    assert main(["export", str(run), "--out", str(out), "--data", str(fake_data_root), "--force"]) == 0
    printed = json.loads(capsys.readouterr().out)
    meta = read_meta(out)
    assert printed == {k: meta[k] for k in ("name", "quantized_engine", "test_metrics")}
    assert meta["labels"] == ["class0", "class1", "class2"] and meta["precision"] == "int8"
    assert meta["label_info"] == {}  # the fake pack's classes are not CWRU's: none described (labels read as-is)
    assert meta["training"]["data_sha256"] == json.loads((run / "summary.json").read_text())["data_sha256"]
    metrics = meta["test_metrics"]
    assert set(metrics["accuracy"]) == {"clean", "-5", "-10"}
    assert set(metrics["agreement_with_float32"]) == {"clean", "-5"}
    assert not out.with_name(out.name + ".partial").exists()

    out = tmp_path / "model-fp32.pt"
    assert main(["export", str(run), "--out", str(out), "--data", str(fake_data_root), "--float", "--force"]) == 0
    meta = read_meta(out)
    assert meta["precision"] == "float32" and meta["quantized_engine"] is None
    assert "agreement_with_float32" not in meta["test_metrics"]


def test_export_refuses_a_model_at_chance_without_force(
    fake_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = train_tiny_run(fake_data_root, tmp_path / "run")  # 3 labels, two optimiser steps: chance
    capsys.readouterr()
    out = tmp_path / "model.pt"
    assert main(["export", str(run), "--out", str(out), "--data", str(fake_data_root), "--float"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"held-out accuracy on clean test windows is [\d.]+% \(3 labels, chance 33\.3%\)", err)
    assert "below 1.5 x chance (50.0%)" in err and "--force exports it anyway" in err
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()

    assert main(["export", str(run), "--out", str(out), "--data", str(fake_data_root), "--float", "--force"]) == 0
    captured = capsys.readouterr()
    assert read_meta(out)["test_metrics"]["accuracy"]["clean"] < 0.5
    assert captured.err.strip().splitlines()[-1].startswith(f"WARNING: {out} exported, but its held-out accuracy")


def test_export_refuses_other_data(fake_data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"data_sha256": "0" * 64, "class_names": ["a"]}))
    with pytest.raises(ValueError, match=r"differs from the run's data_sha256 0{64}"):
        export_run(tmp_path, tmp_path / "x.pt", data=str(fake_data_root))


def test_export_of_a_folder_without_summary(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"summary\.json not found"):
        export_run(tmp_path, tmp_path / "x.pt")
