"""The timing loop, summary, goals and doc block of ``benchmarks/bench_runtimes.py`` (no peer runtime needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_runtimes  # noqa: E402


def test_every_runtime_runs_as_often_in_changing_orders() -> None:
    calls: list[str] = []

    def runner(name: str):
        def run(windows: np.ndarray) -> np.ndarray:
            calls.append(name)
            return windows

        return run

    names = ("a", "b", "c")
    samples = bench_runtimes.time_round_robin({n: runner(n) for n in names}, np.zeros((1, 1, 4)), budget_s=0.0)
    assert {len(values) for values in samples.values()} == {10}  # the minimum of repeats
    timed = calls[4 * len(names) :]  # after three warm-up rounds and the one that sizes the budget
    rounds = [tuple(timed[i : i + 3]) for i in range(0, len(timed), 3)]
    assert all(sorted(r) == sorted(names) for r in rounds)
    assert len(set(rounds)) > 1  # not one fixed order


def test_summary_ratios_are_per_repeat_against_the_shipped_int8() -> None:
    samples = {"ts-int8": [2e-3, 4e-3, 2e-3], "ov-int8": [1e-3, 4e-3, 1e-3]}
    summary = bench_runtimes.summarise(samples, batch=2)
    assert summary["ts-int8"][0] == 1.0  # ms per window: median 2 ms / 2 windows
    assert summary["ov-int8"][3] == 2.0  # median of the ratios 2, 1, 2
    assert summary["ts-int8"][3] == 1.0


def test_goals_are_judged_on_the_ratios() -> None:
    row = (0.2, 0.1, 0.3, 1.0)
    timings = {
        1: ({"ts-int8": row, "ts-fp32": (0.3, 0, 0, 0.7), "ort-fp32": (0.1, 0, 0, 2.0)}, 10),
        32: ({"ts-int8": row, "ts-fp32": (0.3, 0, 0, 0.7), "ort-fp32": (0.3, 0, 0, 0.8)}, 10),
    }
    rows = bench_runtimes.goals(timings, ("ts-int8", "ts-fp32", "ort-fp32"), [1, 32])
    batch_32 = "| int8 batch 32 <= fastest peer | ts-int8 0.200, ort-fp32"
    assert any(r.startswith(batch_32) and "| met |" in r for r in rows)
    assert any(r.startswith("| int8 batch 1 <= ORT fp32") and "| missed |" in r for r in rows)


def test_the_doc_block_is_appended_once_then_replaced(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\ntext\n")
    bench_runtimes.write_section(doc, "first\n")
    doc.write_text(doc.read_text() + "\nhand-written notes\n")
    bench_runtimes.write_section(doc, "second\n")
    text = doc.read_text()
    assert text.count(bench_runtimes.HEADING) == 1
    assert "first" not in text and "second" in text
    assert text.index("second") < text.index("hand-written notes")
    assert text.startswith("# Benchmarks\n\n## Other\n\ntext\n")
