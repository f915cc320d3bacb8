"""The durable alert outbox (edge_agent/sinks/outbox.py): order, acknowledgements, restart, bounds, errors."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.outbox import OUTBOX_FILE, Outbox, OutboxError, Stored, open_outbox

REPO = Path(__file__).resolve().parents[2]
T0 = 1_795_860_000.0


@pytest.fixture
def metrics() -> AgentMetrics:
    return AgentMetrics()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / OUTBOX_FILE


@pytest.fixture
def make(metrics: AgentMetrics, path: Path) -> Iterator[Callable[..., Outbox]]:
    """``make(**bounds)``: an Outbox on the test's file (closed after the test)."""
    made: list[Outbox] = []

    def build(**kw: object) -> Outbox:
        kw.setdefault("max_count", 1000)
        box = Outbox(kw.pop("at", path), metrics=metrics, **kw)  # type: ignore[arg-type]
        made.append(box)
        return box

    yield build
    for box in made:
        box.close()


def put(box: Outbox, event_type: str, alert_id: str, n: int = 0, *, now: float | None = None, size: int = 10) -> Stored:
    payload = f"{event_type}:{alert_id}:{n}:".encode().ljust(size, b".")
    return box.append(f"edge-agent/gw/s/{alert_id}", payload, event_type=event_type, alert_id=alert_id, now=now)


def drain(box: Outbox) -> list[bytes]:
    """Take every row, in order (without acknowledging it)."""
    rows = []
    while (row := box.take()) is not None:
        rows.append(row.payload)
    return rows


def names(payloads: list[bytes]) -> list[str]:
    return [p.rstrip(b".").decode().rstrip(":") for p in payloads]


def dropped(metrics: AgentMetrics, reason: str) -> float:
    return metrics.registry.get_sample_value("edge_agent_alerts_dropped_total", {"reason": reason}) or 0.0


def test_rows_come_out_in_order_and_leave_only_when_acknowledged(make, metrics: AgentMetrics) -> None:
    box = make()
    rows = [put(box, "update", "a", n) for n in range(5)]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    first, second = box.take(), box.take()
    assert (first, second) == (rows[0], rows[1])
    assert len(box) == 5 and box.untaken() == 3  # taken is not gone: the broker has not acknowledged it
    box.untake(second.seq)  # paho refused it: it is the next one again
    assert box.take() == rows[1]
    box.ack(first.seq)
    assert len(box) == 4
    assert names(drain(box)) == ["update:a:2", "update:a:3", "update:a:4"]
    assert metrics.registry.get_sample_value("edge_agent_alert_outbox_durable") == 1


def test_reopening_the_file_replays_what_was_not_acknowledged_in_order_before_new_rows(make, path: Path) -> None:
    box = make()
    rows = [put(box, "update", "a", n) for n in range(4)]
    assert box.take() == rows[0]
    box.ack(rows[0].seq)
    box.flush()
    assert box.take() == rows[1]  # in flight when the agent stops: not acknowledged, so it stays
    box.close()
    again = make()
    assert len(again) == 3
    later = put(again, "update", "a", 9)
    assert later.seq > rows[-1].seq
    assert names(drain(again)) == ["update:a:1", "update:a:2", "update:a:3", "update:a:9"]


def test_an_acknowledgement_not_yet_flushed_is_sent_again_after_a_restart(make) -> None:
    """At least once: a PUBACK whose delete never reached the disk means a duplicate, never a loss."""
    box = make()
    row = put(box, "new", "a")
    box.take()
    box.ack(row.seq)
    assert box.unflushed()
    box._db.close()  # the process dies before the delete is committed  # type: ignore[union-attr]
    box._db = None
    assert names(drain(make())) == ["new:a:0"]


def test_the_count_bound_drops_the_oldest_update_first_and_counts_it(make, metrics: AgentMetrics, path: Path) -> None:
    box = make(max_count=3)
    put(box, "new", "a")
    for n in range(4):
        put(box, "update", "a", n)
    assert len(box) == 3
    assert dropped(metrics, "count") == 2
    assert names(drain(box)) == ["new:a:0", "update:a:2", "update:a:3"]
    box.close()
    assert names(drain(make(max_count=3))) == ["new:a:0", "update:a:2", "update:a:3"]  # the drops are on disk too


