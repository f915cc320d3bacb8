"""sd_notify over a real AF_UNIX datagram socket bound by the test (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.service.sdnotify import WATCHDOG_MIN_STALL_S, Notifier, Watchdog


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2.0)
        yield str(path), sock


def drain(sock: socket.socket) -> list[bytes]:
    messages = []
    sock.settimeout(0.05)
    try:
        while True:
            messages.append(sock.recv(4096))
    except TimeoutError:
        return messages


def test_unset_socket_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("running") is False
    assert notifier.watchdog_interval_s is None


def test_messages_reach_a_path_socket(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("running: 1 sources")
    assert sock.recv(4096) == b"READY=1\nSTATUS=running: 1 sources"
    assert notifier.status("two\nlines")  # a newline would start a new field: flattened
    assert sock.recv(4096) == b"STATUS=two lines"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_leading_at_means_the_abstract_namespace() -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2.0)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_a_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert notifier.ready("running") is False
    assert notifier.watchdog() is False
    assert notifier.failures == 2


def test_the_agent_counts_notify_failures_in_a_metric(tmp_path: Path) -> None:
    from edge_agent.metrics import AgentMetrics

    metrics = AgentMetrics()
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    notifier.on_failure = metrics.notify_errors.inc  # what App does
    notifier.status("starting")
    assert metrics.registry.get_sample_value("edge_agent_notify_errors_total") == 1.0


@pytest.mark.parametrize(
    ("env", "interval_s"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], interval_s: float | None) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/run/x", **env}).watchdog_interval_s == interval_s


def test_watchdog_pings_only_while_healthy_and_says_why_it_stopped(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # a ping every 50 ms
    problem: list[str | None] = [None]
    stalls: list[float] = []

    def check(max_stall_s: float) -> str | None:
        stalls.append(max_stall_s)
        return problem[0]

    watchdog = Watchdog(notifier, check, lambda: "running")

    def poll_for(seconds: float) -> list[bytes]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            watchdog.poll()
            time.sleep(0.01)
        return drain(sock)

    healthy = poll_for(0.3)
    assert healthy.count(b"WATCHDOG=1") >= 3, healthy
    assert healthy.count(b"WATCHDOG=1") <= 7, healthy  # not on every poll: every 50 ms
    problem[0] = "the inference worker is stuck (3 s without progress)"
    stuck = poll_for(0.3)
    assert stuck == [b"STATUS=unhealthy: the inference worker is stuck (3 s without progress)"]
    problem[0] = None
    again = poll_for(0.2)
    assert again[0] == b"STATUS=running" and b"WATCHDOG=1" in again
    assert set(stalls) == {WATCHDOG_MIN_STALL_S}  # a short watchdog still allows this long a stall
