"""The paragraph ``edge-agent run`` prints when it ends: what ran, for how long, what it found.

Read from the agent's own metrics (the counters ``/metrics`` serves), so it says what a scrape would.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter

from edge_agent.metrics import AgentMetrics


def counter_totals(counter: Counter, label: str, **only: str) -> dict[str, float]:
    """``{value of label: total}`` over the counter's series whose other labels match ``only``."""
    totals: Tally[str] = Tally()
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in only.items()):
                totals[sample.labels[label]] += sample.value
    return dict(totals)


def run_summary(metrics: AgentMetrics, duration_s: float) -> str:
    """One paragraph: duration, signal, windows analysed (per model) and dropped, alerts raised by label."""
    signal_s = counter_totals(metrics.signal_seconds, "sensor")
    windows = counter_totals(metrics.windows_processed, "model")
    dropped = sum(counter_totals(metrics.windows_dropped, "reason").values())
    raised = {label: n for label, n in counter_totals(metrics.alerts, "label", type="new").items() if n}
    suppressed = sum(counter_totals(metrics.alerts_suppressed, "label").values())
    per_model = ", ".join(f"{name} {n:.0f}" for name, n in sorted(windows.items()))
    sensors = sum(1 for seconds in signal_s.values() if seconds > 0)
    parts = [
        f"summary: ran {duration_s:.1f} s",
        f"{sum(signal_s.values()):.1f} s of signal from {_count(sensors, 'sensor')}",
        f"{_count(sum(windows.values()), 'window')} analysed" + (f" ({per_model})" if len(windows) > 1 else ""),
        f"{dropped:.0f} dropped",
    ]
    if raised:
        by_label = ", ".join(f"{label} {n:.0f}" for label, n in sorted(raised.items()))
        parts.append(f"{_count(sum(raised.values()), 'alert')} raised ({by_label})")
    else:
        parts.append("no alert raised")
    if suppressed:
        parts.append(f"{_count(suppressed, 'alert')} held back by decision.cooldown_s")
    return "; ".join(parts) + "."


def _count(n: float, noun: str) -> str:
    return f"{n:.0f} {noun}" + ("" if round(n) == 1 else "s")
