"""The agent's control socket: operator commands (learning on the gateway) from the same machine.

A UNIX stream socket ``<state_dir>/control.sock``; no network-facing surface. Authentication is the
file system's: the state folder is the agent's (mode 0700 under systemd's ``StateDirectory``), the
socket is created with mode 0600, and every connection's peer is checked again with ``SO_PEERCRED``:
only the agent's own user and root may send commands (``edge-agent learn --sensor NAME`` run with
``sudo -u <agent user>`` or as root). A refused peer gets a reply that says so, and the refusal is logged.

One request per connection: a JSON object on one line, ``{"command": "learn", "sensor": ...,
"duration_s": ..., ...}`` or ``{"command": "status"}``; the reply is one JSON line ``{"ok": bool,
"message": str, ...}``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024
DURATION_UNITS_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
Handler = Callable[[dict[str, Any]], dict[str, Any]]


def parse_duration_s(text: str) -> float:
    """``"10m"`` -> 600.0; ``s``, ``m``, ``h`` or a plain number of seconds; ``ValueError`` otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if match is None:
        raise ValueError(f"duration {text!r} is not a number with an optional unit s, m or h (e.g. 10m)")
    return float(match.group(1)) * DURATION_UNITS_S[match.group(2)]


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


def peer_uid(connection: socket.socket) -> int:
    """The user id of the process at the other end (Linux ``SO_PEERCRED``)."""
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return uid


class ControlServer:
    """Accepts commands on ``<state_dir>/control.sock`` in a thread named ``control``."""

    def __init__(self, state_dir: Path, handler: Handler, *, allowed_uids: Collection[int] | None = None) -> None:
        self.path = socket_path(state_dir)
        self.handler = handler
        self.allowed_uids = frozenset(allowed_uids if allowed_uids is not None else {os.getuid(), 0})
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.exists():  # a socket left by a process that died, or another agent's on this state folder
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                if probe.connect_ex(str(self.path)) == 0:
                    raise OSError(f"another agent answers on {self.path} (two agents share one state folder)")
            self.path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window in which others may connect
        try:
            server.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        server.listen(4)
        server.settimeout(0.5)
        self._socket = server
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        logger.info("control socket %s (owner only)", self.path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._socket is not None:
            self._socket.close()
            self.path.unlink(missing_ok=True)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _serve(self) -> None:
        assert self._socket is not None
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                connection.settimeout(2.0)
                try:
                    connection.sendall((json.dumps(self._answer(connection)) + "\n").encode())
                except OSError as error:  # the client went away; the agent goes on
                    logger.warning("control socket: %s", error)

    def _answer(self, connection: socket.socket) -> dict[str, Any]:
        uid = peer_uid(connection)
        try:
            line = _read_line(connection)  # read (bounded) before answering, so the client's write never breaks
            if uid not in self.allowed_uids:
                allowed = sorted(self.allowed_uids)
                logger.warning("control socket: refused a command from user id %d (allowed: %s)", uid, allowed)
                return {"ok": False, "message": f"permission denied: user id {uid} may not control this agent"}
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            return self.handler(request)
        except (ValueError, OSError) as error:
            return {"ok": False, "message": f"bad request: {error}"}


def _read_line(connection: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        part = connection.recv(4096)
        if not part:
            break
        data += part
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    return data.split(b"\n", 1)[0]


def send_command(state_dir: Path, request: dict[str, Any], *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one command to the agent whose state folder is ``state_dir``; its reply (``OSError`` if none runs)."""
    path = socket_path(state_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        client.connect(str(path))
        client.sendall((json.dumps(request) + "\n").encode())
        reply = json.loads(_read_line(client) or b"{}")
    if not isinstance(reply, dict):
        raise OSError(f"{path}: the agent's reply is not a JSON object")
    return reply


def state_dir_of(config_path: str, sensor: str) -> Path:
    """The state folder of the agent that processes ``sensor``: with sources shared by instances
    (``instances`` = K), that of instance ``share_of(sensor, K)`` (config/instances.py)."""
    from edge_agent.config.instances import share_of
    from edge_agent.configload import ConfigError, load_config

    try:
        return load_config(config_path).agent.state_path()
    except ConfigError:
        first = load_config(config_path, 0)  # still invalid: that error
    counts = sorted({source.instance_count for source in first.sources if source.instance_count > 1})
    if len(counts) != 1:
        raise ConfigError([f"{config_path}: sources shared by {counts} instances: give --state-dir"])
    return load_config(config_path, share_of(sensor, counts[0])).agent.state_path()


def request_learning(args: Any) -> int:
    """``edge-agent learn --sensor NAME --duration 10m``: ask the running agent to learn; 0 if it started."""
    state_dir = Path(args.state_dir) if args.state_dir else state_dir_of(args.config, args.sensor)
    request = {
        "command": "learn",
        "sensor": args.sensor,
        "duration_s": parse_duration_s(args.duration),
        "force": bool(args.force),
    }
    given = {"network": args.model, "frontend": args.frontend, "false_rate": args.false_rate, "steps": args.steps}
    # options left out on the command line fall back to the sensor's [sources.learn] values (in the agent)
    request.update({key: value for key, value in given.items() if value is not None})
    try:
        reply = send_command(state_dir, request)
    except PermissionError as error:
        print(f"edge-agent learn: permission denied on {socket_path(state_dir)}: {error}; run it as the agent's user")
        return 1
    except OSError as error:
        print(f"edge-agent learn: no agent answers on {socket_path(state_dir)}: {error}")
        return 1
    print(f"edge-agent learn: {reply.get('message', reply)}")
    return 0 if reply.get("ok") else 1