def test_the_byte_bound_counts_topic_and_payload(make, metrics: AgentMetrics) -> None:
    box = make(max_bytes=3 * (len("edge-agent/gw/s/a") + 100))
    for n in range(5):
        put(box, "update", "a", n, size=100)
    assert len(box) == 3 and box.size_bytes <= box.max_bytes
    assert dropped(metrics, "bytes") == 2 and dropped(metrics, "count") == 0
    assert names(drain(box)) == ["update:a:2", "update:a:3", "update:a:4"]


def test_the_age_bound_drops_old_rows_on_append_and_on_expire(make, metrics: AgentMetrics) -> None:
    box = make(max_age_s=60.0)
    put(box, "update", "a", 0, now=T0)
    put(box, "update", "a", 1, now=T0 + 30)
    put(box, "update", "a", 2, now=T0 + 70)  # the first is now 70 s old
    assert dropped(metrics, "age") == 1
    box.expire(now=T0 + 95)
    assert dropped(metrics, "age") == 2
    assert names(drain(box)) == ["update:a:2"]


def test_a_full_outbox_never_drops_the_end_of_a_delivered_new(make, metrics: AgentMetrics) -> None:
    """The consumer saw `new a`; `end a` must reach it even while newer events are dropped for it."""
    box = make(max_count=3)
    new_a = put(box, "new", "a")
    assert box.take() == new_a
    box.ack(new_a.seq)  # delivered
    put(box, "end", "a")
    put(box, "new", "b")
    put(box, "update", "b", 1)
    put(box, "update", "b", 2)  # over the bound: an update goes, not end a
    assert names(drain(box)) == ["end:a:0", "new:b:0", "update:b:2"]
    box.untake(0)  # no-op for an unknown seq
    # episode c never went out: once no update is left, its new goes with its end (the episode whole)
    box2 = make(max_count=3, at=box.path.parent / "second.sqlite3")
    new_x = put(box2, "new", "x")
    box2.take()
    box2.ack(new_x.seq)
    put(box2, "end", "x")
    put(box2, "new", "c")
    put(box2, "end", "c")
    put(box2, "new", "d")
    assert names(drain(box2)) == ["end:x:0", "new:d:0"]
    assert dropped(metrics, "count") == 3


def test_ends_of_delivered_news_stay_even_past_the_bound_and_age(make, metrics: AgentMetrics) -> None:
    box = make(max_count=2, max_age_s=60.0)
    for alert_id in "abc":
        row = put(box, "new", alert_id, now=T0)
        box.take()
        box.ack(row.seq)
    for alert_id in "abc":
        put(box, "end", alert_id, now=T0)
    assert len(box) == 3  # one over: each is the end of an episode a consumer saw begin
    box.expire(now=T0 + 3600)
    put(box, "update", "z", now=T0 + 3600)  # the newest goes instead
    assert names(drain(box)) == ["end:a:0", "end:b:0", "end:c:0"]
    assert dropped(metrics, "count") == 1 and dropped(metrics, "age") == 0


def test_rows_handed_out_are_not_dropped(make, metrics: AgentMetrics) -> None:
    box = make(max_count=2)
    in_flight = [put(box, "update", "a", n) for n in range(2)]
    assert [box.take(), box.take()] == in_flight  # the broker may have them already
    put(box, "update", "a", 2)
    assert len(box) == 2 and dropped(metrics, "count") == 1
    assert box.take() is None  # the new one went: the two in flight are older but cannot be taken back


def test_a_long_outage_of_drops_keeps_memory_bounded(metrics: AgentMetrics) -> None:
    box = Outbox(None, metrics=metrics, max_count=10)
    for n in range(5000):
        put(box, "new" if n % 50 == 0 else "update", f"e{n // 50}", n)
    assert len(box) == 10 and dropped(metrics, "count") == 4990
    assert len(box._queue) <= 2 * 10 + 64  # no trace of the dropped rows piles up
    assert len(drain(box)) == 10


def test_memory_only_outbox_has_the_same_rules(metrics: AgentMetrics) -> None:
    box = Outbox(None, metrics=metrics, max_count=2)
    for n in range(3):
        put(box, "update", "a", n)
    assert names(drain(box)) == ["update:a:1", "update:a:2"]
    assert not box.durable
    assert metrics.registry.get_sample_value("edge_agent_alert_outbox_durable") == 0


# --- errors: each names the file; the sink then keeps alerting from memory ---


