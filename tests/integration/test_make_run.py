"""``make run``'s command (``python -m edge_agent run --config config.toml``) as a new user sees it.

The shipped config.toml, moved to a free metrics port (and its model path made absolute): each
alert printed once, no torch warning on stderr (not even those Python hides by default), the
/metrics URL in the log, a closing summary, and the README's duration matching the replay.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from edge_agent.common.paths import data_root

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (data_root() / "cwru" / "cwru_12k_de_dev.npz").is_file(), reason="needs the CWRU data in ../shared/data"
)


def shipped_config(folder: Path, port: int) -> Path:
    text = (REPO / "config.toml").read_text()
    for old, new in (("\nport = 10041 ", f"\nport = {port} "), ('\npath = "models/', f'\npath = "{REPO}/models/')):
        assert text.count(old) == 1, f"config.toml changed: {old!r} not found once"
        text = text.replace(old, new)
    path = folder / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], int]:
    port = free_port()
    config = shipped_config(tmp_path_factory.mktemp("make-run"), port)
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # DeprecationWarnings too, which Python hides by default
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result, port


def test_no_torch_warning_at_start(make_run: tuple[subprocess.CompletedProcess[str], int]) -> None:
    result, _ = make_run
    warnings = [line for line in result.stderr.splitlines() if "Warning" in line]
    assert warnings == []  # e.g. "DeprecationWarning: `torch.jit.load` is deprecated", torch's C++ "Warning: ..."


def test_each_alert_is_printed_once(make_run: tuple[subprocess.CompletedProcess[str], int]) -> None:
    result, _ = make_run
    both = (result.stdout + result.stderr).splitlines()
    assert [line.split()[0] for line in both if "fault demo-motor-de: IR007" in line] == ["NEW", "END"]


def test_the_log_says_where_metrics_are(make_run: tuple[subprocess.CompletedProcess[str], int]) -> None:
    result, port = make_run
    assert f"serving Prometheus metrics at http://127.0.0.1:{port}/metrics" in result.stderr


def test_a_summary_at_the_end_and_the_readme_says_how_long_it_runs(
    make_run: tuple[subprocess.CompletedProcess[str], int],
) -> None:
    result, _ = make_run
    summary = result.stdout.splitlines()[-1]
    found = re.fullmatch(
        r"summary: ran [\d.]+ s; ([\d.]+) s of signal from 1 sensor; (\d+) windows analysed; 0 dropped; "
        r"1 alert raised \(IR007 1\)\.",
        summary,
    )
    assert found, summary
    signal_s, windows = float(found.group(1)), int(found.group(2))
    assert windows > 50  # ~8 s at 12 kHz, hop 1024 per record
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"exits after about {round(signal_s)} s of signal" in readme
