"""The stream-supervision metrics (edge_agent.pipeline.supervision), registered by :class:`AgentMetrics`.

Labelled only by admitted sensor ids (a source's allow-list or at most its ``max_sensors``) and by
the fixed :data:`STREAM_PROBLEM_REASONS` and payload error reasons, so the series stay bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from edge_agent.metrics.series import CounterFamily, GaugeFamily

# ts_unit: ts in ms/us/ns; clock_offset: ts far from the agent's clock; seq_samples: seq counts samples;
# rate_mismatch: arrival rate != declared rate; all_rejected: every recent payload rejected;
# no_windows: samples arrive but no window is cut
STREAM_PROBLEM_REASONS = ("ts_unit", "clock_offset", "seq_samples", "rate_mismatch", "all_rejected", "no_windows")
SENSOR_PAYLOAD_ERROR_REASONS = ("not_json", "bad_field", "non_finite", "empty", "too_large", "wrong_channels")
SENSOR_PAYLOAD_ERROR_REASONS += ("wrong_rate", "bad_length", "bad_ts", "too_many_samples")
_PROBLEMS = tuple((reason,) for reason in STREAM_PROBLEM_REASONS)
_PAYLOAD_ERRORS = tuple((reason,) for reason in SENSOR_PAYLOAD_ERROR_REASONS)


class StreamMetrics:
    """``edge_agent_stream_problem{sensor,reason}`` (0/1), its onsets, and payload errors by sensor."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.problem = GaugeFamily(
            "edge_agent_stream_problem",
            "1 while a sensor's stream has this problem (see the agent's log for the field and likely cause).",
            ["sensor", "reason"],
            registry=registry,
        )
        self.problems = CounterFamily(
            "edge_agent_stream_problems_total",
            "Times a stream problem began, by sensor and reason.",
            ["sensor", "reason"],
            registry=registry,
        )
        self.payload_errors = CounterFamily(
            "edge_agent_sensor_payload_errors_total",
            "Rejected payloads of an admitted sensor, by reason (edge_agent_payload_errors_total: by source).",
            ["sensor", "reason"],
            registry=registry,
        )

    def init_sensor(self, sensor: str) -> None:
        """The sensor's series at zero, declared (edge_agent.metrics.series): most of them stay there."""
        self.problem.declare(sensor, _PROBLEMS)
        self.problems.declare(sensor, _PROBLEMS)
        self.payload_errors.declare(sensor, _PAYLOAD_ERRORS)
