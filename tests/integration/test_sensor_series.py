"""With a real broker: a configured sensor whose every payload is rejected still has its series (the router's)."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as paho
from conftest import wait_until

from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.app import App

MODEL = Path(__file__).resolve().parents[2] / "models" / "drsn_cw_cwru.pt"


def test_a_sensor_whose_payloads_are_all_rejected_has_its_series_at_zero(broker, tmp_path: Path) -> None:
    data = {
        "agent": {"id": "series-agent"},
        "mqtt": {"enabled": True, "host": broker.host, "port": broker.port, "reconnect_min_s": 0.1},
        "metrics": {"enabled": False},
        "models": [{"name": "bearing", "path": str(MODEL)}],
        "sources": [
            {
                "type": "mqtt",
                "name": "plant",
                "topic": "plant/+/vibration",
                "sensor_level": 1,
                "sensors": ["pump-2"],
                "models": ["bearing"],
            }
        ],
    }
    metrics = AgentMetrics()
    app = App(parse_config(data, base_dir=tmp_path), metrics=metrics)
    runner = threading.Thread(target=app.run, kwargs={"exit_when_finished": False}, daemon=True)
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-series-pub")
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    runner.start()

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    try:
        wait_until(lambda: value("edge_agent_source_up", source="plant") == 1, 30, "the source to subscribe")
        for _ in range(3):
            publisher.publish("plant/pump-2/vibration", b"not json", qos=1).wait_for_publish(5)
        wait_until(
            lambda: value("edge_agent_payload_errors_total", source="plant", reason="not_json") == 3, 10, "3 rejected"
        )
        for name in ("samples_received", "signal_seconds", "windows", "stream_gaps"):
            assert value(f"edge_agent_{name}_total", sensor="pump-2") == 0, name
        assert value("edge_agent_alert_active", sensor="pump-2", kind="fault") == 0
        assert value("edge_agent_predictions_total", sensor="pump-2", model="bearing", label="IR007") == 0
        assert value("edge_agent_alerts_total", sensor="pump-2", label="IR007", type="new") == 0
        assert value("edge_agent_payload_errors_total", source="plant", reason="bad_field") == 0
        assert value("edge_agent_sink_events_total", sink="log") == 0
        assert value("edge_agent_sink_errors_total", sink="log") == 0
    finally:
        app.stop_requested.set()
        runner.join(15)
        publisher.loop_stop()
        publisher.disconnect()
