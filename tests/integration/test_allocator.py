"""The service's allocator: the unit preloads jemalloc, the agent says which allocator runs (issue 13's memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.common.allocator import allocator, preload_problem
from edge_agent.metrics import AgentMetrics

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edge-agent.service"
PROBE = (
    "import json, os; from edge_agent.common.allocator import allocator, preload_problem; "
    "print(json.dumps([allocator(), preload_problem()]))"
)


def jemalloc_installed() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "pass"], env={**os.environ, "LD_PRELOAD": "libjemalloc.so.2"}, capture_output=True
    )
    return b"cannot be preloaded" not in probe.stderr


def unit_environment() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            for item in line.removeprefix("Environment=").split():
                key, _, value = item.partition("=")
                found[key] = value
    return found


def run_probe(**env: str) -> list:
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, "PYTHONPATH": str(REPO), **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_allocator_is_read_from_the_process_maps() -> None:
    assert allocator("7f00-7f10 r-xp 0 08:01 5 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n") == "jemalloc"
    assert allocator("7f00-7f10 r-xp 0 08:01 5 /usr/lib/x86_64-linux-gnu/libc.so.6\n") == "glibc"
    assert allocator("") == "unknown"
    assert allocator() in ("jemalloc", "glibc")  # this process's own


def test_a_preload_the_loader_ignored_is_named() -> None:
    glibc = "7f00-7f10 r-xp 0 08:01 5 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
    problem = preload_problem({"LD_PRELOAD": "libjemalloc.so.2"}, glibc)
    assert problem is not None and "LD_PRELOAD=libjemalloc.so.2" in problem and "libjemalloc2" in problem
    assert preload_problem({}, glibc) is None  # nothing asked for
    assert preload_problem({"LD_PRELOAD": "libjemalloc.so.2"}, glibc + "/usr/lib/libjemalloc.so.2\n") is None


@pytest.mark.skipif(not jemalloc_installed(), reason="libjemalloc2 is not installed (`make system` installs it)")
def test_the_units_environment_runs_jemalloc() -> None:
    env = unit_environment()
    assert env.get("LD_PRELOAD") == "libjemalloc.so.2"  # by name: the loader finds it on any architecture
    assert run_probe(**env) == ["jemalloc", None]
    assert run_probe() == ["glibc", None]  # the check can fail: without the preload it is glibc's


def test_a_missing_preload_is_reported_by_a_real_process() -> None:
    allocator_name, problem = run_probe(LD_PRELOAD="libjemalloc-not-installed.so.2")
    assert allocator_name == "glibc" and "not loaded" in problem


def test_build_info_carries_the_allocator() -> None:
    metrics = AgentMetrics()
    samples = [s for m in metrics.registry.collect() if m.name == "edge_agent_build_info" for s in m.samples]
    assert len(samples) == 1 and samples[0].labels["allocator"] == allocator()
