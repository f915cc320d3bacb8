"""The runtime does not import ``scipy.signal``: it cost ~49 MB of RSS, which the vibration indicators paid for
one Hann window (issue 13's RSS goal; importing the runtime now costs 21 MB above ``import torch``, from 69).
``scipy.fft`` (~14 MB) stays: it is 7x faster than numpy.fft on float32 batches here."""

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


def test_the_runtime_and_its_indicators_run_without_scipy_signal() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
