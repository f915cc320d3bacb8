"""``edge-agent status``: what a running agent is doing, per sensor, read from its own ``/metrics``.

Two scrapes ``interval_s`` apart give the rates (samples/s and windows/s per sensor); the second one
gives the last sample's age, the last prediction (the most probable label of each model), open
alerts (a fault label with more ``new`` than ``end`` events, or an active health alert) and the
stream problems (edge_agent.pipeline.supervision). No new network surface: the address is the
configuration's ``[metrics]`` one (or ``--url``).
"""

from __future__ import annotations

import math
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from edge_agent.common.errors import first_line
from edge_agent.config import MetricsSection
from edge_agent.service.heartbeat import Sample, summary

SCORE, THRESHOLD = "edge_agent_anomaly_score", "edge_agent_anomaly_threshold"  # an anomaly model's, per sensor
COLUMNS = ("sensor", "last sample", "samples/s", "windows/s", "last prediction", "open alert", "stream problems")


class AgentNotRunning(Exception):
    """Nothing (or not an agent) answers at the metrics address."""


def metrics_url(section: MetricsSection) -> str:
    host = "127.0.0.1" if section.listen in ("0.0.0.0", "", "::") else section.listen
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{section.port}/metrics"


def scrape(url: str, timeout_s: float = 5.0) -> list[Sample]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        why = first_line(reason) if isinstance(reason, BaseException) else str(reason)
        raise AgentNotRunning(f"no agent answers at {url} ({why})") from None
    samples = [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]
    if not any(name == "edge_agent_build_info" for name, _, _ in samples):
        raise AgentNotRunning(f"{url} answers, but not with an edge-agent's metrics")
    return samples


def _by_sensor(samples: list[Sample], name: str) -> dict[str, float]:
    return {labels["sensor"]: value for sample, labels, value in samples if sample == name and "sensor" in labels}


def _age(last_s: float | None, now_s: float) -> str:
    if not last_s:
        return "never"
    return f"{max(0.0, now_s - last_s):.1f} s ago"


def sensor_rows(first: list[Sample], second: list[Sample], elapsed_s: float, now_s: float) -> list[tuple[str, ...]]:
    """One row per sensor (COLUMNS), from two scrapes ``elapsed_s`` apart."""
    samples0, samples1 = (_by_sensor(s, "edge_agent_samples_received_total") for s in (first, second))
    windows0, windows1 = (_by_sensor(s, "edge_agent_windows_total") for s in (first, second))
    last = _by_sensor(second, "edge_agent_last_sample_timestamp_seconds")
    best: dict[str, dict[str, tuple[float, str]]] = defaultdict(dict)  # sensor -> model -> (probability, label)
    events: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)  # (sensor, label) -> type -> count
    health: dict[str, bool] = {}
    problems: dict[str, list[str]] = defaultdict(list)
    scores: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))  # sensor, model
    for name, labels, value in second:
        if name in (SCORE, THRESHOLD):
            scores[labels["sensor"]][labels["model"]][name] = value
        if name == "edge_agent_class_probability":
            sensor, model = labels["sensor"], labels["model"]
            if value > best[sensor].get(model, (-1.0, ""))[0]:
                best[sensor][model] = (value, labels["label"])
        elif name == "edge_agent_alerts_total":
            events[(labels["sensor"], labels["label"])][labels["type"]] = value
        elif name == "edge_agent_alert_active" and labels.get("kind") == "health":
            health[labels["sensor"]] = value == 1
        elif name == "edge_agent_stream_problem" and value == 1:
            problems[labels["sensor"]].append(labels["reason"])
    rows = []
    for sensor in sorted(samples1):
        rate = (samples1[sensor] - samples0.get(sensor, 0.0)) / elapsed_s
        windows = (windows1.get(sensor, 0.0) - windows0.get(sensor, 0.0)) / elapsed_s
        prediction = ", ".join(f"{label} {p:.2f} ({model})" for model, (p, label) in sorted(best[sensor].items()))
        anomaly = [
            f"score {v.get(SCORE, math.nan):.3g}/{v.get(THRESHOLD, math.nan):.3g} ({model})"
            for model, v in sorted(scores[sensor].items())
        ]
        prediction = ", ".join(filter(None, [prediction, *anomaly]))
        open_alerts = [
            label for (s, label), n in sorted(events.items()) if s == sensor and n.get("new", 0) > n.get("end", 0)
        ]
        if health.get(sensor):
            open_alerts.append("health")
        rows.append(
            (
                sensor,
                _age(last.get(sensor), now_s),
                f"{rate:.0f}",
                f"{windows:.1f}",
                prediction or "-",
                ", ".join(open_alerts) or "-",
                ", ".join(problems[sensor]) or "-",
            )
        )
    return rows


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in (COLUMNS, *rows)) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (COLUMNS, *rows)
    )


def status_report(
    url: str,
    interval_s: float = 1.0,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> str:
    """The agent's summary line and its sensor table; raises :class:`AgentNotRunning`."""
    first, started = scrape(url), clock()
    sleep(interval_s)
    second = scrape(url)
    elapsed_s = max(clock() - started, 1e-3)
    windows = sum(v for n, _, v in second if n == "edge_agent_windows_processed_total")
    windows -= sum(v for n, _, v in first if n == "edge_agent_windows_processed_total")
    version = next((labels["version"] for n, labels, _ in second if n == "edge_agent_build_info"), "?")
    head = f"edge-agent {version} at {url}: {summary(second, windows / elapsed_s)}"
    rows = sensor_rows(first, second, elapsed_s, wall_clock())
    return head + "\n" + (format_table(rows) if rows else "no sensor yet")


def run_status(config_path: str, url: str | None, interval_s: float, instance: int | None = None) -> int:
    """``edge-agent status``: print the report; 1 when no agent answers, 2 for a bad configuration file."""
    from edge_agent.configload import ConfigError, load_config

    def say(message: str) -> None:
        print(f"edge-agent status: {message}", file=sys.stderr)

    if url is None:
        try:
            config = load_config(config_path, instance)  # an instance listens on metrics.port + N
        except ConfigError as error:
            print(
                f"edge-agent status: {config_path}: {error.errors[0]} (or give the address with --url)", file=sys.stderr
            )
            return 2
        if not config.metrics.enabled:
            print(
                f"edge-agent status: {config_path} sets metrics.enabled = false: status reads the agent's /metrics",
                file=sys.stderr,
            )
            return 1
        url = metrics_url(config.metrics)
    try:
        print(status_report(url, interval_s))
    except AgentNotRunning as error:
        say(f"{error}: is the agent running? (systemctl status edge-agent)")
        return 1
    return 0
