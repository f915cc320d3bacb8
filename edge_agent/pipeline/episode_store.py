"""Restart-safe alert state: the open episodes and the sensors announced, SQLite in the state directory.

``<agent.state_dir>/alert-state.sqlite3`` (WAL, exclusive lock, ``synchronous = FULL``: an episode
committed survives ``kill -9`` and power loss). A file of its own beside the outbox, not a table in
it: the outbox belongs to the ``mqtt`` sink and exists only while it is enabled, while the open
episodes are the decision engine's and matter with any sink (the log sink alone too); each file has
one writer and one lifecycle.

- ``episodes``: per open episode (sensor, kind, and the label for health alerts) its last published
  event (``new`` or ``update``) as JSON; an ``end`` deletes it. :meth:`EpisodeStore.record` is
  called by the data path with each batch of events *before* the sinks get them, so an episode
  whose ``new`` reached the outbox is always stored (a stored one whose ``new`` was never accepted
  is the other, harmless, side of that race: it continues or ends under its id).
- ``sensors``: every sensor whose state topic (and Home Assistant config) the agent published, so
  that the next start can withdraw those of sensors that left the configuration or never came back.

Writes happen only on alert events and on a sensor's first announcement (a few per episode). A
file that cannot be opened or written is logged with its path and the store goes on in memory
(``durable`` False): alerting never stops for it; only the restart safety is lost.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from edge_agent.types import AlertEvent

logger = logging.getLogger(__name__)

STATE_FILE = "alert-state.sqlite3"
SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS episodes (sensor TEXT NOT NULL, kind TEXT NOT NULL, slot TEXT NOT NULL,"
    " event TEXT NOT NULL, PRIMARY KEY (sensor, kind, slot))",
    "CREATE TABLE IF NOT EXISTS sensors (sensor TEXT PRIMARY KEY)",
)
_EVENT_FIELDS = frozenset(f.name for f in fields(AlertEvent))


class EpisodeStore:
    """Open episodes and announced sensors, durable when ``path`` is given and usable. Thread-safe."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._episodes: dict[tuple[str, str, str], AlertEvent] = {}
        self._sensors: set[str] = set()
        if path is not None:
            self._open(path)

    @property
    def durable(self) -> bool:
        return self._db is not None

    def open_alerts(self) -> list[AlertEvent]:
        """The last published event of every open episode, oldest start first."""
        with self._lock:
            return sorted(self._episodes.values(), key=lambda e: (e.started_at, e.sensor, e.kind))

    def sensors(self) -> set[str]:
        with self._lock:
            return set(self._sensors)

    def record(self, events: Iterable[AlertEvent]) -> None:
        """Store what ``events`` leave open: ``new``/``update`` replace, ``end`` deletes."""
        changes: list[tuple[tuple[str, str, str], AlertEvent | None]] = []
        with self._lock:
            for event in events:
                key = (event.sensor, event.kind, "" if event.kind == "fault" else event.label)
                if event.type == "end":
                    self._episodes.pop(key, None)
                    changes.append((key, None))
                else:
                    self._episodes[key] = event
                    changes.append((key, event))
            if changes:
                self._write(
                    [
                        ("DELETE FROM episodes WHERE sensor = ? AND kind = ? AND slot = ?", key)
                        for key, e in changes
                        if e is None
                    ]
                    + [
                        ("INSERT OR REPLACE INTO episodes VALUES (?, ?, ?, ?)", (*key, _encode(e)))
                        for key, e in changes
                        if e is not None
                    ]
                )

    def add_sensor(self, sensor: str) -> None:
        with self._lock:
            if sensor in self._sensors:
                return
            self._sensors.add(sensor)
            self._write([("INSERT OR IGNORE INTO sensors VALUES (?)", (sensor,))])

    def forget_sensor(self, sensor: str) -> None:
        with self._lock:
            self._sensors.discard(sensor)
            self._write([("DELETE FROM sensors WHERE sensor = ?", (sensor,))])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _open(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=1.0)
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"written by a newer agent (schema {version})")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
            rows = db.execute("SELECT sensor, kind, slot, event FROM episodes").fetchall()
            episodes = {(str(s), str(k), str(t)): _decode(str(e)) for s, k, t, e in rows}
            sensors = {str(s) for (s,) in db.execute("SELECT sensor FROM sensors")}
        except (OSError, sqlite3.Error, ValueError, TypeError, KeyError) as err:
            logger.error("alert state %s cannot be used (%s): open alerts will not survive a restart", path, err)
            return
        self._db, self._episodes, self._sensors = db, episodes, sensors
        logger.info("alert state %s: %d open episodes, %d sensors known", path, len(episodes), len(sensors))

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """One transaction (caller holds the lock); a failure switches the store to memory, logged."""
        db = self._db
        if db is None or not statements:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            for sql, values in statements:
                db.execute(sql, values)
            db.execute("COMMIT")
        except sqlite3.Error as err:
            logger.error("alert state %s: write failed (%s); keeping it in memory from now on", self.path, err)
            self._db = None
            db.close()


def _encode(event: AlertEvent) -> str:
    return json.dumps(asdict(event))


def _decode(text: str) -> AlertEvent:
    doc = {k: v for k, v in json.loads(text).items() if k in _EVENT_FIELDS}
    doc["tags"] = tuple(doc.get("tags", ()))
    return AlertEvent(**doc)
