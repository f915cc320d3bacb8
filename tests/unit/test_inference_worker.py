"""InferenceWorker.reconfigure: a reload swaps models and settings through one method, queued windows follow."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_agent.config import InferenceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel, parse_meta
from edge_agent.pipeline.inference import InferenceWorker
from edge_agent.types import Prediction, Window

WINDOW = 16


class Favours(nn.Module):
    """Logits that always pick label ``index``."""

    def __init__(self, labels: int, index: int) -> None:
        super().__init__()
        self.labels, self.index = labels, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], self.labels)
        logits[:, self.index] = 5.0
        return logits


def loaded(labels: list[str], index: int, sha256: str) -> LoadedModel:
    document = {
        "schema": 1,
        "name": "bearing",
        "kind": "classifier",
        "labels": labels,
        "sample_rate_hz": 100,
        "window_samples": WINDOW,
        "hop_samples": WINDOW,
        "channels": 1,
        "input_units": "g",
        "normalisation": {"applied": "inside the graph"},
        "precision": "float32",
        "quantized_engine": None,
    }
    meta = parse_meta(document, source="bearing.pt")
    return LoadedModel(path=Path("bearing.pt"), module=Favours(len(labels), index), meta=meta, sha256=sha256)  # type: ignore[arg-type]


class Collector:
    def __init__(self, expected: int) -> None:
        self.predictions: list[Prediction] = []
        self.expected = expected
        self.done = threading.Event()

    def __call__(self, prediction: Prediction) -> None:
        self.predictions.append(prediction)
        if len(self.predictions) >= self.expected:
            self.done.set()


def window(i: int) -> Window:
    return Window("pump-1", float(i), float(i) + 1.0, np.zeros((1, WINDOW), np.float32))


def test_reconfigure_swaps_models_and_settings_for_the_windows_already_queued() -> None:
    metrics = AgentMetrics()
    collect = Collector(expected=4)
    old = loaded(["Normal", "IR007"], 0, "a" * 64)
    worker = InferenceWorker({"bearing": old}, InferenceSection(max_batch=1, max_wait_s=0.0), metrics, collect)
    for i in range(4):
        worker.submit("bearing", window(i))  # queued before the reload
    new = loaded(["Normal", "IR007", "OR021"], 2, "b" * 64)
    worker.reconfigure(models={"bearing": new}, config=InferenceSection(max_batch=4, max_wait_s=0.0))
    assert worker.models == {"bearing": new} and worker.config.max_batch == 4
    worker.start()
    try:
        assert collect.done.wait(30), "no predictions from the worker"
    finally:
        worker.stop()
    assert [p.label for p in collect.predictions] == ["OR021"] * 4
    assert {p.model_sha256 for p in collect.predictions} == {"b" * 64}
    assert set(collect.predictions[0].probabilities) == {"Normal", "IR007", "OR021"}
    labels = {"model": "bearing"}
    assert metrics.registry.get_sample_value("edge_agent_inference_batch_windows_count", labels) == 1  # one batch of 4
    assert metrics.registry.get_sample_value("edge_agent_inference_batch_windows_sum", labels) == 4


def test_reconfigure_with_nothing_changes_nothing() -> None:
    old = loaded(["Normal", "IR007"], 0, "a" * 64)
    settings = InferenceSection(max_batch=2)
    worker = InferenceWorker({"bearing": old}, settings, AgentMetrics(), Collector(1))
    worker.reconfigure()
    assert worker.models == {"bearing": old} and worker.config is settings
    worker.reconfigure(config=InferenceSection(max_batch=8))
    assert worker.models == {"bearing": old} and worker.config.max_batch == 8


class WithNoiseFloor(Favours):
    """A model file with the noise-floor methods: the floor is each window's mean absolute sample."""

    def noise_floor(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().mean(dim=(1, 2))

    def forward_with_noise_floor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward(x), self.noise_floor(x)


def test_a_model_with_a_noise_floor_gives_each_prediction_its_window_s_floor() -> None:
    base = loaded(["Normal", "IR007"], 1, "c" * 64)
    document = {
        **base.meta.document,
        "noise_floor": {"method": "noise_floor", "with_logits": "forward_with_noise_floor", "units": ["blocks.0"]},
    }
    meta = parse_meta(document, source="bearing.pt")
    model = LoadedModel(path=Path("bearing.pt"), module=WithNoiseFloor(2, 1), meta=meta, sha256="c" * 64)  # type: ignore[arg-type]
    collect = Collector(expected=3)
    worker = InferenceWorker({"bearing": model}, InferenceSection(max_batch=3, max_wait_s=1.0), AgentMetrics(), collect)
    worker.warm_up()
    for i in range(3):
        samples = np.full((1, WINDOW), float(i + 1), np.float32)
        worker.submit("bearing", Window("pump-1", float(i), float(i) + 1.0, samples))
    worker.start()
    try:
        assert collect.done.wait(30), "no predictions from the worker"
    finally:
        worker.stop()
    assert [p.noise_floor for p in collect.predictions] == [1.0, 2.0, 3.0]
    assert [p.label for p in collect.predictions] == ["IR007"] * 3
    plain = Collector(expected=1)
    worker = InferenceWorker({"bearing": base}, InferenceSection(max_batch=1), AgentMetrics(), plain)
    worker.submit("bearing", window(0))
    worker.start()
    try:
        assert plain.done.wait(30)
    finally:
        worker.stop()
    assert plain.predictions[0].noise_floor is None  # no method in the file: no value
