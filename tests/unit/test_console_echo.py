"""The console echo keeps every alert line whole when threads echo at once (``edge-agent run`` on a terminal)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from edge_agent.cli import echo_line

THREADS = 6
LINES = 40


class SlowConsole:
    """A stream whose every write lets another thread run, as a terminal or pipe may."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, chunk: str) -> int:
        time.sleep(0.0002)
        self.text += chunk
        return len(chunk)

    def flush(self) -> None:
        time.sleep(0.0001)


def echoed(echo: Callable[[str, SlowConsole], None]) -> list[str]:
    console = SlowConsole()

    def worker(n: int) -> None:
        for i in range(LINES):
            echo(f"NEW    fault sensor-{n}: IR007 line {i}", console)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return console.text.splitlines()


def whole(lines: list[str]) -> bool:
    return len(lines) == THREADS * LINES and all(line.startswith("NEW ") and line.count("NEW") == 1 for line in lines)


def test_print_from_several_threads_breaks_lines_on_such_a_console() -> None:
    """What the agent did before (``print(line, flush=True)``): text and newline are two writes."""
    assert not whole(echoed(lambda line, console: print(line, file=console, flush=True)))


def test_echo_line_keeps_every_line_whole() -> None:
    assert whole(echoed(echo_line))
