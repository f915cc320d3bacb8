"""The runtime model loader: meta validation, quantized engine, damaged files, import boundary."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from edge_agent import modelfile
from edge_agent.modelfile import REQUIRED_KEYS, load_model, read_meta

REPO = Path(__file__).resolve().parents[2]
WINDOW = 64
LABELS = ["normal", "fault"]


class MeanClassifier(nn.Module):
    """``(N, 1, WINDOW)`` -> logits ``(N, 2)``: a linear layer on the window mean."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=2))


def valid_meta(**changes: Any) -> dict[str, Any]:
    meta = {
        "schema": 1,
        "name": "mean-classifier",
        "kind": "classifier",
        "labels": LABELS,
        "sample_rate_hz": 12_000,
        "window_samples": WINDOW,
        "hop_samples": WINDOW // 2,
        "channels": 1,
        "input_units": "g",
        "normalisation": {"mean": [0.0], "std": [1.0], "applied": "inside the graph"},
        "precision": "float32",
        "quantized_engine": None,
    }
    meta.update(changes)
    return meta


def write_model(path: Path, meta: dict[str, Any] | None, module: nn.Module | None = None) -> Path:
    torch.manual_seed(0)
    scripted = torch.jit.script(module or MeanClassifier())
    extra = {} if meta is None else {"meta.json": json.dumps(meta)}
    torch.jit.save(scripted, str(path), _extra_files=extra)
    return path


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model.pt", valid_meta())


@pytest.fixture
def restore_engine() -> None:
    engine = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = engine


def test_round_trip(model_file: Path) -> None:
    loaded = load_model(model_file)
    assert loaded.meta == read_meta(model_file) == valid_meta()
    assert loaded.labels == LABELS and loaded.window_samples == WINDOW and loaded.channels == 1
    assert len(loaded.sha256) == 64 and loaded.path == model_file
    with torch.inference_mode():
        assert loaded.module(torch.randn(5, 1, WINDOW)).shape == (5, len(LABELS))


def test_engine_is_set_from_meta_before_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_engine: None
) -> None:
    supported = torch.backends.quantized.supported_engines
    if "qnnpack" not in supported or len(set(supported) - {"qnnpack"}) == 0:
        pytest.skip(f"needs qnnpack and another engine, have {supported}")
    path = write_model(tmp_path / "int8.pt", valid_meta(precision="int8", quantized_engine="qnnpack"))
    torch.backends.quantized.engine = next(e for e in supported if e != "qnnpack")
    seen: list[str] = []
    real_load = torch.jit.load

    def spy(*args: Any, **kwargs: Any) -> torch.jit.ScriptModule:
        seen.append(torch.backends.quantized.engine)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", spy)
    load_model(path)
    assert seen == ["qnnpack"]


def test_float_model_leaves_the_engine_alone(model_file: Path, restore_engine: None) -> None:
    before = torch.backends.quantized.engine
    load_model(model_file)
    assert torch.backends.quantized.engine == before


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model file .*nope\.pt not found"):
        load_model(tmp_path / "nope.pt")


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a model" * 100)
    with pytest.raises(ValueError, match=r"garbage\.pt is not a TorchScript file"):
        load_model(path)


def test_truncated_file(model_file: Path) -> None:
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.pt is not a TorchScript file \(corrupt or truncated zip"):
        read_meta(model_file)


def test_flipped_weight_byte_is_caught(model_file: Path) -> None:
    data = bytearray(model_file.read_bytes())
    with zipfile.ZipFile(model_file) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 4)
    name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    data[info.header_offset + 30 + name_length + extra_length] ^= 0xFF  # torch.jit.load alone would not notice
    model_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"model\.pt is corrupt: CRC-32 mismatch in {info.filename}"):
        load_model(model_file)


def test_checkpoint_zip_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    torch.save({"model": MeanClassifier().state_dict()}, path)
    with pytest.raises(ValueError, match=r"best\.pt is a zip file but not a TorchScript archive"):
        load_model(path)


def test_missing_meta(tmp_path: Path) -> None:
    path = write_model(tmp_path / "bare.pt", None)
    with pytest.raises(ValueError, match=r"bare\.pt has no meta\.json"):
        load_model(path)


