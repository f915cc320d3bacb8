"""Cost per chunk of the stream supervision (edge_agent/pipeline/supervision.py), beside what a chunk costs anyway.

    .venv/bin/python benchmarks/bench_supervision.py            # 5 rounds of 20 000 chunks

Rows (microseconds per chunk of 1024 samples at 12 kHz, one sensor, every check on: real time, seq, ts):

- ``supervision``: ``StreamSupervisor.observe`` on a healthy stream (no problem, nothing logged);
- ``windowing``: ``WindowAssembler.push`` of the same chunks (window 2048, hop 1024);
- ``JSON parse``: ``parse_payload`` of the chunk's JSON message, the work the MQTT source does first.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.modules.setdefault("torch", None)  # type: ignore[arg-type]  # AgentMetrics only asks torch for its version
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.config import StreamsSection  # noqa: E402
from edge_agent.metrics import AgentMetrics  # noqa: E402
from edge_agent.pipeline.supervision import StreamSpec, StreamSupervisor  # noqa: E402
from edge_agent.pipeline.windowing import WindowAssembler  # noqa: E402
from edge_agent.sources.payloads import parse_payload  # noqa: E402
from edge_agent.types import Chunk  # noqa: E402

RATE_HZ, CHUNK, ROUNDS, COUNT = 12_000.0, 1024, 5, 20_000


def chunks(start_s: float) -> list[Chunk]:
    x = np.random.default_rng(0).normal(0, 0.1, (1, CHUNK)).astype(np.float32)
    step_s = CHUNK / RATE_HZ
    return [Chunk("s", start_s + i * step_s, RATE_HZ, x, i, i * step_s) for i in range(COUNT)]


def per_chunk_us(run: Callable[[], None], count: int) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) / count * 1e6


def one_round(payload: bytes) -> dict[str, float]:
    metrics = AgentMetrics()
    metrics.init_sensor("s")
    stream = chunks(time.time())
    clock = iter(c.t0 for c in stream)  # the agent's clock follows the stream: no clock offset
    spec = StreamSpec("src", "json", True, 2048 / RATE_HZ, 1024 / RATE_HZ, {"bearing": RATE_HZ})
    supervisor = StreamSupervisor(spec, metrics.streams, StreamsSection(), wall_clock=lambda: next(clock))
    assembler = WindowAssembler(2048, 1024, RATE_HZ, 1)
    parse = lambda: [  # noqa: E731
        parse_payload(payload, fmt="json", sensor="s", expected_rate_hz=0, channels=1, received_at=0.0)
        for _ in range(COUNT // 10)
    ]
    result = {
        "supervision": per_chunk_us(lambda: [supervisor.observe(c, 1) for c in stream], COUNT),
        "windowing": per_chunk_us(lambda: [assembler.push(c) for c in stream], COUNT),
        "JSON parse": per_chunk_us(parse, COUNT // 10),
    }
    assert supervisor.problems("s") == set()
    return result


def main() -> None:
    payload = json.dumps({"seq": 1, "ts": time.time(), "sample_rate_hz": RATE_HZ, "samples": [0.01] * CHUNK}).encode()
    rounds = [one_round(payload) for _ in range(ROUNDS)]
    print(f"{ROUNDS} rounds x {COUNT} chunks of {CHUNK} samples; Python {sys.version.split()[0]}\n")
    print("| step | median us per chunk |\n|---|---:|")
    for name in rounds[0]:
        print(f"| {name} | {statistics.median(r[name] for r in rounds):.1f} |")


if __name__ == "__main__":
    main()
