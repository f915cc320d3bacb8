"""False suspects of the ingress change detector (edge_agent.sources.change) on healthy streams only.

    EDGE_AGENT_DATA=../shared/data .venv/bin/python benchmarks/change_false_suspects.py

Healthy data, each stream fed message by message (1,024 samples) through one detector as the agent
would, with a message clock of the stream's own rate:

- CWRU normal (record 097, drive end, 12 kHz, 47 messages = 4 s): cycled 6 times in random orders
  per stream, 200 streams (as the benchmark's healthy sensors, which cycle its last 20 %);
- BLDC motor sound, every healthy clip (16 kHz, channel 0, ~10 s each), one stream per clip, played
  forward then backward (so the warm-up is not the whole clip).

Per threshold: marks / messages and the share of sensor-seconds spent as a suspect (each mark holds
``HOLD_S``), plus the healthy score quantiles (the largest |x - mean| / spread of a message after
the warm-up). The threshold is to be chosen from these rows alone (never from a fault's result).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from scipy.io import wavfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edge_agent.common.paths import data_root
from edge_agent.sources import change

CHUNK = 1024


def cwru_streams(seed: int = 0, streams: int = 200) -> list[tuple[np.ndarray, float]]:
    with np.load(data_root() / "cwru" / "cwru_12k_de_dev.npz", allow_pickle=False) as pack:
        signal = pack["097"]
    n = signal.size // CHUNK
    chunks = signal[: n * CHUNK].reshape(n, CHUNK)
    rng = np.random.default_rng(seed)
    return [(chunks[np.concatenate([rng.permutation(n) for _ in range(6)])], 12_000.0) for _ in range(streams)]


def sound_streams() -> list[tuple[np.ndarray, float]]:
    root = data_root() / "machine_sound" / "bldc_motor"
    out = []
    with (root / "labels.csv").open() as f:
        for row in csv.DictReader(f):
            if row["condition"] != "healthy":
                continue
            rate, audio = wavfile.read(root / row["path"])
            mono = (audio[:, 0] if audio.ndim == 2 else audio).astype(np.float32)
            n = mono.size // CHUNK
            chunks = mono[: n * CHUNK].reshape(n, CHUNK)
            out.append((np.concatenate([chunks, chunks[::-1]]), float(rate)))
    return out


def run(streams: list[tuple[np.ndarray, float]], threshold: float) -> dict[str, float]:
    detector = change.ChangeDetector(threshold)
    marks = messages = 0
    suspect_s = total_s = 0.0
    for index, (chunks, rate) in enumerate(streams):
        period_s = CHUNK / rate
        last = -np.inf
        for k, chunk in enumerate(chunks):
            now = k * period_s
            if detector.observe(f"s{index}", chunk, now) is not None:
                marks += 1
                suspect_s += min(change.HOLD_S, now - last)
                last = now
            messages += 1
        total_s += len(chunks) * period_s
    return {"marks": marks, "messages": messages, "suspect_share": suspect_s / total_s}


def scores(streams: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Every post-warm-up healthy score (threshold infinite: nothing frozen)."""
    out = []
    detector = change.ChangeDetector(1e300)
    for index, (chunks, _rate) in enumerate(streams):
        for chunk in chunks:
            detector.last_score = None
            detector.observe(f"s{index}", chunk, 0.0)
            if detector.last_score is not None:
                out.append(detector.last_score)
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--thresholds", default="3,4,5,6,8,10")
    args = p.parse_args(argv)
    sets = {"CWRU normal 097 (200 streams)": cwru_streams(), "BLDC healthy sound (16 clips)": sound_streams()}
    for name, streams in sets.items():
        s = scores(streams)
        q = np.quantile(s, [0.5, 0.99, 0.999]) if s.size else [np.nan] * 3
        print(
            f"\n{name}: {s.size} scored messages; score median {q[0]:.2f}, p99 {q[1]:.2f}, p99.9 {q[2]:.2f}, "
            f"max {s.max() if s.size else np.nan:.2f}"
        )
        print("| threshold | marks / messages | suspect share of sensor-seconds |")
        print("|---:|---:|---:|")
        for threshold in (float(t) for t in args.thresholds.split(",")):
            r = run(streams, threshold)
            print(f"| {threshold:g} | {r['marks']} / {r['messages']} | {100 * r['suspect_share']:.3f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
