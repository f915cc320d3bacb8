"""Restart-safe alert state: the episode store survives a reopen, and the decision engine continues
or ends a restored episode by the pending rules (:meth:`DecisionEngine.restore`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from edge_agent.config import DecisionSection
from edge_agent.pipeline.decision import RESTORE_GRACE_S, DecisionEngine
from edge_agent.pipeline.episode_store import STATE_FILE, EpisodeStore
from edge_agent.types import AlertEvent, Prediction, Window

CONFIG = DecisionSection(confirm_k=3, confirm_n=5, min_confidence=0.8, hold_off_s=5.0, cooldown_s=0.0)
T0 = 1_795_860_000.0


def fault(type_: str = "new", *, sensor: str = "s1", id_: str = "ep1", label: str = "IR007") -> AlertEvent:
    return AlertEvent(
        type=type_,
        id=id_,
        sensor=sensor,
        kind="fault",
        label=label,
        confidence=0.9,
        started_at=T0,
        window_start=T0,
        window_end=T0 + 1,
        model_name="m",
        probabilities={label: 0.9, "Normal": 0.1},
        peak_confidence=0.95,
        ended_at=T0 + 9 if type_ == "end" else None,
        tags=("a", "b"),
    )


def health(type_: str = "new", *, label: str = "silent") -> AlertEvent:
    return AlertEvent(type_, "h1", "s1", "health", label, 1.0, T0, T0, T0, ended_at=T0 + 1 if type_ == "end" else None)


def prediction(label: str, t: float, *, model: str = "m") -> Prediction:
    window = Window("s1", t, t + 1, np.zeros((1, 4), np.float32))
    return Prediction(
        "s1", model, window, {label: 0.9, "Normal": 0.1} if label != "Normal" else {"Normal": 1.0}, label, 0.9
    )


def test_the_store_keeps_open_episodes_and_sensors_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    store = EpisodeStore(path)
    assert store.durable
    store.add_sensor("s1")
    store.add_sensor("pump 3.a")
    store.record([fault("new"), health("new"), fault("new", sensor="s2", id_="ep2")])
    store.record([fault("update"), fault("end", sensor="s2", id_="ep2")])
    store.close()  # as after a kill -9: nothing else is written on the way out
    again = EpisodeStore(path)
    try:
        assert again.open_alerts() == [fault("update"), health("new")]
        assert again.sensors() == {"s1", "pump 3.a"}
        again.forget_sensor("pump 3.a")
        again.record([health("end")])
    finally:
        again.close()
    third = EpisodeStore(path)
    assert (third.sensors(), third.open_alerts()) == ({"s1"}, [fault("update")])
    third.close()


def test_an_unusable_state_file_leaves_the_store_in_memory(tmp_path: Path, caplog) -> None:
    path = tmp_path / STATE_FILE
    path.write_bytes(b"not a database" * 100)
    store = EpisodeStore(path)
    assert not store.durable and any(str(path) in r.getMessage() for r in caplog.records)
    store.record([fault("new")])
    assert store.open_alerts() == [fault("new")]


def test_a_store_file_is_wal(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / STATE_FILE)
    store.record([fault("new")])
    store.close()
    db = sqlite3.connect(tmp_path / STATE_FILE)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_restored_fault_still_confirmed_continues_under_its_id_without_a_new() -> None:
    clock = [T0 + 100]
    engine = DecisionEngine(CONFIG, clock=lambda: clock[0], id_factory=lambda: "fresh")
    engine.restore([fault("update")], clock[0])
    assert engine.active("s1") == fault("update")
    events = []
    for t in range(int(CONFIG.hold_off_s + RESTORE_GRACE_S) + 10):  # past the pending deadline, still faulty
        clock[0] = T0 + 100 + t
        events += engine.update(prediction("IR007", clock[0])) + engine.tick(clock[0])
    assert all(e.id == "ep1" and e.type == "update" for e in events), events
    assert engine.active("s1") is not None and engine.active("s1").id == "ep1"  # type: ignore[union-attr]
    (end,) = engine.tick(clock[0] + CONFIG.hold_off_s)  # from now on the normal rules: the hold-off ends it
    assert (end.type, end.id) == ("end", "ep1")


def test_a_restored_fault_no_longer_confirmed_ends_after_confirm_n_predictions() -> None:
    now = T0 + 100
    engine = DecisionEngine(CONFIG, clock=lambda: now, id_factory=lambda: "fresh")
    engine.restore([fault("new")], now)
    assert [engine.update(prediction("Normal", now + t)) for t in range(CONFIG.confirm_n - 1)] == [[]] * 4
    assert engine.update(prediction("Normal", now, model="other")) == []  # another model's windows do not count
    (end,) = engine.update(prediction("Normal", now + 5))
    assert (end.type, end.id, end.ended_at, end.started_at) == ("end", "ep1", now, T0)
    assert engine.active("s1") is None


def test_a_restored_episode_whose_sensor_stays_silent_ends_after_the_grace() -> None:
    engine = DecisionEngine(CONFIG)
    engine.restore([fault("new"), health("new")], T0 + 100)
    deadline = T0 + 100 + CONFIG.hold_off_s + RESTORE_GRACE_S
    assert engine.tick(deadline - 0.1) == []
    events = engine.tick(deadline)
    assert sorted((e.type, e.id, e.ended_at) for e in events) == [("end", "ep1", deadline), ("end", "h1", deadline)]


def test_a_restored_health_alert_continues_when_asserted_and_ends_when_cleared() -> None:
    engine = DecisionEngine(CONFIG, id_factory=lambda: "fresh")
    engine.restore([health("new")], T0)
    assert engine.health("s1", "silent", True, T0 + 1) == []  # continues: no second new
    assert engine.tick(T0 + 1000) == []
    (end,) = engine.health("s1", "silent", False, T0 + 1001)
    assert (end.type, end.id) == ("end", "h1")
