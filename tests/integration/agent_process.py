"""The agent as a process, for the integration tests: its ``[mqtt]`` block on the test broker and a start
that always cleans up (the process killed if it still runs, its log closed)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def mqtt_section(port: int) -> str:
    """The ``[mqtt]`` block of an agent on the test broker at ``port``, reconnecting fast."""
    return f"""[mqtt]
enabled = true
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
"""


def spawn_agent(config: Path, log: object) -> subprocess.Popen[bytes]:
    """``python -m edge_agent run --config config`` from the repository, its output to the open file ``log``."""
    command = [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)  # type: ignore[arg-type]


def kill_agent(proc: subprocess.Popen[bytes]) -> None:
    """Kill the agent if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@contextmanager
def agent_process(config: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The agent on ``config``, its output in ``log_path``; killed at the end if it still runs."""
    with log_path.open("wb") as log:
        proc = spawn_agent(config, log)
        try:
            yield proc
        finally:
            kill_agent(proc)