def test_meta_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad-json.pt"
    torch.jit.save(torch.jit.script(MeanClassifier()), str(path), _extra_files={"meta.json": "{not json"})
    with pytest.raises(ValueError, match=r"bad-json\.pt: meta\.json is not valid JSON"):
        read_meta(path)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_key(tmp_path: Path, key: str) -> None:
    meta = valid_meta()
    del meta[key]
    path = write_model(tmp_path / "model.pt", meta)
    with pytest.raises(ValueError, match=rf"model\.pt: meta\.json lacks required key\(s\): {key}$"):
        load_model(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schema": 2}, r"key 'schema' is 2; supported: 1"),
        ({"kind": "detector"}, r"key 'kind' is 'detector'; supported: 'classifier'"),
        ({"precision": "int4"}, r"key 'precision' is 'int4'; supported: 'float32', 'int8'"),
        ({"labels": []}, r"key 'labels' must be a non-empty list of strings, got \[\]"),
        ({"labels": "normal"}, r"key 'labels' must be a non-empty list of strings, got 'normal'"),
        ({"window_samples": 0}, r"key 'window_samples' must be a positive integer, got 0"),
        ({"channels": 1.5}, r"key 'channels' must be a positive integer, got 1\.5"),
        ({"hop_samples": True}, r"key 'hop_samples' must be a positive integer, got True"),
        ({"sample_rate_hz": -1}, r"key 'sample_rate_hz' must be a positive number, got -1"),
        ({"precision": "int8"}, r"key 'quantized_engine' must name an engine for int8, got None"),
        ({"quantized_engine": 3}, r"key 'quantized_engine' must be a string or null, got 3"),
    ],
)
def test_bad_values_name_key_and_value(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    path = write_model(tmp_path / "model.pt", valid_meta(**changes))
    with pytest.raises(ValueError, match=rf"model\.pt: meta\.json {message}"):
        load_model(path)


def test_meta_must_be_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.jit.save(torch.jit.script(MeanClassifier()), str(path), _extra_files={"meta.json": "[1, 2]"})
    with pytest.raises(ValueError, match=r"list\.pt: meta\.json must hold a JSON object, got list"):
        read_meta(path)


def test_unsupported_engine(tmp_path: Path, restore_engine: None) -> None:
    path = write_model(tmp_path / "model.pt", valid_meta(precision="int8", quantized_engine="hexagon"))
    with pytest.raises(ValueError, match=r"key 'quantized_engine' is 'hexagon', which this torch build does not"):
        load_model(path)


def test_label_count_must_match_the_output(tmp_path: Path) -> None:
    path = write_model(tmp_path / "model.pt", valid_meta(labels=["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"returns shape \(1, 2\), meta\.json labels imply \(1, 3\)"):
        load_model(path)


def test_window_shape_the_model_cannot_take(tmp_path: Path) -> None:
    path = write_model(tmp_path / "model.pt", valid_meta(channels=3), module=nn.Sequential(nn.Conv1d(1, 2, 3)))
    with pytest.raises(ValueError, match=r"model fails on a window shaped \(1, 3, 64\)"):
        load_model(path)


def test_expected_sha256(model_file: Path) -> None:
    digest = load_model(model_file).sha256
    assert load_model(model_file, expected_sha256=digest.upper()).sha256 == digest
    with pytest.raises(ValueError, match=rf"sha256 is {digest}, expected 0+$"):
        load_model(model_file, expected_sha256="0" * 64)


def test_runtime_modules_do_not_import_training_code() -> None:
    """``edge_agent.modelfile`` and every other runtime module stay clear of ``edge_agent.nn``/``training``."""
    code = """
import importlib, pathlib, sys
import edge_agent
OFFLINE = ("edge_agent.nn", "edge_agent.training", "edge_agent.cli", "edge_agent.__main__")
root = pathlib.Path(edge_agent.__file__).parent
# from the files, not pkgutil.walk_packages: walking would import edge_agent.nn and edge_agent.training itself
names = sorted(".".join(("edge_agent", *p.relative_to(root).with_suffix("").parts)) for p in root.rglob("*.py"))
names = [n.removesuffix(".__init__") for n in names]
runtime = ["edge_agent.modelfile"] + [n for n in names if not n.startswith(OFFLINE) and n != "edge_agent.modelfile"]
problems, skipped = [], []
for name in runtime:
    try:
        importlib.import_module(name)
    except ImportError as error:
        if error.name and not error.name.startswith("edge_agent"):
            skipped.append(f"{name} (needs {error.name})")
            continue
        raise
    leaked = sorted(m for m in sys.modules if m.startswith(("edge_agent.nn", "edge_agent.training")))
    if leaked:
        problems.append(f"{name} imports {', '.join(leaked)}")
        break
print("skipped:", skipped)
assert not problems, problems
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_modelfile_alone_does_not_import_training_code() -> None:
    code = (
        "import edge_agent.modelfile, sys; "
        "assert not any(m.startswith(('edge_agent.nn', 'edge_agent.training')) for m in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_read_meta_needs_no_torch(model_file: Path) -> None:
    code = (
        "import sys; from edge_agent.modelfile import read_meta; "
        f"meta = read_meta({str(model_file)!r}); assert meta['name'] == 'mean-classifier'; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert modelfile.META_FILE == "meta.json"
