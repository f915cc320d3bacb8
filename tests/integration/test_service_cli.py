"""`edge-agent run` as systemd runs it: a subprocess with NOTIFY_SOCKET (a real socket bound by the test) and
WATCHDOG_USEC; READY=1, STATUS=, WATCHDOG=1, reload on SIGHUP (good and bad files), STOPPING=1 on SIGTERM,
and the exit code that RestartPreventExitStatus= names for an invalid configuration."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from notify_socket import NotifyListener
from test_agent_replay import REPO, free_port, replay_config
from test_reload import toml

from edge_agent.cli import EXIT_CONFIG

UNIT = REPO / "systemd" / "edge-agent.service"


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    notify = NotifyListener(tmp_path / "notify.sock")
    yield notify
    notify.close()


def agent_env(listener: NotifyListener) -> dict[str, str]:
    return {**os.environ, "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "1000000", "PYTHONUNBUFFERED": "1"}


def scrape(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, name
    return float(found.group(1))


def test_run_notifies_reloads_on_sighup_and_says_stopping(listener: NotifyListener, tmp_path: Path) -> None:
    port = free_port()
    data = replay_config(["097"], speed=1.0, port=port, loop=True)
    config = tmp_path / "config.toml"
    config.write_text(toml(data))
    log = (tmp_path / "agent.log").open("w+")
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        env=agent_env(listener),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = listener.wait_for("READY=1", 60)
        assert listener.texts()[ready] == "READY=1\nSTATUS=running: 1 sources, 1 models"
        assert scrape(port, "edge_agent_config_last_reload_successful") == 1
        ping = listener.wait_for("WATCHDOG=1", 5, after=ready)
        listener.wait_for("WATCHDOG=1", 5, after=ping + 1)

        data["decision"]["min_confidence"] = 0.9  # applies live
        config.write_text(toml(data))
        agent.send_signal(signal.SIGHUP)
        reloading = listener.wait_for("RELOADING=1", 10, after=ready)
        done = listener.wait_for("READY=1", 10, after=reloading)
        assert listener.texts()[done].endswith("; reloaded")
        assert scrape(port, "edge_agent_config_reloads_total") == 1

        data["decision"]["confirm_k"] = 9  # more than confirm_n: refused, the old configuration runs on
        config.write_text(toml(data))
        agent.send_signal(signal.SIGHUP)
        refused = listener.wait_for("last reload refused: decision.confirm_k: 9", 10, after=done)
        assert scrape(port, "edge_agent_config_reload_failures_total") == 1
        assert scrape(port, "edge_agent_config_last_reload_successful") == 0
        listener.wait_for("WATCHDOG=1", 5, after=refused)  # still alive and pinging
        assert agent.poll() is None

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0
        stopping = listener.wait_for("STOPPING=1", 5, after=refused)
        assert "WATCHDOG=1" not in listener.texts()[stopping:]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    log.seek(0)
    output = log.read()
    assert "configuration reloaded: decision.min_confidence" in output
    assert "reload refused, the running configuration is kept: decision.confirm_k: 9" in output


def test_an_invalid_configuration_exits_with_the_code_systemd_does_not_restart(
    listener: NotifyListener, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[decision]\nconfirm_k = 9\n[[models]]\nname = "m"\npath = "m.pt"\n')
    for command in ("check-config", "run"):  # ExecStartPre= and ExecStart=
        args = [str(config)] if command == "check-config" else ["--config", str(config)]
        result = subprocess.run(
            [sys.executable, "-m", "edge_agent", command, *args],
            env=agent_env(listener),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == EXIT_CONFIG, result.stderr
        assert "decision.confirm_k: 9" in result.stderr
    time.sleep(0.2)
    assert listener.texts() == []  # never READY=1
    assert f"RestartPreventExitStatus={EXIT_CONFIG}\n" in UNIT.read_text()
