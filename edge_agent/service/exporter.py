"""The Prometheus exporter: ``/metrics`` of the agent's registry, served from a daemon thread.

An address that cannot be bound at start (a port taken, an address not up yet) does not keep the
agent from starting: the failure is logged naming ``metrics.listen:metrics.port``, counted in
``edge_agent_exporter_errors_total``, and a background thread retries with capped backoff (1 s to
30 s) while the agent monitors and alerts without its exporter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import start_http_server

from edge_agent.metrics import AgentMetrics
from edge_agent.service.backoff import StartAborted, retry_with_backoff

logger = logging.getLogger(__name__)


def serve_metrics(metrics: AgentMetrics, listen: str, port: int) -> None:
    """Serve ``/metrics`` on ``listen:port``; ``OSError`` if the port is taken or the address not up."""
    start_http_server(port, addr=listen, registry=metrics.registry)
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
