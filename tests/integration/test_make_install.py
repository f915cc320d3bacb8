"""`make install` / `make uninstall` into a DESTDIR, twice over an edited config.

The venv step runs for real (``python -m venv``, then pip installs this checkout into it, not
editable) but without dependencies (``INSTALL_REQUIREMENTS=.`` and ``--no-deps``), so the test
does not unpack torch: that the full venv works was shown by hand (see the README's "Run as a
service"). Everything else is exactly what an operator's ``make install`` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_agent.configload import load_config

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/opt/edge-agent-test"  # not the default, so the rewriting of paths shows
CHEAP_VENV = ["INSTALL_REQUIREMENTS=.", "INSTALL_PIP_ARGS=--quiet --no-deps"]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(target: str, destdir: Path) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", target, f"DESTDIR={destdir}", f"PREFIX={PREFIX}", *CHEAP_VENV],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "/venv/" not in f"/{p.relative_to(root)}"
    }


def test_install_twice_over_an_edited_config_then_uninstall(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    out = make("install", dest)
    assert "wrote /etc/edge-agent/config.toml" in out
    prefix = dest / PREFIX.lstrip("/")
    installed = files(dest)
    expected = {
        "etc/edge-agent/config.toml",
        "etc/edge-agent/config.toml.default",
        "etc/systemd/system/edge-agent.service",
        "etc/systemd/system/edge-agent@.service",  # the template: one process per core
        f"{PREFIX[1:]}/README.md",
        f"{PREFIX[1:]}/config.example.toml",
        f"{PREFIX[1:]}/models/README.md",
        *(f"{PREFIX[1:]}/models/{model.name}" for model in sorted((REPO / "models").glob("*.pt"))),
    }
    assert f"{PREFIX[1:]}/models/drsn_cw_cwru.pt" in expected
    assert installed == expected

    # the venv: the package itself (not this checkout) and a script that will work once moved out of DESTDIR
    python = prefix / "venv" / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import edge_agent; print(edge_agent.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout, whose edge_agent/ would shadow the installed one
    )
    assert where.stdout.startswith(str(prefix / "venv" / "lib")), where.stdout + where.stderr
    assert (prefix / "venv" / "bin" / "edge-agent").read_text().splitlines()[0] == f"#!{PREFIX}/venv/bin/python"

    # the unit and the config point at PREFIX; the config is valid and its model is installed
    unit = (dest / "etc/systemd/system/edge-agent.service").read_text()
    assert f"ExecStart={PREFIX}/venv/bin/python -m edge_agent run --config /etc/edge-agent/config.toml" in unit
    assert "/opt/edge-agent/" not in unit
    template = (dest / "etc/systemd/system/edge-agent@.service").read_text()
    assert (
        f"ExecStart={PREFIX}/venv/bin/python -m edge_agent run --config /etc/edge-agent/config.toml --instance %i"
        in (template)
    )
    assert "/opt/edge-agent/" not in template
    config_path = dest / "etc/edge-agent/config.toml"
    config = load_config(config_path)
    assert config.models[0].path == f"{PREFIX}/models/drsn_cw_cwru_fused.pt"  # the default, the fused file
    assert (dest / config.models[0].path.lstrip("/")).is_file()
    assert oct(config_path.stat().st_mode & 0o777) == "0o644"

    # again, over an edited config: the edit stays, the newest default lands beside it
    edited = config_path.read_text().replace('id = "gateway-1"', 'id = "press-7"')
    config_path.write_text(edited)
    (dest / "etc/edge-agent/config.toml.default").write_text("stale\n")
    out = make("install", dest)
    assert "kept /etc/edge-agent/config.toml" in out
    assert config_path.read_text() == edited
    assert 'id = "gateway-1"' in (dest / "etc/edge-agent/config.toml.default").read_text()
    assert files(dest) == expected

    # uninstall removes everything but the edited config
    out = make("uninstall", dest)
    assert "kept /etc/edge-agent/config.toml" in out
    assert files(dest) == {"etc/edge-agent/config.toml"}
    assert not prefix.exists()
    make("uninstall", dest)  # idempotent too
