"""Dashboard averages over time survive the NaN a series starts at (promtool's PromQL tests).

The agent creates a sensor's indicator series at NaN ("no value yet", pipeline/indicator_stage.py); if
Prometheus scrapes that NaN, ``avg_over_time(x[1m])`` is NaN for the next minute: the panel shows
nothing for every new or restarted sensor (seen as a failing real-Prometheus dashboard test under load).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "edge-agent.json"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by `make test`")


def over_time_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found.extend((inner["title"], t["expr"]) for t in inner.get("targets", []) if "_over_time(" in t["expr"])
    return found


def test_every_average_over_time_ignores_a_leading_nan(tmp_path: Path) -> None:
    targets = over_time_targets()
    assert targets, "no *_over_time panel query found"
    for title, expr in targets:
        metric = re.search(r"\b(edge_agent_\w+)\{", expr)
        assert metric, (title, expr)
        concrete = expr.replace("$job", "edge-agent").replace("$instance", "gw-1").replace("$sensor", "pump-1")
        series = f'{metric.group(1)}{{job="edge-agent", instance="gw-1", sensor="pump-1", channel=""}}'
        labels = '{job="edge-agent", instance="gw-1", sensor="pump-1"}'  # functions drop the name
        tests = {
            "evaluation_interval": "15s",
            "tests": [
                {
                    "interval": "15s",
                    "input_series": [{"series": series, "values": "NaN 0.002 0.002 0.002 0.002 0.002"}],
                    "promql_expr_test": [
                        {
                            "expr": f"round({concrete}, 0.001)",
                            "eval_time": "1m",
                            "exp_samples": [{"labels": labels, "value": 2.0 if expr.startswith("1000 *") else 0.002}],
                        }
                    ],
                }
            ],
        }
        path = tmp_path / "dashboard.test.yml"
        path.write_text(json.dumps(tests))  # JSON is YAML
        result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{title}: {expr}\n{result.stdout}{result.stderr}"
