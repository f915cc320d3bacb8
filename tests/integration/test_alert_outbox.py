"""The durable outbox end to end: the alert sink is killed with SIGKILL while the broker is down.

An independent QoS 1 subscriber with a persistent session (clean_session false) counts every event
by ``(id, type)``: every event the killed sink had accepted arrives after the restart (0 lost), in
order, before the events of the new run; duplicates are allowed (at least once) and counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.config import MqttSection
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.alert_schema import iso_utc
from edge_agent.sinks.mqtt_alerts import MqttAlertSink
from edge_agent.sinks.outbox import OUTBOX_FILE, Outbox
from edge_agent.types import AlertEvent

REPO = Path(__file__).resolve().parents[2]
AGENT = "victim"
ALERTS = f"edge-agent/{AGENT}/+/alert"
T0 = 1_795_860_000.0


def event(n: int) -> AlertEvent:
    """The n-th event of a stream of episodes on two sensors: new, three updates, end (five per episode)."""
    episode, step = divmod(n, 5)
    type_ = ("new", "update", "update", "update", "end")[step]
    values: dict[str, Any] = {
        "type": type_,
        "id": f"ep{episode}",
        "sensor": f"s{episode % 2}",
        "kind": "fault",
        "label": "inner_race",
        "confidence": 0.8 + step / 100,
        "started_at": T0 + episode * 10,
        "window_start": T0 + n,
        "window_end": T0 + n + 0.1,
        "model_name": "drsn_cw",
        "model_sha256": "ab" * 32,
        "probabilities": {"Normal": 0.1, "inner_race": 0.9},
        "ended_at": T0 + n + 0.2 if type_ == "end" else None,
    }
    return AlertEvent(**values)


VICTIM = """
import sys
sys.modules["torch"] = None  # AgentMetrics only asks torch for its version: skip the import
from pathlib import Path
from edge_agent.config import MqttSection
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.alert_schema import iso_utc
from edge_agent.sinks.mqtt_alerts import MqttAlertSink
from tests.integration.test_alert_outbox import event
mqtt = MqttSection(enabled=True, host="127.0.0.1", port=int(sys.argv[1]), reconnect_min_s=0.1, reconnect_max_s=0.5)
sink = MqttAlertSink(mqtt, password=None, agent_id="victim", metrics=AgentMetrics(), outbox_path=Path(sys.argv[2]))
sink.open()
n = 0
for line in sys.stdin:  # each line: how many more events to send
    for _ in range(int(line)):
        sink.send(event(n))
        print(n, flush=True)  # after send returned: accepted
        n += 1
"""


def key(payload: bytes) -> tuple[str, str, str]:
    doc = json.loads(payload)
    return doc["id"], doc["type"], doc["window"]["start"]


def key_of(ev: AlertEvent) -> tuple[str, str, str]:
    return ev.id, ev.type, iso_utc(ev.window_start)


def test_kill_9_while_the_broker_is_down_loses_no_accepted_alert(
    broker, subscriber, mqtt_config: Callable[..., MqttSection], tmp_path: Path, until
) -> None:
    watch = subscriber(ALERTS, persistent=True)  # its session (and queue) outlives the broker restart
    outbox = tmp_path / "state" / OUTBOX_FILE
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (tmp_path / "victim.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(VICTIM), str(broker.port), str(outbox)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=REPO,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    accepted: list[int] = []

    def send(count: int) -> None:
        proc.stdin.write(f"{count}\n".encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        for _ in range(count):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, f"victim exited with {proc.poll()}: {(tmp_path / 'victim.log').read_text()}"
            accepted.append(int(line))

    try:
        send(4)  # broker up: delivered at once
        watch.wait_for(lambda c: len(c.on(f"edge-agent/{AGENT}/s0/alert")) >= 4, timeout_s=15, what="first 4")
        broker.stop()
        send(18)  # the broker is away: these wait in the outbox, on disk
        proc.kill()  # kill -9 with 18 accepted alerts undelivered
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    assert proc.returncode == -9 and accepted == list(range(22))

    broker.start()
    metrics = AgentMetrics()
    sink = MqttAlertSink(mqtt_config(), password=None, agent_id=AGENT, metrics=metrics, outbox_path=outbox)
    sink.open()  # the restarted agent: what the killed one stored goes out first
    try:
        for n in range(22, 25):
            sink.send(event(n))
        expected = [key_of(event(n)) for n in range(25)]
        watch.wait_for(
            lambda c: {key(m.payload) for m in c.messages} >= set(expected), timeout_s=20, what="all 25 events"
        )
        until(lambda: metrics.registry.get_sample_value("edge_agent_alerts_queued") == 0, what="outbox empty")
    finally:
        sink.close(timeout_s=2)
    received = [key(m.payload) for m in watch.messages]
    duplicates = len(received) - len(set(received))
    assert list(dict.fromkeys(received)) == expected, f"order broken ({duplicates} duplicates)"  # 0 lost, in order
    assert duplicates <= 4, f"{duplicates} duplicates"  # only the events of before the outage may come twice
    assert metrics.registry.get_sample_value("edge_agent_alert_outbox_durable") == 1
    assert metrics.registry.get_sample_value("edge_agent_alerts_dropped_total", {"reason": "shutdown"}) == 0


def test_an_unusable_outbox_file_leaves_the_sink_alerting_from_memory(
    subscriber, mqtt_config: Callable[..., MqttSection], tmp_path: Path, caplog
) -> None:
    watch = subscriber(ALERTS)
    outbox = tmp_path / OUTBOX_FILE
    outbox.write_bytes(b"not a database" * 100)
    metrics = AgentMetrics()
    sink = MqttAlertSink(mqtt_config(), password=None, agent_id=AGENT, metrics=metrics, outbox_path=outbox)
    with caplog.at_level("ERROR"):
        sink.open()
    try:
        assert any(str(outbox) in r.getMessage() and "memory only" in r.getMessage() for r in caplog.records)
        assert metrics.registry.get_sample_value("edge_agent_alert_outbox_durable") == 0
        sink.send(event(0))
        watch.wait_for(lambda c: [key(m.payload) for m in c.messages] == [key_of(event(0))], what="the alert")
    finally:
        sink.close(timeout_s=2)


def test_close_keeps_undelivered_alerts_on_disk_and_counts_them_lost_only_in_memory(
    broker, mqtt_config: Callable[..., MqttSection], tmp_path: Path
) -> None:
    broker.stop()
    kept: dict[str, float] = {}
    for name, path in (("disk", tmp_path / OUTBOX_FILE), ("memory", None)):
        metrics = AgentMetrics()
        sink = MqttAlertSink(mqtt_config(), password=None, agent_id=AGENT, metrics=metrics, outbox_path=path)
        sink.open()
        for n in range(3):
            sink.send(event(n))
        sink.close(timeout_s=0.3)
        sink.send(event(3))  # after close: dropped and counted as such
        kept[name] = metrics.registry.get_sample_value("edge_agent_alerts_dropped_total", {"reason": "shutdown"}) or 0
        assert metrics.registry.get_sample_value("edge_agent_alerts_dropped_total", {"reason": "closed"}) == 1
    assert kept == {"disk": 0, "memory": 3}
    again = Outbox(tmp_path / OUTBOX_FILE, metrics=AgentMetrics(), max_count=10)
    try:
        assert [key(row.payload) for row in iter(again.take, None)] == [key_of(event(n)) for n in range(3)]
    finally:
        again.close()
