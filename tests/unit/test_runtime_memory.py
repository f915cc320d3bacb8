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
