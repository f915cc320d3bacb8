"""The Prometheus exporter: ``/metrics`` of the agent's registry, served from a daemon thread.

An address that cannot be bound at start (a port taken, an address not up yet) does not keep the
agent from starting: the failure is logged naming ``metrics.listen:metrics.port``, counted in
``edge_agent_exporter_errors_total``, and a background thread retries with capped backoff (1 s to
30 s) while the agent monitors and alerts without its exporter.

The text is written by :func:`edge_agent.metrics.series.exposition_parts` (the per-sensor families keep
their lines rendered: a scrape at 3,000 sensors takes a fraction of a second, not seconds), in the
text format 0.0.4, uncompressed, on every path.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from edge_agent.metrics import AgentMetrics
from edge_agent.metrics.series import exposition_parts
from edge_agent.service.backoff import StartAborted, retry_with_backoff

logger = logging.getLogger(__name__)


def serve_metrics(metrics: AgentMetrics, listen: str, port: int) -> None:
    """Serve ``/metrics`` on ``listen:port``; ``OSError`` if the port is taken or the address not up."""
    family = socket.getaddrinfo(listen or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    registry = metrics.registry

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = exposition_parts(registry)  # written one after the other, never joined into another copy
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(sum(len(part) for part in parts)))
            self.end_headers()
            self.wfile.writelines(parts)

        def log_message(self, format: str, *args: object) -> None:
            return  # a scrape is not worth a log line

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    server = Server((listen, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    logger.info("serving Prometheus metrics at %s", metrics_url(listen, port))


def start_exporter(
    metrics: AgentMetrics, listen: str, port: int, *, stop: threading.Event, say: Callable[[str], object]
) -> threading.Thread | None:
    """Serve ``/metrics`` now, or keep trying in a thread (returned) while the agent runs without it."""
    try:
        serve_metrics(metrics, listen, port)
        return None
    except OSError as error:
        metrics.exporter_errors.inc()
        where = f"{listen}:{port} (metrics.listen, metrics.port)"
        logger.error("cannot serve /metrics on %s: %s; the agent runs without it, retrying", where, error)
        say(f"cannot serve /metrics on {listen}:{port}: {error} (retrying; monitoring goes on)")

    def retry() -> None:
        try:
            stop.wait(1.0)
            retry_with_backoff(
                f"serve /metrics on {listen}:{port}",
                lambda: serve_metrics(metrics, listen, port),
                count=metrics.exporter_errors.inc,
                stop=stop,
                say=lambda _line: None,  # the service status line belongs to the running agent now
            )
        except StartAborted:  # the agent stopped first
            return

    thread = threading.Thread(target=retry, name="exporter-retry", daemon=True)
    thread.start()
    return thread


def metrics_url(listen: str, port: int) -> str:
    """``http://listen:port/metrics`` (IPv6 in brackets), saying so when ``listen`` is every interface."""
    host = f"[{listen}]" if ":" in listen else listen
    every = " (every interface)" if listen in ("", "0.0.0.0", "::") else ""
    return f"http://{host or '0.0.0.0'}:{port}/metrics{every}"
