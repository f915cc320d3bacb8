"""Metrics of sound-card sources: retries of the device, input overflows, dropped blocks, the input level."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AudioMetrics:
    """``edge_agent_source_retries_total``, ``edge_agent_audio_*`` (labels: source, and sensor for the level)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.retries = Counter(
            "edge_agent_source_retries_total",
            "Times a source's device could not be opened or was lost; each is retried with backoff.",
            ["source"],
            registry=r,
        )
        self.overflows = Counter(
            "edge_agent_audio_input_overflows_total",
            "Sound-card blocks that arrived after an input overflow (samples were lost before them).",
            ["source"],
            registry=r,
        )
        self.blocks_dropped = Counter(
            "edge_agent_audio_blocks_dropped_total",
            "Captured sound-card blocks dropped because the hand-off queue was full.",
            ["source"],
            registry=r,
        )
        self.level = Gauge(
            "edge_agent_audio_level_dbfs",
            "RMS level of the captured audio over about 1 s, dB relative to full scale; NaN while there is none.",
            ["source", "sensor"],
            registry=r,
        )

    def init_source(self, source: str) -> None:
        """A sound-card source's counters at zero (its level gauge: the source, NaN until audio arrives)."""
        self.retries.labels(source)
        self.overflows.labels(source)
        self.blocks_dropped.labels(source)
