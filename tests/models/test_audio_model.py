"""Audio DRSN-CW: level-invariant front-ends, TorchScript, int8 export honouring the model-file contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge_agent.modelfile import load_model, read_meta
from edge_agent.nn.audio import LogSpectrumFrontEnd, RawFrontEnd, audio_drsn_cw
from edge_agent.training.audio_data import BldcDataset, Clip
from edge_agent.training.audio_export import export_audio, train_shipped
from edge_agent.training.audio_train import AudioTrainConfig, evaluate_clips, summarise_cv
from edge_agent.training.label_info import AUDIO_LABEL_INFO

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "drsn_cw_bldc_audio.pt"


@pytest.mark.parametrize("front", [RawFrontEnd(1024), LogSpectrumFrontEnd(1024, n_fft=256)])
def test_front_ends_script_and_ignore_gain(front: torch.nn.Module) -> None:
    x = torch.randn(3, 1, 1024)
    scripted = torch.jit.script(front)
    out = scripted(x)
    assert out.shape == (3, 1, front.out_length)
    assert torch.allclose(scripted(x * 300.0), out, atol=1e-4) and torch.allclose(front(x), out, atol=1e-5)
    assert torch.allclose(out.mean(dim=-1), torch.zeros(3, 1), atol=1e-4)  # standardised per window
    assert torch.allclose(out.std(dim=-1, unbiased=False), torch.ones(3, 1), atol=1e-3)


@pytest.mark.parametrize("frontend", ["raw", "logspec"])
def test_model_ignores_gain_and_abstains_on_silence(frontend: str) -> None:
    torch.manual_seed(0)
    model = audio_drsn_cw(num_classes=3, frontend=frontend, window_samples=1024, n_fft=256, widths=(4, 8)).eval()
    x = torch.randn(4, 1, 1024) * 0.01
    with torch.no_grad():
        assert torch.allclose(model(x), model(x * 50.0), atol=1e-4)
        assert torch.equal(model(torch.zeros(2, 1, 1024)), torch.zeros(2, 3))  # uniform: the model abstains
    with pytest.raises(ValueError, match="frontend must be one of"):
        audio_drsn_cw(num_classes=3, frontend="mel", window_samples=1024)


def _tiny_dataset() -> BldcDataset:
    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    signals = [rng.standard_normal(16_000), np.sin(2 * np.pi * 600 * t), np.sin(2 * np.pi * 140 * t)]
    clips = tuple(
        Clip(path=f"c{label}.wav", label=label, motor="M1", rpm=1400, samples=(s / s.std()).astype(np.float32))
        for label, s in enumerate(signals)
    )
    return BldcDataset(clips=clips, sha256="tiny")


def test_export_honours_the_model_file_contract(tmp_path: Path) -> None:
    dataset = _tiny_dataset()
    config = AudioTrainConfig(
        frontend="logspec", window_samples=1024, n_fft=256, widths=(4, 8), steps=80, batch_size=16
    )
    run = tmp_path / "run"
    train_shipped(config, dataset, run)
    cv = {"speed": {"clip_accuracy_mean": 1.0}}
    meta = export_audio(run, tmp_path / "m.pt", dataset, float_out=tmp_path / "f.pt", cv_summary=cv)
    assert read_meta(tmp_path / "m.pt") == meta
    assert meta["labels"] == ["healthy", "propeller", "bearing"] and meta["kind"] == "classifier"
    assert meta["label_info"] == AUDIO_LABEL_INFO  # every label described, for alerts
    assert (meta["window_samples"], meta["hop_samples"], meta["channels"]) == (1024, 512, 1)
    assert meta["precision"] == "int8" and meta["quantized_engine"] == "onednn"
    assert meta["evaluation"]["cross_validation"] == cv
    assert meta["evaluation"]["export_check"]["int8_agreement_with_float32"] >= 0.9
    for path in (tmp_path / "m.pt", tmp_path / "f.pt"):
        loaded = load_model(path)
        out = loaded.module(torch.randn(5, 1, 1024))
        assert out.shape == (5, 3) and out.dtype == torch.float32
    # the tiny model learned its three sounds (the pipeline trains), scored at clip level
    result = evaluate_clips(load_model(tmp_path / "f.pt").module, dataset.clips, 1024, 512)
    assert result["clip_accuracy"] == 1.0
    rows = [{"seed": 0, "windows": result["windows"], **result}]
    assert summarise_cv(rows)["clip_accuracy_mean"] == 1.0
    with pytest.raises(ValueError, match="another configuration"):
        train_shipped(AudioTrainConfig(window_samples=2048), dataset, run)


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"{SHIPPED} is not built")
def test_shipped_audio_model() -> None:
    loaded = load_model(SHIPPED)
    meta = loaded.meta
    assert meta["labels"] == ["healthy", "propeller", "bearing"] and meta["sample_rate_hz"] == 16_000
    assert meta["channels"] == 1 and meta["precision"] == "int8"
    window = torch.randn(2, 1, loaded.window_samples) * 0.05
    with torch.inference_mode():
        assert torch.allclose(loaded.module(window), loaded.module(window * 10.0), atol=0.2)  # int8: loose
        assert torch.equal(loaded.module(torch.zeros(1, 1, loaded.window_samples)), torch.zeros(1, 3))


def _fake_bldc(root: Path) -> Path:
    """A miniature machine_sound/bldc_motor: 2 motors x 2 speeds, healthy and propeller (noise vs a tone)."""
    import csv
    import wave

    folder = root / "machine_sound" / "bldc_motor"
    rng = np.random.default_rng(1)
    rows = []
    for condition in ("healthy", "propeller"):
        for motor in ("M1", "M2"):
            for rpm in (1400, 1550):
                path = f"{condition.title()}/{motor}/{rpm}.wav"
                tone = np.sin(2 * np.pi * 600 * np.arange(8000) / 16_000) if condition == "propeller" else 0.0
                signal = rng.standard_normal(8000) * 0.1 + tone
                pcm = np.round(np.clip(signal * 0.2, -1, 1) * 32767).astype("<i2")
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                with wave.open(str(folder / path), "wb") as handle:
                    handle.setnchannels(1)
                    handle.setsampwidth(2)
                    handle.setframerate(16_000)
                    handle.writeframes(pcm.tobytes())
                rows.append([path, condition, motor, rpm])
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "condition", "motor", "nominal_rpm"])
        writer.writerows(rows)
    return root


def test_train_audio_command_cross_validates_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from edge_agent.cli import main

    data = str(_fake_bldc(tmp_path / "data"))
    common = ["train-audio", "--data", data, "--frontend", "logspec", "--window-samples", "1024", "--steps", "3"]
    assert main([*common, "--cv", str(tmp_path / "cv.json"), "--seeds", "0"]) == 0
    cv = json.loads((tmp_path / "cv.json").read_text())
    assert [r["fold"] for r in cv["speed_rows"]] == ["rpm1400", "rpm1550"]
    assert [r["fold"] for r in cv["motor_rows"]] == ["motorM1", "motorM2"]
    for row in cv["speed_rows"]:
        assert {c["path"].rsplit("/", 1)[1] for c in row["clips"]} == {row["fold"].removeprefix("rpm") + ".wav"}
    model = tmp_path / "m.pt"
    args = ["--out", str(tmp_path / "run"), "--model-out", str(model), "--float-out", ""]
    assert main([*common, *args, "--cv-summary", str(tmp_path / "cv.json")]) == 0
    meta = load_model(model).meta
    assert meta["window_samples"] == 1024 and meta["evaluation"]["cross_validation"]["leave_one_speed_out"]
    assert '"export_check"' in capsys.readouterr().out
