"""deploy/grafana/edge-agent.json: current schema, datasource variable, layout, metric names that exist.

Whether every query returns data is shown against a real Prometheus in
tests/integration/test_dashboard_prometheus.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from edge_agent.metrics import AgentMetrics
from edge_agent.metrics.learning import LearningMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "edge-agent.json"
CURRENT_PANEL_TYPES = {"row", "timeseries", "stat", "state-timeline", "table", "piechart", "bargauge"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ROWS = ["Overview", "Ingest health", "Processing", "Model outputs", "MQTT", "Vibration indicators", "Anomaly"]


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def exported_metric_names() -> set[str]:
    """Every series name the agent's registry can expose (histograms: _bucket, _sum, _count)."""
    names = set()
    registry = AgentMetrics().registry
    LearningMetrics(registry)  # registered by the learning control when the agent starts (service/learn_control.py)
    for family in registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_current_schema_and_a_datasource_variable() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "edge-agent" and dashboard["id"] is None
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance", "sensor"]
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    for name in ("job", "instance", "sensor"):
        assert variables[name]["type"] == "query" and variables[name]["datasource"] == DATASOURCE
        assert variables[name]["definition"].startswith("label_values(")
        assert variables[name]["definition"] == variables[name]["query"]["query"]
    assert "$instance" in variables["sensor"]["definition"] and "$job" in variables["instance"]["definition"]


def test_rows_panels_and_layout() -> None:
    dashboard = load()
    every = panels(dashboard)
    assert [p["title"] for p in every if p["type"] == "row"] == ROWS
    assert {p["type"] for p in every} <= CURRENT_PANEL_TYPES  # no deprecated graph/singlestat
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area


def test_every_panel_queries_the_datasource_variable_with_filters() -> None:
    for panel in panels(load()):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])


def test_queries_use_only_metrics_the_agent_exports() -> None:
    known = exported_metric_names() | {"up"}
    used = set()
    for panel in panels(load()):
        for target in panel.get("targets", []):
            used.update(re.findall(r"\b(edge_agent_\w+|up)\{", target["expr"]))
    assert used, "no metric found in the panel queries"
    assert used <= known, sorted(used - known)
