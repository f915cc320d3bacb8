"""An anomaly model's learned debounce (meta ``debounce``): parsed, carried by its predictions, and honoured by
the decision engine as the larger k and n of it and the ``[decision]`` section's."""

from __future__ import annotations

import copy
import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from prometheus_client import CollectorRegistry

from edge_agent.config import DecisionSection, InferenceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import load_runtime_model
from edge_agent.modelmeta import parse_meta
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.inference import InferenceWorker
from edge_agent.types import ANOMALOUS, NOT_ANOMALOUS, AlertEvent, Prediction
from tests.unit.test_anomaly_agent import ANOMALY_META, CONFIG, THRESHOLD, MeanAbs, window

META: dict[str, Any] = {
    **ANOMALY_META,
    "calibration": {"windows": 100, "quantile": 0.99},
    "debounce": {"confirm_k": 4, "confirm_n": 6, "reached": True},
}


def scored(score: float, t: float, debounce: tuple[int, int] | None) -> Prediction:
    label = ANOMALOUS if score > THRESHOLD else NOT_ANOMALOUS
    return Prediction(
        "s1", "baseline", window(score, t), {}, label, 1.0, score=score, threshold=THRESHOLD, debounce=debounce
    )


def feed(scores: list[float], debounce: tuple[int, int] | None, config: DecisionSection = CONFIG) -> list[AlertEvent]:
    ids = (f"a{i}" for i in itertools.count(1))
    now = [0.0]
    decision = DecisionEngine(config, clock=lambda: now[0], id_factory=lambda: next(ids))
    events = []
    for i, score in enumerate(scores):
        now[0] = float(i)
        events += decision.update(scored(score, now[0], debounce))
    return events


def test_a_run_of_three_passes_3_of_5_but_not_the_model_s_learned_4_of_6() -> None:
    run = [0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1]  # a stretch of livelier healthy running
    assert [e.type for e in feed(run, None)] == ["new"]  # the section's 3 of 5 (the defect)
    assert feed(run, (4, 6)) == []
    events = feed([0.1, 0.9, 0.9, 0.9, 0.9], (4, 6))
    assert [e.type for e in events] == ["new"] and events[0].confidence == pytest.approx(4 / 6)


def test_the_section_s_larger_k_or_n_still_applies() -> None:
    strict = DecisionSection(confirm_k=5, confirm_n=8, hold_off_s=5.0, cooldown_s=30.0)
    assert feed([0.9, 0.9, 0.9, 0.9, 0.1], (4, 6), strict) == []  # 4 votes: the section asks for 5
    events = feed([0.9] * 5, (4, 6), strict)
    assert [e.type for e in events] == ["new"] and events[0].confidence == pytest.approx(5 / 8)


def test_the_meta_s_debounce_reaches_every_prediction_of_the_model(tmp_path: Path) -> None:
    path = tmp_path / "baseline.pt"
    torch.jit.save(torch.jit.script(MeanAbs()), str(path), _extra_files={"meta.json": json.dumps(META)})
    loaded = load_runtime_model(path, key="models[0].path")
    assert loaded.meta.anomaly is not None and loaded.meta.anomaly.debounce == (4, 6)
    got: list[Prediction] = []
    done = threading.Event()

    def collect(prediction: Prediction) -> None:
        got.append(prediction)
        done.set()

    worker = InferenceWorker(
        {"baseline": loaded}, InferenceSection(max_batch=1), AgentMetrics(CollectorRegistry()), collect
    )
    worker.submit("baseline", window(0.9))
    worker.start()
    try:
        assert done.wait(10.0)
    finally:
        worker.stop()
    assert got[0].debounce == (4, 6) and got[0].anomalous


@pytest.mark.parametrize(
    "bad", [{"confirm_k": 7, "confirm_n": 6}, {"confirm_k": 0, "confirm_n": 6}, {"confirm_n": 6}, 3]
)
def test_a_malformed_debounce_is_refused_and_none_means_the_section_s(bad: object) -> None:
    meta = copy.deepcopy(META)
    meta["debounce"] = bad
    with pytest.raises(ValueError, match="debounce"):
        parse_meta(meta, source="m.pt")
    del meta["debounce"]
    parsed = parse_meta(meta, source="m.pt").anomaly
    assert parsed is not None and parsed.debounce is None
