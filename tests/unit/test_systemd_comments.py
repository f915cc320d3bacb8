"""The unit and the gateway config that ``make install`` puts on a gateway point only at what is there.

Their comments are read on the gateway (``systemctl cat edge-agent``, ``/etc/edge-agent/config.toml``),
where the repository does not exist: no relative paths, no source-code names, and every file under
the install prefix that they mention is one ``make install`` writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = (REPO / "systemd" / "edge-agent.service", REPO / "systemd" / "config.toml")
# where an installed system has the files these comments name (PREFIX, SYSCONFDIR, systemd's own)
INSTALLED_ROOTS = ("/opt/edge-agent/", "/etc/edge-agent/", "/etc/systemd/", "/run/", "/var/lib/", "/proc/")
PATH = re.compile(r"(?<![\w:])(\.{1,2}/[\w./-]+|/[\w.-]+(?:/[\w.@-]+)+|[\w-]+/[\w./-]+\.(?:md|py|toml|yml|json))")


def comments(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.lstrip().startswith("#")]


def installed_under_prefix() -> set[str]:
    """Top-level names under $(PREFIX) that the Makefile's install target writes."""
    makefile = (REPO / "Makefile").read_text()
    names = set(re.findall(r"\$\(DESTDIR\)\$\(PREFIX\)/([\w.-]+)", makefile))
    if "DEST_VENV = $(DESTDIR)$(PREFIX)/venv" in makefile:
        names.add("venv")
    return names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_comments_name_only_installed_paths(path: Path) -> None:
    assert {"README.md", "config.example.toml", "models", "venv"} <= installed_under_prefix()
    for line in comments(path):
        assert not re.search(r"\bedge_agent\.\w", line), f"{path.name}: a source-code name: {line}"
        for found in (match.rstrip(".,;:") for match in PATH.findall(line)):  # a sentence's full stop
            on_a_gateway = (found.rstrip("/") + "/").startswith(INSTALLED_ROOTS)
            assert on_a_gateway, f"{path.name}: {found} is not on a gateway: {line}"
            if found.startswith("/opt/edge-agent/"):
                top = found.removeprefix("/opt/edge-agent/").split("/")[0]
                assert top in installed_under_prefix(), f"{path.name}: make install writes no {found}"


def test_the_path_pattern_finds_development_paths() -> None:
    line = "# Hardening (measured in ../shared/ENVIRONMENT.md); see docs/benchmarks.md and /opt/edge-agent/x"
    assert PATH.findall(line) == ["../shared/ENVIRONMENT.md", "docs/benchmarks.md", "/opt/edge-agent/x"]
