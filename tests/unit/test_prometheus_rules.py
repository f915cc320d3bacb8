"""deploy/prometheus/edge-agent.rules.yml: ``promtool check rules``, ``promtool test rules``, a test per rule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "edge-agent.rules.yml"
RULE_TESTS = RULES_DIR / "edge-agent.rules.test.yml"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by `make test`")


def promtool(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.MULTILINE)


def test_promtool_check_rules_passes() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    text = RULE_TESTS.read_text()
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", text)
    for name in alert_names():
        kinds = {bool(empty) for alert, empty in cases if alert == name}
        assert kinds == {True, False}, f"{name}: needs a case that fires and one that stays quiet"


@pytest.mark.parametrize("name", alert_names())
def test_the_unit_tests_catch_a_rule_that_never_fires(tmp_path: Path, name: str) -> None:
    """The tests can fail: with one rule's expression replaced by one that never fires, promtool fails."""
    text = RULES.read_text()
    broken, count = re.subn(rf"(- alert: {name}\n\s+expr: ).*", r"\1vector(1) == 0", text)
    assert count == 1
    (tmp_path / RULES.name).write_text(broken)
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {name}" in result.stdout + result.stderr
