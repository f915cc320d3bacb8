"""How long one ``/metrics`` scrape takes with many sensors registered (issue 12: < 1 s at 3,000 sensors).

    .venv/bin/python benchmarks/bench_metrics_scrape.py                 # 3,000 sensors, 5 scrapes
    .venv/bin/python benchmarks/bench_metrics_scrape.py --sensors 300,1000,3000 --scrapes 3

In one process: the agent's :class:`~edge_agent.metrics.AgentMetrics`, one source, the shipped
CWRU model's labels, and N sensors admitted the way the router admits them
(:class:`~edge_agent.pipeline.router.SensorSeries`), each with the series a running sensor has
(class probabilities, predictions, a shed and a drop counter); before each scrape every sensor
gets a window (new values in its per-window series: the worst case for the exporter's line cache). Then
``/metrics`` is served by the agent's own exporter (:func:`~edge_agent.service.exporter.serve_metrics`,
on a free loopback port) and fetched over HTTP ``--scrapes`` times: the table gives the series
count, the exposition's size, the median and worst scrape, the CPU one rendering of the text takes
(``exposition_parts`` in this thread, after a window of every sensor: what the agent's process spends
per scrape, without HTTP) and the growth of this process's RSS (after creating the series, after the
scrapes). Prints the CPU; the machine may be shared (other jobs slow every scrape alike).
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuinfo import cpu_description  # noqa: E402

from edge_agent.metrics import AgentMetrics  # noqa: E402
from edge_agent.modelfile import read_meta  # noqa: E402
from edge_agent.pipeline.router import SensorSeries  # noqa: E402

MODEL = REPO / "models" / "drsn_cw_cwru.pt"
SOURCE = "plant"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def populated(sensors: int) -> AgentMetrics:
    """An agent registry with ``sensors`` sensors admitted and one window of each decided."""
    metrics, labels = AgentMetrics(), tuple(read_meta(MODEL).labels)
    metrics.init_pipeline(512, ("log", "mqtt"))
    series = SensorSeries(metrics)
    series.configure({"bearing": labels}, ("Normal",))
    series.add_source(SOURCE)
    for i in range(sensors):
        series.add(f"s{i}", ("bearing",))
        metrics.overload.messages_shed.labels(SOURCE, f"s{i}")
        metrics.overload.sensor_windows_dropped.labels(f"s{i}")
    one_window_each(metrics, sensors, labels)
    return metrics


def one_window_each(metrics: AgentMetrics, sensors: int, labels: tuple[str, ...]) -> None:
    """What the agent updates per message and window (new values: a cached line no longer holds)."""
    now = time.time()
    for i in range(sensors):
        sensor = f"s{i}"
        metrics.samples_received.labels(sensor).inc(1024)
        metrics.windows_emitted.labels(sensor).inc()
        metrics.signal_seconds.labels(sensor).inc(1024 / 12000)
        metrics.last_sample.labels(sensor).set(now + i * 1e-6)
        metrics.predictions.labels(sensor, "bearing", labels[0]).inc()
        for k, label in enumerate(labels):  # what edge_agent.pipeline.prediction_series sets per window
            metrics.probability.labels(sensor, "bearing", label).set((k + now % 1.0) / len(labels))


def fetch(port: int) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=60) as response:
        size = len(response.read())
    return time.perf_counter() - started, size


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(sensors: int, scrapes: int) -> dict[str, float]:
    from edge_agent.metrics.series import exposition_parts
    from edge_agent.service.exporter import serve_metrics

    read_meta(MODEL)  # its imports (torch) before the baseline
    before_mb = rss_mb()
    metrics = populated(sensors)
    series_mb = rss_mb() - before_mb
    port = free_port()
    serve_metrics(metrics, HOST, port)
    fetch(port)  # first scrape: warms caches and the HTTP thread
    labels = tuple(read_meta(MODEL).labels)
    times, size = [], 0
    for _ in range(scrapes):
        one_window_each(metrics, sensors, labels)  # every sensor got a window since the last scrape
        took, size = fetch(port)
        times.append(took)
    render_s = []
    for _ in range(scrapes):
        one_window_each(metrics, sensors, labels)
        started = time.thread_time()
        exposition_parts(metrics.registry)
        render_s.append(time.thread_time() - started)
    count = sum(len(family.samples) for family in metrics.registry.collect())
    return {
        "sensors": sensors,
        "series": count,
        "bytes": size,
        "median_s": statistics.median(times),
        "max_s": max(times),
        "render_cpu_s": statistics.median(render_s),
        "series_mb": series_mb,
        "after_scrapes_mb": rss_mb() - before_mb,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sensors", default="3000", help="comma-separated sensor counts (default 3000)")
    p.add_argument("--scrapes", type=int, default=5, help="timed scrapes per count (default 5)")
    args = p.parse_args(argv)
    print(f"CPU: {cpu_description()}")
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; the machine may be shared with other jobs")
    print("| sensors | series | exposition | scrape median | scrape max | render CPU | RSS: series / after scrapes |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for text in args.sensors.split(","):
        r = measure(int(text), args.scrapes)
        print(
            f"| {r['sensors']:.0f} | {r['series']:.0f} | {r['bytes'] / 1e6:.1f} MB "
            f"| {r['median_s']:.2f} s | {r['max_s']:.2f} s | {r['render_cpu_s'] * 1e3:.1f} ms "
            f"| +{r['series_mb']:.0f} / +{r['after_scrapes_mb']:.0f} MB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
