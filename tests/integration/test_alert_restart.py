"""Restart-safe alert state end to end: the agent as a subprocess against a real broker, killed with
SIGKILL or stopped with SIGTERM while a fault alert is open, then started again.

An independent QoS 1 subscriber with a persistent session counts every event by ``(id, type)``.
The rules under test (README, "Alert state across restarts"): an episode still faulty after the
restart continues under its id (no second ``new``); one no longer faulty gets an ``end`` for the old
id; a clean stop keeps the episode open and says so in the retained state (``stopped_at``); a sensor
that left the configuration gets its open episode ended, its retained state and its Home Assistant
configs withdrawn at the next start.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from tests.integration.agent_process import kill_agent, mqtt_section, spawn_agent
from tests.integration.test_agent_mqtt import PLANT_SOURCE, Stream, held_out, play

REPO = Path(__file__).resolve().parents[2]
AGENT = "restart-agent"
PREFIX = f"edge-agent/{AGENT}"


def write_config(path: Path, port: int, sensors: tuple[str, ...], *, homeassistant: bool = False) -> Path:
    path.write_text(
        f"""
[agent]
id = "{AGENT}"
state_dir = "{path.parent / "state"}"
{mqtt_section(port)}[metrics]
enabled = false
[homeassistant]
enabled = {"true" if homeassistant else "false"}
{PLANT_SOURCE}sensors = {json.dumps(list(sensors))}
models = ["bearing"]
"""
    )
    return path


class Agents:
    """Starts the agent (one at a time) on a configuration file; kills what is left at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.proc, self.runs = tmp_path, None, 0
        self._logs: list = []

    def start(self, config: Path) -> subprocess.Popen[bytes]:
        self.runs += 1
        log = (self.tmp_path / f"agent-{self.runs}.log").open("wb")
        self._logs.append(log)
        self.proc = spawn_agent(config, log)
        return self.proc

    def close(self) -> None:
        if self.proc is not None:
            kill_agent(self.proc)
        for log in self._logs:
            log.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    made = Agents(tmp_path)
    yield made
    made.close()


@pytest.fixture
def publisher(broker) -> Iterator[paho.Client]:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="restart-publisher")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def events(collector, sensor: str) -> list[dict[str, object]]:
    return [json.loads(p) for p in collector.payloads(f"{PREFIX}/{sensor}/alert")]


def kinds(collector, sensor: str) -> list[tuple[object, object]]:
    return [(e["type"], e["id"]) for e in events(collector, sensor)]


def online(watch, count: int) -> None:
    """Wait for the ``count``-th ``online`` on the status topic (one per start)."""
    topic = f"{PREFIX}/status"
    watch.wait_for(lambda c: c.payloads(topic).count(b"online") >= count, timeout_s=90, what=f"online #{count}")


def open_a_fault(watch, publisher: paho.Client, sensor: str) -> dict[str, object]:
    """Play a fault on ``sensor`` until its ``new`` arrives; the episode stays open (no healthy data follows)."""
    play([(Stream(publisher, sensor), held_out("105"))])  # IR007
    watch.wait_for(lambda c: len(events(c, sensor)) >= 1, timeout_s=30, what=f"a new alert for {sensor}")
    first = events(watch, sensor)[0]
    assert first["type"] == "new"
    return first


def state(watch, sensor: str) -> dict[str, object] | None:
    payload = watch.last(f"{PREFIX}/{sensor}/state")
    return json.loads(payload) if payload else None


def test_kill_9_with_a_fault_open_then_still_faulty_continues_the_same_episode(
    broker, agents: Agents, subscriber: Callable[..., object], publisher: paho.Client, tmp_path: Path
) -> None:
    watch = subscriber(f"{PREFIX}/#", persistent=True)
    config = write_config(tmp_path / "agent.toml", broker.port, ("motor-a",))
    agents.start(config)
    online(watch, 1)
    first = open_a_fault(watch, publisher, "motor-a")
    agents.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    agents.proc.wait(timeout=10)  # type: ignore[union-attr]
    agents.start(config)
    online(watch, 2)
    assert state(watch, "motor-a")["alert_id"] == first["id"]  # type: ignore[index]  # published again at start
    stream = Stream(publisher, "motor-a")
    play([(stream, np.tile(held_out("105"), 2))])  # still faulty after the restart
    play([(stream, np.tile(held_out("097"), 3))])  # then it recovers
    watch.wait_for(lambda c: ("end", first["id"]) in kinds(c, "motor-a"), timeout_s=30, what="the end")
    seen = kinds(watch, "motor-a")
    assert [t for t, _ in seen].count("new") == 1, seen  # no second new after the restart
    assert {i for _, i in seen} == {first["id"]}, seen  # one episode, one id, across the restart
    assert state(watch, "motor-a")["alert_id"] is None  # type: ignore[index]


