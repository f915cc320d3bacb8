"""What the runtime keeps out of its memory (issue 13's RSS goal).

- ``scipy.signal`` (~49 MB of RSS), which the vibration indicators paid for one Hann window: never imported.
- ``scipy.fft`` (~14 MB, with ``scipy.special``): imported by the first indicator plan, so only by an agent
  whose sensors have indicators (it is 7x faster than numpy.fft on float32 batches, so it stays there).
"""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import numpy as np
import edge_agent.cli, edge_agent.service.app
from edge_agent.pipeline.indicators import compute_indicators, make_plan
from edge_agent.pipeline.indicator_settings import IndicatorSettings
plan = make_plan(IndicatorSettings(spectral_window="hann"), 12000.0, 2048)
compute_indicators(plan, np.random.default_rng(0).normal(size=(4, 1, 2048)).astype(np.float32))
print(sorted(name for name in sys.modules if name.startswith("scipy.signal")))
"""

# every module of the runtime (all of edge_agent but the offline nn/ and training/), then the modules that
# one indicator plan adds
EVERY_RUNTIME_MODULE = """
import importlib, pkgutil, sys
import edge_agent
for info in pkgutil.walk_packages(edge_agent.__path__, "edge_agent."):
    if not info.name.startswith(("edge_agent.nn", "edge_agent.training")) and not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(sorted({name.split(".")[0] for name in sys.modules if name.startswith("scipy")}))
from edge_agent.pipeline.indicators import make_plan
from edge_agent.pipeline.indicator_settings import IndicatorSettings
make_plan(IndicatorSettings(), 12000.0, 2048)
print("scipy.fft" in sys.modules)
"""


def _run(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_the_runtime_and_its_indicators_run_without_scipy_signal() -> None:
    assert _run(PROBE) == ["[]"]


def test_no_runtime_module_imports_scipy_until_a_sensor_has_indicators() -> None:
    assert _run(EVERY_RUNTIME_MODULE) == ["[]", "True"]


def test_a_scrape_leaves_no_cached_line_for_a_series_at_zero() -> None:
    """~80 of a sensor's series stay at zero; a cached exposition line for each cost ~14 kB per sensor
    (43 MB at 3,000 sensors, ~3 MB at 200) once the first scrape had rendered them."""
    import tracemalloc

    from prometheus_client import CollectorRegistry

    from edge_agent.metrics.series import CounterFamily, GaugeFamily, exposition

    warm = CollectorRegistry()  # lazy imports and caches of a first exposition, on another registry
    CounterFamily("test_warm", "warm-up", ("sensor",), registry=warm).labels("a")
    exposition(warm)
    registry = CollectorRegistry()
    counters = CounterFamily("test_errors", "errors by reason", ("sensor", "reason"), registry=registry)
    gauges = GaugeFamily("test_level", "a level", ("sensor",), registry=registry)
    for i in range(2000):
        counters.labels(f"sensor-{i:04d}", "bad_field")
        gauges.labels(f"sensor-{i:04d}").set(-0.0 if i == 0 else 0)
    counters.labels("sensor-0001", "bad_field").inc(3)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        text = exposition(registry).decode()  # the first scrape: every line rendered
        after, _ = tracemalloc.get_traced_memory()
        del text
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after > before  # the exposition itself was traced
    assert kept - before < 20_000, f"{kept - before} bytes kept for 4,000 series after a scrape"
    lines = exposition(registry).decode().splitlines()
    assert 'test_errors_total{reason="bad_field",sensor="sensor-0001"} 3.0' in lines
    assert 'test_errors_total{reason="bad_field",sensor="sensor-0002"} 0.0' in lines
    assert 'test_level{sensor="sensor-0000"} -0.0' in lines
    assert 'test_level{sensor="sensor-0002"} 0.0' in lines
