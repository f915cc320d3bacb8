"""The Prometheus exporter: ``/metrics`` of the agent's registry, served from a daemon thread."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from edge_agent.metrics import AgentMetrics

logger = logging.getLogger(__name__)


def serve_metrics(metrics: AgentMetrics, listen: str, port: int) -> None:
    """Serve ``/metrics`` on ``listen:port``; ``OSError`` if the port is taken or the address not up."""
    start_http_server(port, addr=listen, registry=metrics.registry)
    logger.info("serving Prometheus metrics at %s", metrics_url(listen, port))


def metrics_url(listen: str, port: int) -> str:
    """``http://listen:port/metrics`` (IPv6 in brackets), saying so when ``listen`` is every interface."""
    host = f"[{listen}]" if ":" in listen else listen
    every = " (every interface)" if listen in ("", "0.0.0.0", "::") else ""
    return f"http://{host or '0.0.0.0'}:{port}/metrics{every}"
