"""A missing model file: a person at a terminal gets the error at once, a service waits for the file."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import waits_for_models

REPO = Path(__file__).resolve().parents[2]


def test_who_waits_for_model_files() -> None:
    assert not waits_for_models(False, environ={}, interactive=True)  # a person at a terminal
    assert waits_for_models(True, environ={}, interactive=True)  # --wait-for-models
    assert waits_for_models(False, environ={"INVOCATION_ID": "x"}, interactive=True)  # systemd
    assert waits_for_models(False, environ={"NOTIFY_SOCKET": "/run/x"}, interactive=True)
    assert waits_for_models(False, environ={}, interactive=False)  # no terminal (a pipe, a test, cron)


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script for a terminal")
def test_a_missing_model_from_a_terminal_exits_at_once_naming_its_key(tmp_path: Path) -> None:
    # Issue 11: a missing model path retried forever without naming models[i].path.
    config = tmp_path / "agent.toml"
    config.write_text(
        '[metrics]\nenabled = false\n[[models]]\nname = "bearing"\npath = "missing.pt"\n'
        '[[sources]]\ntype = "replay"\nname = "r"\nsensor = "m1"\nmodels = ["bearing"]\n'
        'path = "${EDGE_AGENT_DATA}/cwru/cwru_12k_de_dev.npz"\nrecords = ["097"]\n',
        encoding="utf-8",
    )
    command = f"{shlex.quote(sys.executable)} -m edge_agent run --config {shlex.quote(str(config))}"
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "NOTIFY_SOCKET")}
    done = subprocess.run(
        ["script", "-qec", command, "/dev/null"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout
    assert f"models[0].path: {str(tmp_path / 'missing.pt')!r} does not exist" in done.stdout
    assert "--wait-for-models" in done.stdout
