"""Issue 12 item 4: under overload a message of many hops costs no windows that the full queue would drop.

A full queue ends up holding ``room`` of a sensor's next windows (its fair share, or what it holds now
if more); the router cuts only those, the newest, and counts the rest as the queue's drops. Where the
other sensors hold their shares the queue then holds exactly the windows it would have kept had every
window been cut and queued, the drop counters say the same, and the stream goes on without a gap.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from test_ingress_fuzz import HOP, RATE_HZ, WINDOW, _model

from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.datapath import DataPath
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.window_queue import QueuedWindow, WindowQueue
from edge_agent.types import Chunk, Window

NO_STOP = threading.Event()
QUEUE_WINDOWS = 8
HOPS_PER_CHUNK = 8


def _value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _fill(queue: WindowQueue, sensors: int) -> None:
    for i in range(QUEUE_WINDOWS):
        w = Window(f"other{i % sensors}", float(i), i + 1.0, np.zeros((1, WINDOW), np.float32))
        queue.put(QueuedWindow("bearing", w))


def _path(metrics: AgentMetrics) -> tuple[DataPath, object]:
    cfg = parse_config(
        {
            "models": [{"name": "bearing", "path": "/m/bearing.pt"}],
            "sources": [
                {"type": "replay", "name": "plant", "path": "/d/x.npz", "sensor": "big", "models": ["bearing"]}
            ],
        },
        base_dir=Path("/"),
    )
    path = DataPath(metrics, DecisionEngine(cfg.decision, metrics=metrics))
    path.configure({"bearing": _model()}, cfg)
    return path, cfg.sources[0]


def _chunk(k: int, hops: int = HOPS_PER_CHUNK) -> Chunk:
    n = hops * HOP
    samples = np.arange(k * n, (k + 1) * n, dtype=np.float32).reshape(1, n)
    return Chunk("big", k * n / RATE_HZ, RATE_HZ, samples, seq=k)


def _run(*, room: bool) -> tuple[list[tuple[str, float]], AgentMetrics, int]:
    """Two 8-hop chunks of sensor ``big`` into a full queue; (what the queue holds, metrics, windows cut)."""
    metrics = AgentMetrics()
    queue = WindowQueue(QUEUE_WINDOWS, metrics)
    _fill(queue, sensors=4)  # 4 sensors x 2 windows: full, a fair share of 2 each
    path, section = _path(metrics)
    cut = []

    def submit(model: str, window: Window) -> None:
        cut.append(window)
        queue.put(QueuedWindow(model, window))

    router = path.router(section, submit, real_time=False, queue=queue if room else None)
    for k in range(2):
        router(_chunk(k))
    held = sorted((i.window.sensor, i.window.t_start) for i in queue.take_batch(100, 0.0, NO_STOP))
    return held, metrics, len(cut)


def test_room_is_the_fair_share_or_what_the_sensor_holds_and_none_unless_full_or_a_suspect() -> None:
    queue = WindowQueue(QUEUE_WINDOWS, AgentMetrics())
    assert queue.room("new") is None  # not full: every window
    _fill(queue, sensors=2)  # 2 sensors x 4 windows: a fair share of 4
    assert queue.room("new") == 4 and queue.room("other0") == 4
    queue.take_batch(2, 0.0, NO_STOP)  # one of each taken, 3 + 3 left: not full
    assert queue.room("other0") is None
    for t_s in (10.0, 11.0):
        queue.put(QueuedWindow("bearing", Window("other0", t_s, t_s + 1, np.zeros((1, WINDOW), np.float32))))
    assert queue.room("other0") == 5 and queue.room("new") == 4  # holds 5 of 8: newer ones displace its own
    queue.mark("new", 10.0, 50.0)
    assert queue.room("new") is None  # a suspect keeps all of its windows


def test_a_full_queue_holds_the_same_windows_whether_the_router_cuts_them_all_or_only_its_room() -> None:
    held_all, metrics_all, cut_all = _run(room=False)
    held_room, metrics_room, cut_room = _run(room=True)
    assert held_room == held_all  # the newest windows of `big` and the others' left over: identical
    assert (cut_all, cut_room) == (2 * HOPS_PER_CHUNK - 1, 4)  # 7 + 8 windows cut and queued before, now 2 + 2
    for name, labels in (
        ("edge_agent_windows_dropped_total", {"reason": "queue_full"}),
        ("edge_agent_sensor_windows_dropped_total", {"sensor": "big"}),
        ("edge_agent_windows_total", {"source": "plant", "sensor": "big"}),
        ("edge_agent_stream_gaps_total", {"source": "plant", "sensor": "big"}),
    ):
        assert _value(metrics_room, name, **labels) == _value(metrics_all, name, **labels), name
    assert _value(metrics_room, "edge_agent_stream_gaps_total", source="plant", sensor="big") == 0
