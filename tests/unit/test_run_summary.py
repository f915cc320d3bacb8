"""The paragraph ``edge-agent run`` ends with, and the /metrics URL its log names."""

from __future__ import annotations

from edge_agent.metrics import AgentMetrics
from edge_agent.service.exporter import metrics_url
from edge_agent.service.summary import run_summary


def test_summary_counts_windows_per_model_and_alerts_by_label() -> None:
    metrics = AgentMetrics()
    metrics.init_sensor("s1")
    metrics.init_sensor_model("s1", "bearing", ("Normal", "IR007", "B007"), ("Normal",))
    metrics.signal_seconds.labels("s1").inc(7.5)
    metrics.signal_seconds.labels("s2").inc(2.5)
    metrics.windows_processed.labels("bearing").inc(80)
    metrics.windows_processed.labels("sound").inc(3)
    metrics.windows_dropped.labels("queue_full").inc(2)
    for label, event_type in (("IR007", "new"), ("IR007", "end"), ("IR007", "new"), ("B007", "new"), ("x", "update")):
        metrics.alerts.labels("s1", label, event_type).inc()
    metrics.alerts_suppressed.labels("s1", "IR007", "cooldown").inc()
    assert run_summary(metrics, 12.34) == (
        "summary: ran 12.3 s; 10.0 s of signal from 2 sensors; 83 windows analysed (bearing 80, sound 3); "
        "2 dropped; 3 alerts raised (B007 1, IR007 2); 1 alert held back by decision.cooldown_s."
    )


def test_summary_of_a_run_without_data() -> None:
    metrics = AgentMetrics()
    metrics.init_sensor("s1")
    assert run_summary(metrics, 0.5) == (
        "summary: ran 0.5 s; 0.0 s of signal from 0 sensors; 0 windows analysed; 0 dropped; no alert raised."
    )


def test_metrics_url() -> None:
    assert metrics_url("127.0.0.1", 10041) == "http://127.0.0.1:10041/metrics"
    assert metrics_url("0.0.0.0", 9) == "http://0.0.0.0:9/metrics (every interface)"
    assert metrics_url("::1", 9) == "http://[::1]:9/metrics"
