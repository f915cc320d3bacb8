"""batch_inputs: the windows in order, then zero windows up to the padded batch size, whatever the memory held."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.pipeline.inference import batch_inputs, padded_rows
from edge_agent.pipeline.window_queue import QueuedWindow
from edge_agent.types import Window

CHANNELS, SAMPLES = 1, 2048


def queued(n: int) -> list[QueuedWindow]:
    rng = np.random.default_rng(n)
    return [
        QueuedWindow("m", Window(f"s{i}", 0.0, 1.0, rng.random((CHANNELS, SAMPLES), dtype=np.float32) + 1.0))
        for i in range(n)
    ]


@pytest.mark.parametrize("windows", [1, 3, 5, 17, 32])
def test_padding_rows_are_zero_even_where_the_allocator_reuses_dirty_memory(windows: int) -> None:
    rows = padded_rows(windows, 32)
    batch = queued(windows)
    for _ in range(20):  # freed blocks of the same size, full of NaN: what np.empty may hand out next
        dirty = np.full((rows, CHANNELS, SAMPLES), np.nan, dtype=np.float32)
        del dirty
        stacked = batch_inputs(batch, 32).numpy()
        assert stacked.shape == (rows, CHANNELS, SAMPLES)
        for row, item in enumerate(batch):
            np.testing.assert_array_equal(stacked[row], item.window.samples)
        assert not np.any(stacked[windows:]), "padding rows must be exact zeros"
