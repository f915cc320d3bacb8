"""How fast this core is now: the median CPU time of a fixed unit of work, run every 50 ms for N seconds.

    taskset -c 1 .venv/bin/python benchmarks/machine_probe.py 20     # prints {"unit_ms": ..., "units": ...}

``bench_overload.py --agent-cpu-quota`` runs it on the agent's core during each row's steady window (in the
room the agent's quota leaves, ~4 % of the core). The unit (dict stores and small float32 matrix products:
the kind of work the agent does) is the same in every row, so a slower unit says the machine itself is slower
in that row: on the shared 2-core VM the load core's work slows the agent's core too (shared cache, memory, host).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

MATRIX = np.random.default_rng(0).random((64, 1024), dtype=np.float32)
SLEEP_S = 0.05


def unit(store: dict[int, str]) -> None:
    for i in range(3000):
        store[i % 700] = str(i)
    for _ in range(20):
        (MATRIX @ MATRIX.T).sum()


def main(argv: list[str]) -> int:
    duration_s = float(argv[0]) if argv else 20.0
    store: dict[int, str] = {}
    unit(store)  # warm
    took, end = [], time.monotonic() + duration_s
    while time.monotonic() < end:
        started = time.thread_time()
        unit(store)
        took.append(time.thread_time() - started)
        time.sleep(SLEEP_S)
    print(json.dumps({"unit_ms": 1e3 * statistics.median(took), "units": len(took)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