def test_a_file_that_is_not_a_database_is_refused_naming_it(metrics: AgentMetrics, path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is no SQLite file, just text that happens to be here" * 100)
    with pytest.raises(OutboxError, match=str(path)) as err:
        Outbox(path, metrics=metrics, max_count=10)
    assert "move the file aside" in str(err.value)


def test_a_damaged_database_is_refused_naming_it(make, metrics: AgentMetrics, path: Path) -> None:
    box = make()
    for n in range(200):
        put(box, "update", "a", n, size=500)
    box.close()
    with path.open("r+b") as handle:  # keep the header, overwrite the pages behind it
        handle.seek(4096)
        handle.write(b"\xff" * 16384)
    with pytest.raises(OutboxError, match=str(path)):
        Outbox(path, metrics=metrics, max_count=10)


def test_a_folder_that_cannot_be_created_is_refused_naming_it(metrics: AgentMetrics, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    bad = tmp_path / "afile" / "state" / OUTBOX_FILE  # its parent is a file: even root cannot make it
    with pytest.raises(OutboxError, match=str(bad)):
        Outbox(bad, metrics=metrics, max_count=10)


def test_a_second_agent_on_the_same_file_is_refused(make, metrics: AgentMetrics, path: Path) -> None:
    make()
    with pytest.raises(OutboxError, match="another agent"):
        Outbox(path, metrics=metrics, max_count=10)


def test_a_newer_schema_is_refused(metrics: AgentMetrics, path: Path) -> None:
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(OutboxError, match="newer agent"):
        Outbox(path, metrics=metrics, max_count=10)


def test_open_outbox_falls_back_to_memory_loudly(
    metrics: AgentMetrics, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage" * 1000)
    with caplog.at_level(logging.ERROR, logger="edge_agent.sinks.outbox"):
        box = open_outbox(path, metrics=metrics, max_count=10)
    assert not box.durable
    assert metrics.registry.get_sample_value("edge_agent_alert_outbox_durable") == 0
    assert any(str(path) in r.getMessage() and "memory only" in r.getMessage() for r in caplog.records)
    put(box, "new", "a")
    assert names(drain(box)) == ["new:a:0"]  # alerting goes on
    assert path.read_bytes() == b"garbage" * 1000  # the file is left as it was, for whoever looks into it


def test_a_write_that_fails_later_switches_to_memory_and_keeps_the_event(
    make, metrics: AgentMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    box = make()
    put(box, "new", "a")
    box._db.execute("DROP TABLE outbox")  # stands in for a disk that refuses writes  # type: ignore[union-attr]
    with caplog.at_level(logging.ERROR, logger="edge_agent.sinks.outbox"):
        put(box, "end", "a")
    assert not box.durable
    assert metrics.registry.get_sample_value("edge_agent_alert_outbox_durable") == 0
    assert any(str(box.path) in r.getMessage() for r in caplog.records)
    assert names(drain(box)) == ["new:a:0", "end:a:0"]


# --- durability: kill -9 in the middle of appends ---

WRITER = """
import sys
sys.modules["torch"] = None  # AgentMetrics only asks torch for its version: skip the import
from pathlib import Path
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.outbox import Outbox
box = Outbox(Path(sys.argv[1]), metrics=AgentMetrics(), max_count=1_000_000)
n = 0
while True:
    row = box.append("t/a/alert", b"event-%d" % n, event_type="update", alert_id="a")
    print(row.seq, flush=True)  # only after append returned: this event counts as accepted
    n += 1
"""


def test_every_event_whose_append_returned_survives_kill_9(metrics: AgentMetrics, path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(path)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env=env,
    )
    accepted: list[int] = []
    try:
        assert proc.stdout is not None
        while len(accepted) < 300:
            line = proc.stdout.readline()
            assert line, f"writer exited early with {proc.poll()}"
            accepted.append(int(line))
        proc.kill()  # SIGKILL in the middle of the stream: no clean-up of any kind
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -9
    box = Outbox(path, metrics=metrics, max_count=1_000_000)
    try:
        stored = {row.seq: row.payload for row in iter(box.take, None)}
    finally:
        box.close()
    missing = [seq for seq in accepted if seq not in stored]
    assert missing == []  # 0 lost
    assert all(stored[seq] == b"event-%d" % (seq - 1) for seq in accepted)
    assert sorted(stored) == list(range(1, len(stored) + 1))  # nothing half-written or out of order
