"""The timing loop, summary, goals and doc block of ``benchmarks/bench_runtimes.py`` (no peer runtime needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_runtimes  # noqa: E402
import isa_restrict  # noqa: E402


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


def test_an_isa_run_writes_its_own_block_beside_the_native_one(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    bench_runtimes.write_section(doc, "native\n")
    bench_runtimes.write_section(doc, "avx2 first\n", "avx2")
    bench_runtimes.write_section(doc, "avx2 second\n", "avx2")
    text = doc.read_text()
    assert "native" in text and "avx2 second" in text and "avx2 first" not in text
    assert text.count(bench_runtimes.ISA_SECTION_BEGIN.format(isa="avx2")) == 1


def test_the_int8_against_float32_goal_is_judged_only_with_the_isa_capped() -> None:
    timings = {32: ({"ts-int8": (0.2, 0, 0, 1.0), "ts-fp32": (0.3, 0, 0, 0.7)}, 10)}
    native = bench_runtimes.goals(timings, ("ts-int8", "ts-fp32"), [32])
    capped = bench_runtimes.goals(timings, ("ts-int8", "ts-fp32"), [32], "avx2")
    assert native[-1].endswith("| - |")
    assert capped[-1].endswith("| batch 32 met (AVX2 emulated) |")


def test_the_avx2_cap_reaches_pytorch_and_onednn() -> None:
    code = "import json, isa_restrict; print(json.dumps(isa_restrict.probe()))"
    env = {**os.environ, **isa_restrict.ISA_ENV["avx2"]}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO / "benchmarks", capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["aten_capability"] == "AVX2"
    assert "AVX2" in found["onednn_isa"] and "512" not in found["onednn_isa"]
    assert len(found["onednn_convolutions"]) == 2
    assert all("avx2" in kernel for kernel in found["onednn_convolutions"])


def test_a_cap_that_did_not_take_effect_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    native = {"aten_capability": "AVX512", "onednn_isa": "Intel AVX-512", "onednn_convolutions": [], "kernel_us": {}}
    monkeypatch.setattr(isa_restrict, "probe", lambda: native)
    monkeypatch.setattr(isa_restrict, "unrestricted_probe", lambda: native)
    with pytest.raises(SystemExit, match="did not take effect: PyTorch reports CPU capability AVX512"):
        isa_restrict.verify("avx2")


def test_the_fused_file_is_judged_on_its_own_paired_ratios() -> None:
    summary = {"ts-int8": (0.2, 0, 0, 1.0), "ts-int8-fused": (0.1, 0, 0, 2.0), "ov-int8": (0.15, 0, 0, 1.3)}
    samples = {"ts-int8": [2.0, 2.0, 2.0], "ts-int8-fused": [1.0, 1.0, 2.0], "ov-int8": [1.5, 1.5, 1.5]}
    rows = bench_runtimes.goals({32: (summary, 3, samples)}, ("ts-int8", "ts-int8-fused", "ov-int8"), [32])
    assert any(r.startswith("| int8 batch 32 <= fastest peer") and "| missed |" in r for r in rows)
    fused = [r for r in rows if r.startswith("| fused int8 batch 32 <= fastest peer")]
    assert len(fused) == 1 and "fused int8 / ov-int8 0.67" in fused[0] and "| met |" in fused[0]
