"""TLS and passwords against a real mosquitto: the right CA and credentials connect, others are refused."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from edge_agent.config import MqttSection
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks.mqtt_alerts import MqttAlertSink


def _mosquitto() -> str:
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_pki(folder: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 (openssl); a second, unrelated CA."""
    for ca in ("ca", "other-ca"):
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={ca}",
             "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=folder)  # fmt: skip
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", "server.key", "-out", "server.csr", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "1", "-extfile", "san.ext", "-out", "server.crt", cwd=folder)  # fmt: skip
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=gateway",
         "-keyout", "client.key", "-out", "client.csr", cwd=folder)  # fmt: skip
    _run("openssl", "x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "1", "-out", "client.crt", cwd=folder)  # fmt: skip
    _run("mosquitto_passwd", "-b", "-c", "passwords", "gateway", "right-secret", cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    _make_pki(folder)
    return folder


@pytest.fixture(scope="module")
def tls_broker(pki: Path) -> Iterator[tuple[int, int]]:
    """Ports of two TLS listeners: CA + password, and CA + a required client certificate."""
    tmp_path = pki
    port = free_port()
    cert_port = free_port()
    while cert_port == port:
        cert_port = free_port()
    user = "user root\n" if os.geteuid() == 0 else ""
    tls_files = f"cafile {tmp_path}/ca.crt\ncertfile {tmp_path}/server.crt\nkeyfile {tmp_path}/server.key\n"
    (tmp_path / "mosquitto.conf").write_text(
        f"{user}per_listener_settings true\n"
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {tmp_path}/passwords\n{tls_files}"
        f"listener {cert_port} 127.0.0.1\nallow_anonymous true\nrequire_certificate true\n{tls_files}"
        "log_dest stderr\n"
    )
    with (tmp_path / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen([_mosquitto(), "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail((tmp_path / "mosquitto.log").read_text())
                time.sleep(0.05)
        yield port, cert_port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _connects(
    port: int, folder: Path, *, password: str, tls: bool = True, ca: str = "ca.crt", client_cert: bool = False
) -> bool:
    section = MqttSection(
        enabled=True,
        port=port,
        username="gateway",
        tls=tls,
        ca_file=str(folder / ca) if tls else "",
        cert_file=str(folder / "client.crt") if client_cert else "",
        key_file=str(folder / "client.key") if client_cert else "",
        reconnect_min_s=0.2,
        reconnect_max_s=0.5,
    )
    sink = MqttAlertSink(section, password=password, agent_id="tls-test", metrics=AgentMetrics())
    sink.open()
    try:
        return sink.connected.wait(timeout=3.0)
    finally:
        sink.close(timeout_s=0.5)


def test_right_ca_and_password_connect(tls_broker: tuple[int, int], pki: Path) -> None:
    assert _connects(tls_broker[0], pki, password="right-secret")


@pytest.mark.parametrize(
    ("why", "options"),
    [
        ("wrong password", {"password": "wrong"}),
        ("plain TCP to a TLS listener", {"password": "right-secret", "tls": False}),
        ("server certificate from another CA", {"password": "right-secret", "ca": "other-ca.crt"}),
    ],
)
def test_refused(tls_broker: tuple[int, int], pki: Path, why: str, options: dict[str, object]) -> None:
    assert not _connects(tls_broker[0], pki, **options), why


def test_listener_requiring_a_client_certificate(tls_broker: tuple[int, int], pki: Path) -> None:
    port = tls_broker[1]
    assert _connects(port, pki, password="", client_cert=True)
    assert not _connects(port, pki, password="")
