"""Shared by the model tests: one thread (timing-independent, like the agent's inference worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread_and_engine() -> Iterator[None]:
    """One torch thread, and the process-wide quantized engine restored afterwards (an export sets it)."""
    threads, engine = torch.get_num_threads(), torch.backends.quantized.engine
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine
