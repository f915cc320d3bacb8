"""What the agent can and cannot guarantee when the broker loses a subscriber's session (docs/fleet.md).

The agent's promise ends at the broker's PUBACK: an event is removed from its outbox only then. What the
broker does afterwards is the broker's: a persistent subscriber that is offline gets its queued events
after a broker restart only if the broker wrote its session to disk. mosquitto writes ``persistence``
as a snapshot at a clean stop (SIGTERM) and every ``autosave_interval`` (default 1800 s), so with
persistence off, or after a SIGKILL (power loss) between snapshots, the acknowledged events are gone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Broker, Collector
from test_alert_outbox import event, key, key_of

from edge_agent.config import MqttSection
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.mqtt_alerts import MqttAlertSink
from edge_agent.sinks.outbox import OUTBOX_FILE, open_outbox

AGENT = "victim"
ALERTS = f"edge-agent/{AGENT}/+/alert"
QUIET_S = 3.0  # how long the resumed subscriber listens for events that are not coming


SAVE_ON_CHANGES = "autosave_on_changes true\nautosave_interval 1\n"  # a snapshot after every change


@pytest.mark.parametrize(
    ("persistence", "extra_config", "kill", "kept"),
    [
        pytest.param(True, "", False, True, id="persistence-on-clean-stop"),
        pytest.param(False, "", False, False, id="persistence-off"),
        pytest.param(True, "", True, False, id="persistence-on-sigkill-before-autosave"),
        pytest.param(True, SAVE_ON_CHANGES, True, True, id="persistence-on-autosave-on-changes-sigkill"),
    ],
)
def test_acknowledged_events_for_an_offline_subscriber_survive_a_broker_restart_only_if_it_saved_them(
    broker_factory: Callable[..., Broker],
    tmp_path: Path,
    until,
    persistence: bool,
    extra_config: str,
    kill: bool,
    kept: bool,
) -> None:
    broker = broker_factory(persistence=persistence, extra_config=extra_config)
    watch = Collector(broker, (ALERTS,), persistent=True, name="persistent-subscriber")
    watch.close()  # offline now: the broker queues its QoS 1 events in the session
    metrics = AgentMetrics()
    mqtt = MqttSection(enabled=True, host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    sink = MqttAlertSink(mqtt, password=None, agent_id=AGENT, metrics=metrics, outbox_path=tmp_path / OUTBOX_FILE)
    sink.open()
    try:
        for n in range(5):  # a whole episode: new, three updates, end
            sink.send(event(n))
        until(lambda: metrics.registry.get_sample_value("edge_agent_alerts_queued") == 0, what="every PUBACK")
    finally:
        sink.close(timeout_s=2)
    # the agent is done with them: every event acknowledged by the broker and gone from its durable outbox
    stored = open_outbox(tmp_path / OUTBOX_FILE, metrics=AgentMetrics(), max_count=100)
    try:
        assert stored.durable and len(stored) == 0
    finally:
        stored.close()

    if extra_config:  # the snapshot that holds the last event, before the power goes
        last = key_of(event(4))[2].encode()  # its window start, unique to it
        snapshot = broker.workdir / "mosquitto.db"
        until(lambda: snapshot.exists() and last in snapshot.read_bytes(), what="a snapshot with the last event")
    broker.stop(kill=kill)
    broker.start()
    back = Collector(broker, (ALERTS,), persistent=True, name="persistent-subscriber")  # same session id
    try:
        expected = {key_of(event(n)) for n in range(5)}
        if kept:
            back.wait_for(lambda c: {key(m.payload) for m in c.messages} >= expected, 15, "the queued episode")
        else:
            with pytest.raises(AssertionError, match="timed out"):
                back.wait_for(lambda c: bool(c.messages), QUIET_S, "any queued event")
            assert back.messages == []  # the broker lost the session: acknowledged, never delivered
    finally:
        back.close()
