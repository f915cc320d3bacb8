"""Every query of the Grafana dashboard returns data from a real Prometheus that scraped a running agent.

There is no Grafana server to be had here (ENVIRONMENT.md), so the test does what Grafana would:
it resolves the template variables through Prometheus' HTTP API, substitutes them and Grafana's
``$__rate_interval`` / ``$__range`` into every panel target, and runs each expression through
``/api/v1/query``. The agent runs as a subprocess on the shipped ``config.toml`` (the CWRU replay),
adapted to free ports, with the real mosquitto broker and Home Assistant discovery on, so the MQTT
panels have data too. The same Prometheus loads the alert rules, evaluates them without error and
fires ``EdgeAgentFaultActive`` when the replay reaches its inner-race fault.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "edge-agent.json"
RULES = REPO / "deploy" / "prometheus" / "edge-agent.rules.yml"
JOB = "edge-agent"
SENSOR = "demo-motor-de"  # the shipped config's replay sensor
RATE_INTERVAL = "10s"  # Grafana's $__rate_interval for a 1 s scrape is at least 4 scrapes
RANGE = "5m"  # $__range: the dashboard's time range
DEADLINE_S = 45.0  # first sample ~5.5 s after Prometheus starts, the agent needs ~3 s to start
# Panels whose queries may return nothing in this run, each with the reason. Empty: the run has a
# broker, Home Assistant discovery and a replay that goes through a fault, so every panel has data.
NO_ANOMALY_MODEL = "config.toml runs no anomaly model (one is learned per machine: test_anomaly_mqtt.py)"
NO_LEARNING = "no sensor learns in this run (learning series appear per sensor: test_live_learning.py)"
EXEMPT: dict[str, str] = {  # panel title -> why the shipped config.toml gives it no data
    "Anomaly score ÷ threshold": NO_ANOMALY_MODEL,
    "Anomalous windows /s": NO_ANOMALY_MODEL,
    "Learning state": NO_LEARNING,
    "Seconds learned": NO_LEARNING,
    "Learning runs": NO_LEARNING,
}
REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="Prometheus is installed by `make test`")


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expression) for every target of every panel, rows' nested panels included."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found.extend((inner["title"], target["expr"]) for target in inner.get("targets", []))
    return found


def template_variables() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {v["name"]: v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"}


def agent_config(folder: Path, *, metrics_port: int, broker_port: int) -> Path:
    """The shipped config.toml with a free metrics port, the test broker and Home Assistant discovery."""
    text = (REPO / "config.toml").read_text()
    for old, new in (
        ("\nport = 10041 ", f"\nport = {metrics_port} "),
        ("[mqtt]\nenabled = false", f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker_port}'),
        ("[homeassistant]\n", "[homeassistant]\nenabled = true\n"),
        ('\npath = "models/', f'\npath = "{REPO}/models/'),  # the active [[models]] entry, not a commented one
    ):
        assert text.count(old) == 1, f"config.toml changed: {old!r} not found once"
        text = text.replace(old, new)
    path = folder / "agent.toml"
    path.write_text(text)
    return path


class Prometheus:
    """A real Prometheus server (Debian package) scraping one target every second."""

    def __init__(self, folder: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = folder / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass  # not listening yet
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready in {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def agent_and_prometheus(tmp_path: Path, broker: Any) -> Iterator[tuple[Prometheus, str]]:
    metrics_port = free_port()
    config = agent_config(tmp_path, metrics_port=metrics_port, broker_port=broker.port)
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config), "--loop"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    instance = f"127.0.0.1:{metrics_port}"
    prometheus = Prometheus(tmp_path, instance)
    try:
        prometheus.wait_ready(timeout_s=15)
        yield prometheus, instance
    finally:
        prometheus.stop()
        agent.terminate()
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(timeout=10)
        log.close()
        if agent.returncode not in (0, -15):
            print((tmp_path / "agent.log").read_text()[-3000:])


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one series with a number (NaN, e.g. a quantile of an empty window, is no data)."""
    return any(not math.isnan(float(series["value"][1])) for series in result)


def label_values(prometheus: Prometheus, definition: str, values: dict[str, str]) -> set[str]:
    """Grafana's ``label_values(selector, label)`` through /api/v1/series."""
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
    assert match, definition
    selector, label = substitute(match.group(1), values), match.group(2)
    return {series[label] for series in prometheus.api("series", **{"match[]": selector}) if label in series}


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)
    for name, value in values.items():
        expr = expr.replace(f"${name}", REGEX_SPECIAL.sub(r"\\\\\1", value))  # as Grafana escapes a regex value
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def test_every_dashboard_query_returns_data_from_a_real_prometheus(agent_and_prometheus, subscriber) -> None:
    prometheus, instance = agent_and_prometheus
    discovery = subscriber("homeassistant/#")
    started = time.monotonic()
    deadline = started + DEADLINE_S

    # the template variables, resolved as Grafana would (each needs the previous ones)
    values: dict[str, str] = {}
    expected = {"job": JOB, "instance": instance, "sensor": SENSOR}
    for name, definition in template_variables().items():
        found: set[str] = set()
        while not found and time.monotonic() < deadline:
            found = label_values(prometheus, definition, values)
            if not found:
                time.sleep(0.5)
        assert found == {expected[name]}, f"variable {name}: {definition} gave {found}"
        values[name] = expected[name]

    pending = {(title, substitute(expr, values)) for title, expr in dashboard_targets() if title not in EXEMPT}
    assert len(pending) >= 30
    last: dict[tuple[str, str], list[dict[str, Any]]] = {}
    while pending and time.monotonic() < deadline:
        for key in sorted(pending):
            last[key] = prometheus.query(key[1])
            if has_data(last[key]):
                pending.discard(key)
        if pending:
            time.sleep(1.0)
    missing = [f"{title}: {expr} -> {last.get((title, expr))}" for title, expr in sorted(pending)]
    assert not missing, "panels without data:\n" + "\n".join(missing)
    for title, expr in dashboard_targets():  # the exempt panels' queries still parse and evaluate
        if title in EXEMPT:
            prometheus.query(substitute(expr, values))

    # the agent's wiring of Home Assistant discovery, end to end
    topics = {m.topic for m in discovery.messages}
    assert f"homeassistant/binary_sensor/demo-gateway/{SENSOR}_fault/config" in topics, topics

    # Prometheus evaluates the alert rules on the agent's series without an error
    while time.monotonic() < deadline:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        if rules and all(rule["health"] == "ok" for rule in rules):
            break
        time.sleep(0.5)
    assert rules and all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]

    # the replay reaches its inner-race fault: the agent's alert shows up, and the rule fires on it
    fired = f'ALERTS{{alertname="EdgeAgentFaultActive", alertstate="firing", sensor="{SENSOR}"}}'
    while not prometheus.query(fired) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert prometheus.query(fired), "EdgeAgentFaultActive never fired during the replay's fault"
    assert prometheus.query(f'edge_agent_alerts_total{{sensor="{SENSOR}", label="IR007", type="new"}} >= 1')
    print(f"{len(dashboard_targets())} dashboard queries returned data {time.monotonic() - started:.1f} s after start")
