"""Typed model metadata: every shipped model parses, an anomaly model's meta too, the runtime reads fields only."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import edge_agent
from edge_agent.modelfile import check_runtime_kind, load_model, read_meta
from edge_agent.modelmeta import AnomalyScoring, ModelMeta, Normalisation, parse_meta

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "models").glob("*.pt"))


def anomaly_document(**changes: Any) -> dict[str, Any]:
    """A hand-made meta of the next issue's kind: one score per window, a threshold and its calibration."""
    document = {
        "schema": 1,
        "name": "pump-autoencoder",
        "kind": "anomaly",
        "labels": ["normal", "anomaly"],
        "sample_rate_hz": 12_000,
        "window_samples": 2048,
        "hop_samples": 1024,
        "channels": 1,
        "input_units": "g",
        "output": "score",
        "normalisation": {"mean": [0.01], "std": [0.35], "applied": "inside the graph"},
        "precision": "float32",
        "quantized_engine": None,
        "threshold": 3.5,
        "calibration": {"data": "healthy windows of pump-1", "windows": 4096, "quantile": 0.999},
        "training": {"data_sha256": "ab" * 32},
        "code_version": "0.2.0",
    }
    document.update(changes)
    return document


def test_there_are_shipped_models() -> None:
    assert len(SHIPPED) >= 4, SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_model_parses_into_model_meta(path: Path) -> None:
    meta = read_meta(path)
    document = dict(meta.document)
    assert isinstance(meta, ModelMeta) and meta.kind == "classifier" and meta.anomaly is None
    assert meta.labels == tuple(document["labels"]) and meta.output_width == len(meta.labels)
    assert (meta.window_samples, meta.hop_samples, meta.channels) == (
        document["window_samples"],
        document["hop_samples"],
        document["channels"],
    )
    assert meta.sample_rate_hz == float(document["sample_rate_hz"]) and meta.precision in ("float32", "int8")
    assert meta.engine == (document["quantized_engine"] or "none")
    assert isinstance(meta.normalisation, Normalisation) and meta.normalisation.applied == "inside the graph"
    assert meta.data_sha256 == document["training"]["data_sha256"] and len(meta.data_sha256) == 64
    assert dict(meta.metrics) == document.get("test_metrics", {})
    assert dict(meta.evaluation) == document.get("evaluation", {}) and (meta.metrics or meta.evaluation)
    assert meta == document  # the whole document stays readable (training-side tools)


def test_normalisation_of_both_shipped_styles() -> None:
    by_name = {path.name: read_meta(path) for path in SHIPPED}
    cwru = by_name["drsn_cw_cwru.pt"].normalisation
    assert cwru.mean is not None and len(cwru.mean) == 1 and cwru.std is not None and cwru.method is None
    audio = by_name["drsn_cw_bldc_audio.pt"].normalisation
    assert audio.mean is None and audio.abstain_below_rms is not None and audio.method is not None


def test_an_anomaly_meta_parses_with_its_threshold_and_calibration() -> None:
    meta = parse_meta(anomaly_document(), source="hand-made")
    assert meta.kind == "anomaly" and meta.output_width == 1 and meta.output == "score"
    assert meta.anomaly == AnomalyScoring(threshold=3.5, calibration=meta.anomaly.calibration)  # type: ignore[union-attr]
    assert dict(meta.anomaly.calibration)["quantile"] == 0.999  # type: ignore[union-attr]
    assert meta.data_sha256 == "ab" * 32 and meta.code_version == "0.2.0" and dict(meta.metrics) == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"threshold": None}, r"key 'threshold' must be a finite number, got None"),
        ({"threshold": math.inf}, r"key 'threshold' must be a finite number, got inf"),
        ({"threshold": True}, r"key 'threshold' must be a finite number, got True"),
        ({"calibration": [1, 2]}, r"key 'calibration' must be an object, got \[1, 2\]"),
    ],
)
def test_bad_anomaly_keys_name_key_and_value(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=rf"^hand-made: meta\.json {message}"):
        parse_meta(anomaly_document(**changes), source="hand-made")


