"""The agent with ``receive = "process"`` on a real broker: a faulty sensor alerts as with paho in process; the
receive process killed with SIGKILL is restarted (counted, ``source_up`` shows the gap) and the stream resumes;
SIGTERM stops the agent and its receive process."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.agent_process import agent_process, mqtt_section
from tests.integration.conftest import free_port, wait_until
from tests.integration.test_agent_mqtt import PLANT_SOURCE, Stream, held_out, play

AGENT = "receiver-agent"
PREFIX = f"edge-agent/{AGENT}"


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(port: int, name: str, **labels: str) -> float:
    return metrics(port).get((name, tuple(sorted(labels.items()))), 0.0)


def predictions(port: int, sensor: str) -> float:
    return sum(
        v
        for (name, labels), v in metrics(port).items()
        if name == "edge_agent_predictions_total" and ("sensor", sensor) in labels
    )


def receivers(pid: int) -> list[int]:
    """The agent's spawned children (not multiprocessing's resource tracker): its receive processes."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


@pytest.fixture
def agent(tmp_path: Path, broker) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[agent]
id = "{AGENT}"
state_dir = "{tmp_path / "state"}"
{mqtt_section(broker.port)}[metrics]
enabled = true
port = {port}
{PLANT_SOURCE}receive = "process"
models = ["bearing"]
"""
    )
    with agent_process(config, tmp_path / "agent.log") as proc:
        yield proc, port


def alerts(collector, sensor: str) -> list[dict[str, object]]:
    return [json.loads(p) for p in collector.payloads(f"{PREFIX}/{sensor}/alert")]


def test_alerts_through_the_receive_process_survive_its_sigkill_and_sigterm_stops_it(agent, broker, subscriber) -> None:
    proc, port = agent
    watch = subscriber(f"{PREFIX}/#")
    watch.wait_for(lambda c: c.last(f"{PREFIX}/status") == b"online", timeout_s=60, what="agent online")
    wait_until(lambda: sample(port, "edge_agent_source_up", source="plant") == 1, 30, "source up")
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="receiver-publisher")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        a, b = Stream(publisher, "motor-a"), Stream(publisher, "motor-b")
        fault, healthy = held_out("105"), held_out("097")  # IR007 and Normal
        play([(a, fault), (b, np.tile(healthy, 2))])
        watch.wait_for(lambda c: len(alerts(c, "motor-a")) >= 1, timeout_s=20, what="a new alert for motor-a")
        first = alerts(watch, "motor-a")[0]
        assert (first["type"], first["label"], first["kind"]) == ("new", "IR007", "fault")
        assert alerts(watch, "motor-b") == []

        (receiver,) = receivers(proc.pid)  # the agent's one child: the receive process
        before = predictions(port, "motor-b")
        subprocess.run(["kill", "-KILL", str(receiver)], check=True)
        wait_until(lambda: sample(port, "edge_agent_receiver_restarts_total", source="plant") == 1, 30, "restart")
        assert sample(port, "edge_agent_source_up", source="plant") == 0  # the gap shows until it subscribed
        wait_until(lambda: sample(port, "edge_agent_source_up", source="plant") == 1, 30, "source up again")
        (again,) = receivers(proc.pid)
        assert again != receiver
        play([(a, np.tile(healthy, 3)), (b, healthy)])  # the stream resumes; motor A recovers
        watch.wait_for(lambda c: any(e["type"] == "end" for e in alerts(c, "motor-a")), timeout_s=30, what="end")
        assert predictions(port, "motor-b") > before
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    assert {e["id"] for e in alerts(watch, "motor-a")} == {first["id"]}  # one episode
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not Path(f"/proc/{again}").exists()  # joined with the agent
