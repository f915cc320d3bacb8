"""The exporter's text (edge_agent.metrics.series.exposition) says what prometheus_client would say, faster."""

from __future__ import annotations

import math
import urllib.request

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.metrics import AgentMetrics
from edge_agent.metrics.series import CounterFamily, GaugeFamily, exposition
from edge_agent.pipeline.router import SensorSeries
from edge_agent.service.exporter import serve_metrics

LABELS = ("Normal", "IR007", "B007")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_created"):  # the fast families have none
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _agent_metrics(sensors: int) -> AgentMetrics:
    metrics = AgentMetrics()
    metrics.init_pipeline(512, ("log",))
    series = SensorSeries(metrics)
    series.configure({"bearing": LABELS}, ("Normal",))
    series.add_source("plant")
    for i in range(sensors):
        series.add(f"s{i}", ("bearing",))
    return metrics


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def test_the_exposition_has_every_sample_of_the_registry_with_its_value() -> None:
    metrics = _agent_metrics(3)
    metrics.alerts.labels("s1", "IR007", "new").inc(2)
    metrics.probability.labels("s2", "bearing", "B007").set(0.25)
    metrics.windows_processed.labels("bearing").inc(7)
    fast = _samples(exposition(metrics.registry).decode())
    assert _same(fast, _samples(generate_latest(metrics.registry).decode()))
    assert fast[("edge_agent_alerts_total", (("label", "IR007"), ("sensor", "s1"), ("type", "new")))] == 2
    assert fast[("edge_agent_windows_processed_total", (("model", "bearing"),))] == 7
    assert (
        metrics.registry.get_sample_value(
            "edge_agent_class_probability", {"sensor": "s2", "model": "bearing", "label": "B007"}
        )
        == 0.25
    )


def test_a_value_changed_after_a_scrape_is_in_the_next_one() -> None:
    metrics = _agent_metrics(1)
    child = metrics.probability.labels("s0", "bearing", "IR007")
    key = ("edge_agent_class_probability", (("label", "IR007"), ("model", "bearing"), ("sensor", "s0")))
    for value in (0.5, 0.5, 0.75, math.nan, 0.0):
        child.set(value)
        got = _samples(exposition(metrics.registry).decode())[key]
        assert got == value or (math.isnan(value) and math.isnan(got))
    counter = metrics.samples_received.labels("s0")
    for expected in (1024, 2048):
        counter.inc(1024)
        assert (
            _samples(exposition(metrics.registry).decode())[("edge_agent_samples_received_total", (("sensor", "s0"),))]
            == expected
        )


def test_removed_children_and_odd_label_values() -> None:
    metrics = AgentMetrics()
    gauge = GaugeFamily("edge_agent_test_gauge", 'A "gauge"\\ with\nlines.', ["sensor"], registry=metrics.registry)
    counter = CounterFamily("edge_agent_test_total", "A counter.", ["sensor"], registry=metrics.registry)
    gauge.labels('a"b\\c\nd').set(1.5)
    counter.labels("x").inc()
    counter.labels("y").inc(3)
    counter.remove("x")
    text = exposition(metrics.registry).decode()
    assert _same(_samples(text), _samples(generate_latest(metrics.registry).decode()))
    assert _samples(text)[("edge_agent_test_gauge", (("sensor", 'a"b\\c\nd'),))] == 1.5
    assert ("edge_agent_test_total", (("sensor", "x"),)) not in _samples(text)
    assert "# TYPE edge_agent_test_total counter" in text


def test_declared_series_at_zero_through_creation_removal_and_redeclaration() -> None:
    """Declared series render from a template shared by the sensors declared alike; every change to
    a sensor's set (a child created, a series removed, more declared) shows in the next scrape, once."""
    metrics = AgentMetrics()
    family = CounterFamily(
        "edge_agent_test_total", "A counter.", ["sensor", "reason", "model"], registry=metrics.registry
    )
    reasons = [("a", "m"), ("b", "m"), ("c", "m")]
    for sensor in ("s0", "s1", 'odd"\\id'):
        family.declare(sensor, reasons)

    def scrape() -> dict:
        text = exposition(metrics.registry).decode()
        samples = _samples(text)
        assert _same(samples, _samples(generate_latest(metrics.registry).decode()))
        assert len(text.splitlines()) == len(set(text.splitlines()))  # no series twice
        return {k[1]: v for k, v in samples.items() if k[0] == "edge_agent_test_total"}

    def key(sensor: str, reason: str) -> tuple:
        return (("model", "m"), ("reason", reason), ("sensor", sensor))

    assert len(scrape()) == 9 and set(scrape().values()) == {0.0}
    family.labels("s0", "b", "m").inc(2)  # s0 leaves the shared set
    assert scrape()[key("s0", "b")] == 2 and scrape()[key("s0", "a")] == 0 and len(scrape()) == 9
    family.remove("s1", "c", "m")  # a declared series removed
    assert key("s1", "c") not in scrape() and len(scrape()) == 8
    family.remove("s0", "b", "m")  # a declared series with a child removed
    assert key("s0", "b") not in scrape() and len(scrape()) == 7
    family.declare("s0", [("b", "m"), ("d", "m")])  # declared again, and one more
    assert scrape()[key("s0", "b")] == 0 and scrape()[key("s0", "d")] == 0 and len(scrape()) == 9
    family.labels("s2", "a", "m").inc()  # a child that was never declared
    assert scrape()[key("s2", "a")] == 1 and len(scrape()) == 10
    assert scrape()[key('odd"\\id', "c")] == 0
    family.clear()
    assert scrape() == {}


def test_the_exporter_serves_the_exposition_over_http() -> None:
    import socket

    metrics = _agent_metrics(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve_metrics(metrics, "127.0.0.1", port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        served = _samples(response.read().decode())
    assert _same(served, _samples(generate_latest(metrics.registry).decode()))
    assert ("edge_agent_fault_active", (("label", "IR007"), ("model", "bearing"), ("sensor", "s1"))) in served
