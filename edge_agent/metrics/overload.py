"""Metrics of hostile input and overload (issue 12): sink thread failures and restarts, windows
dropped per sensor by the fair queue, and the resamplers' memory; registered by :class:`AgentMetrics`.

Labelled by sink names, admitted sensor ids and source names only, so the series stay bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge_agent.metrics.series import CounterFamily

# payload error reasons the router's ingress bounds give (edge_agent.pipeline.ingress), beside the parser's
INGRESS_ERROR_REASONS = ("bad_ts", "too_many_samples")
SUSPECT_REASONS = ("fault", "change")  # a model window said fault / the ingress change detector saw a change


class OverloadMetrics:
    """``edge_agent_sink_thread_errors_total``, ``..._restarts_total``, per-sensor window drops, resampler bytes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sink_thread_errors = Counter(
            "edge_agent_sink_thread_errors_total",
            "Exceptions caught in a sink's own thread (the one message is dropped, the thread goes on).",
            ["sink"],
            registry=registry,
        )
        self.sink_thread_restarts = Counter(
            "edge_agent_sink_thread_restarts_total",
            "Dead sink threads the supervisor started again.",
            ["sink"],
            registry=registry,
        )
        self.sensor_windows_dropped = CounterFamily(
            "edge_agent_sensor_windows_dropped_total",
            "Windows dropped before inference, by sensor (the oldest of the sensor with the most waiting goes first).",
            ["sensor"],
            registry=registry,
        )
        self.messages_shed = CounterFamily(
            "edge_agent_messages_shed_total",
            "Messages dropped unparsed at ingress: the inference queue was full and held the sensor's share.",
            ["source", "sensor"],
            registry=registry,
        )
        self.receiver_restarts = Counter(
            "edge_agent_receiver_restarts_total",
            'MQTT receive processes (receive = "process") that died or hung and were started again.',
            ["source"],
            registry=registry,
        )
        self.receiver_dropped = Counter(
            "edge_agent_receiver_dropped_total",
            "Messages an MQTT receive process dropped because the agent did not take them in time (buffer full).",
            ["source"],
            registry=registry,
        )
        self.suspects = Gauge(
            "edge_agent_suspects",
            "Sensors served first now (never shed): a fault window from the model or a change at ingress.",
            registry=registry,
        )
        self.suspect_marks = Counter(
            "edge_agent_suspect_marks_total",
            "Sensors that became suspects, by reason (fault: a model window; change: the ingress change detector).",
            ["reason"],
            registry=registry,
        )
        self.suspect_marks_refused = Counter(
            "edge_agent_suspect_marks_refused_total",
            "Suspect marks refused because the suspects' windows would exceed their share of capacity, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in SUSPECT_REASONS:
            self.suspect_marks.labels(reason)
            self.suspect_marks_refused.labels(reason)
        self.resampler_bytes = Gauge(
            "edge_agent_resampler_bytes",
            "Memory of the resampling filters a source holds (at most a few distinct rates per source).",
            ["source"],
            registry=registry,
        )