def test_kill_9_with_a_fault_open_then_healthy_ends_the_old_episode(
    broker, agents: Agents, subscriber: Callable[..., object], publisher: paho.Client, tmp_path: Path
) -> None:
    watch = subscriber(f"{PREFIX}/#", persistent=True)
    config = write_config(tmp_path / "agent.toml", broker.port, ("motor-a",))
    agents.start(config)
    online(watch, 1)
    first = open_a_fault(watch, publisher, "motor-a")
    agents.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    agents.proc.wait(timeout=10)  # type: ignore[union-attr]
    assert state(watch, "motor-a")["kind"] == "fault"  # type: ignore[index]  # what the killed agent left
    agents.start(config)
    online(watch, 2)
    play([(Stream(publisher, "motor-a"), np.tile(held_out("097"), 2))])  # healthy now
    watch.wait_for(lambda c: ("end", first["id"]) in kinds(c, "motor-a"), timeout_s=30, what="an end for the old id")
    assert kinds(watch, "motor-a") == [("new", first["id"]), ("end", first["id"])]
    assert state(watch, "motor-a")["alert_id"] is None  # type: ignore[index]


def test_sigterm_keeps_the_open_episode_says_so_in_the_state_and_the_next_start_decides(
    broker, agents: Agents, subscriber: Callable[..., object], publisher: paho.Client, tmp_path: Path
) -> None:
    watch = subscriber(f"{PREFIX}/#", persistent=True)
    config = write_config(tmp_path / "agent.toml", broker.port, ("motor-a",))
    agents.start(config)
    online(watch, 1)
    first = open_a_fault(watch, publisher, "motor-a")
    agents.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert agents.proc.wait(timeout=20) == 0  # type: ignore[union-attr]
    watch.wait_for(lambda c: c.last(f"{PREFIX}/status") == b"stopped", timeout_s=10, what="stopped")
    kept = state(watch, "motor-a")
    assert kept is not None and kept["alert_id"] == first["id"] and kept["kind"] == "fault"
    assert isinstance(kept.get("stopped_at"), str), kept  # the retained state says the agent stopped with it open
    assert kinds(watch, "motor-a") == [("new", first["id"])]  # no end: the episode is kept, not closed
    agents.start(config)
    online(watch, 2)
    watch.wait_for(lambda c: "stopped_at" not in (state(c, "motor-a") or {"stopped_at": 0}), what="state again")
    assert state(watch, "motor-a")["alert_id"] == first["id"]  # type: ignore[index]  # the episode continues
    play([(Stream(publisher, "motor-a"), np.tile(held_out("097"), 2))])
    watch.wait_for(lambda c: ("end", first["id"]) in kinds(c, "motor-a"), timeout_s=30, what="an end for the old id")
    assert kinds(watch, "motor-a") == [("new", first["id"]), ("end", first["id"])]
    assert state(watch, "motor-a")["alert_id"] is None  # type: ignore[index]


def test_a_sensor_removed_from_the_configuration_is_withdrawn_at_the_next_start(
    broker, agents: Agents, subscriber: Callable[..., object], publisher: paho.Client, tmp_path: Path
) -> None:
    watch = subscriber(f"{PREFIX}/#", "homeassistant/#", persistent=True)
    both = write_config(tmp_path / "agent.toml", broker.port, ("motor-a", "pump3"), homeassistant=True)
    agents.start(both)
    online(watch, 1)
    configs = f"homeassistant/binary_sensor/{AGENT}/pump3_fault/config"
    watch.wait_for(lambda c: bool(c.last(configs)), timeout_s=30, what="pump3's discovery config")
    first = open_a_fault(watch, publisher, "pump3")
    agents.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    agents.proc.wait(timeout=10)  # type: ignore[union-attr]
    only_a = write_config(tmp_path / "agent.toml", broker.port, ("motor-a",), homeassistant=True)
    agents.start(only_a)
    online(watch, 2)
    watch.wait_for(lambda c: ("end", first["id"]) in kinds(c, "pump3"), timeout_s=30, what="pump3's episode ended")
    pump3 = [t for t in {m.topic for m in watch.messages} if "pump3" in t and not t.endswith("/alert")]
    assert f"{PREFIX}/pump3/state" in pump3 and configs in pump3
    watch.wait_for(lambda c: all(c.last(t) == b"" for t in pump3), timeout_s=30, what="pump3 withdrawn")
    fresh = subscriber(f"{PREFIX}/+/state", "homeassistant/#")  # what a client connecting now is told
    fresh.wait_for(lambda c: bool(c.last(f"{PREFIX}/motor-a/state")), timeout_s=10, what="motor-a's retained state")
    fresh.wait_for(
        lambda c: bool(c.last(f"homeassistant/binary_sensor/{AGENT}/motor-a_fault/config")), what="motor-a's config"
    )
    assert [m.topic for m in fresh.messages if "pump3" in m.topic] == []