@pytest.mark.parametrize("key", ["threshold", "calibration"])
def test_an_anomaly_meta_without_its_keys_is_refused(key: str) -> None:
    document = anomaly_document()
    del document[key]
    with pytest.raises(ValueError, match=rf"^m\.pt: meta\.json of kind 'anomaly' lacks key\(s\): {key}$"):
        parse_meta(document, source="m.pt")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"normalisation": "graph"}, r"key 'normalisation' must be an object with a string 'applied'"),
        ({"normalisation": {"applied": "x", "mean": ["a"]}}, r"key 'normalisation\.mean' must be a list of numbers"),
        ({"name": 3}, r"key 'name' must be a string, got 3"),
    ],
)
def test_typed_fields_name_the_bad_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=rf"^m\.pt: meta\.json {message}"):
        parse_meta(anomaly_document(kind="classifier", **changes), source="m.pt")


def test_meta_is_frozen_and_keeps_no_reference_to_the_callers_dict() -> None:
    document = anomaly_document()
    meta = parse_meta(document, source="m.pt")
    document["labels"].append("other")
    document["calibration"]["quantile"] = 0.5
    assert meta.labels == ("normal", "anomaly") and meta["labels"] == ["normal", "anomaly"]
    assert dict(meta.anomaly.calibration)["quantile"] == 0.999  # type: ignore[union-attr]
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.threshold = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        meta.document["kind"] = "classifier"  # type: ignore[index]


def test_input_mismatch_names_the_keys() -> None:
    running = parse_meta(anomaly_document(), source="a")
    other = parse_meta(anomaly_document(window_samples=4096, sample_rate_hz=16_000), source="b")
    assert running.input_mismatch(other) == ("window_samples", "sample_rate_hz")
    assert running.input_mismatch(running) == ()


class ScoreModel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2)).unsqueeze(1)


def test_the_agent_refuses_a_kind_the_inference_worker_does_not_run_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one loader reads every kind (edge-agent learn checks its anomaly files with it); the agent's
    # start checks (check-config, run) refuse a kind its inference worker does not run yet. The worker
    # runs anomaly models now: the refusal is shown with a worker that runs classifiers only.
    path = tmp_path / "anomaly.pt"
    document = anomaly_document()
    torch.jit.save(torch.jit.script(ScoreModel()), str(path), _extra_files={"meta.json": json.dumps(document)})
    assert read_meta(path).kind == "anomaly"  # check-config and tools read it
    check_runtime_kind(load_model(path, check=False).meta, path)  # this agent runs it
    monkeypatch.setattr("edge_agent.modelfile.RUNTIME_KINDS", ("classifier",))
    with pytest.raises(
        ValueError, match=r"anomaly\.pt: meta\.json key 'kind' is 'anomaly'; this agent runs: 'classifier'"
    ):
        check_runtime_kind(load_model(path, check=False).meta, path)


RUNTIME_EXCLUDED = ("nn", "training", "modelmeta.py")  # modelmeta builds the typed meta from the document


def _indexes_meta(node: ast.AST) -> bool:
    """``meta[...]``, ``x.meta[...]``, ``meta.get(...)``, ``x.meta.get(...)``."""
    if isinstance(node, ast.Subscript):
        target = node.value
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        target = node.func.value
    else:
        return False
    return (isinstance(target, ast.Name) and target.id == "meta") or (
        isinstance(target, ast.Attribute) and target.attr == "meta"
    )


def test_the_runtime_never_indexes_model_meta_by_string() -> None:
    root = Path(edge_agent.__file__).resolve().parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in RUNTIME_EXCLUDED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if _indexes_meta(node):
                found.append(f"{path.relative_to(root)}:{node.lineno}")  # type: ignore[attr-defined]
    assert found == []


NOISE_FLOOR = {
    "method": "noise_floor",
    "with_logits": "forward_with_noise_floor",
    "units": ["blocks.0", "blocks.1"],
    "summary": "geometric mean of tau / reference",
}


def test_the_noise_floor_key_parses_into_its_units() -> None:
    meta = parse_meta(anomaly_document(kind="classifier", noise_floor=NOISE_FLOOR), source="m.pt")
    assert meta.noise_floor is not None and meta.noise_floor.units == ("blocks.0", "blocks.1")
    assert parse_meta(anomaly_document(kind="classifier"), source="m.pt").noise_floor is None


@pytest.mark.parametrize(
    "value",
    [
        {**NOISE_FLOOR, "method": "noise"},  # a method the runtime would not call
        {**NOISE_FLOOR, "with_logits": None},
        {**NOISE_FLOOR, "units": []},
        "noise_floor",
    ],
)
def test_a_bad_noise_floor_key_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ValueError, match=r"m\.pt: meta\.json key 'noise_floor"):
        parse_meta(anomaly_document(kind="classifier", noise_floor=value), source="m.pt")
