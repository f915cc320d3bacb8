"""The metrics of learning on the gateway (edge_agent.service.learning), in a module of their own.

Labelled by sensor ids the operator put into learning (admitted sensors only) and the fixed
:data:`LEARNING_STATES`, so the series stay bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

# idle: never learned or finished; recording: taking live windows; training: the trainer process runs;
# validating: the new file is checked; failed: the last run failed (the old model runs; the log says why)
LEARNING_STATES = ("idle", "recording", "training", "validating", "failed")
LEARNING_OUTCOMES = ("learned", "failed", "refused")


class LearningMetrics:
    """``edge_agent_learning_state{sensor,state}`` (1 for the current state), seconds learned, last learned time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge(
            "edge_agent_learning_state",
            "1 for the learning state a sensor is in (idle, recording, training, validating, failed).",
            ["sensor", "state"],
            registry=registry,
        )
        self.seconds = Gauge(
            "edge_agent_learning_seconds",
            "Seconds of the sensor's live stream recorded by the current (or last) learning run.",
            ["sensor"],
            registry=registry,
        )
        self.last_learned = Gauge(
            "edge_agent_learning_last_success_timestamp_seconds",
            "When a model learned on the gateway last validated and was installed for this sensor (0: never).",
            ["sensor"],
            registry=registry,
        )
        self.runs = Counter(
            "edge_agent_learning_runs_total",
            "Learning runs by outcome: learned, failed (old model kept), refused (not started).",
            ["sensor", "outcome"],
            registry=registry,
        )
        self.recorded_bytes = Gauge(
            "edge_agent_learning_recorded_bytes",
            "Bytes of raw samples the current (or last) learning run holds in the state folder.",
            ["sensor"],
            registry=registry,
        )

    def init_sensor(self, sensor: str) -> None:
        self.set_state(sensor, "idle")
        self.seconds.labels(sensor).set(0)
        self.last_learned.labels(sensor)
        self.recorded_bytes.labels(sensor).set(0)
        for outcome in LEARNING_OUTCOMES:
            self.runs.labels(sensor, outcome)

    def set_state(self, sensor: str, state: str) -> None:
        for name in LEARNING_STATES:
            self.state.labels(sensor, name).set(1 if name == state else 0)
