"""The vibration indicators on the CWRU pack, one row per load-0 record (medians over its windows).

    .venv/bin/python benchmarks/indicators_on_cwru.py [--data ../shared/data/cwru/cwru_12k_de_dev.npz]

Windows of 2048 samples at 12 kHz without overlap (the model's window), sensor unit g, ISO zone for
group 2 on a rigid foundation (the CWRU rig's 2 hp motor is below ISO 10816-3's 15 kW: the zone is
shown for illustration only). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.pipeline.indicators import IndicatorSettings, compute_indicators, make_plan

G = 9.80665
BANDS_HZ = ((10.0, 1000.0), (1000.0, 3000.0), (3000.0, 6000.0))
DEFAULT_DATA = Path(os.environ.get("EDGE_AGENT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "cwru" / "cwru_12k_de_dev.npz")
    args = parser.parse_args(argv)
    pack = np.load(args.data, allow_pickle=False)
    settings = IndicatorSettings(unit="g", bands_hz=BANDS_HZ, machine_group=2, foundation="rigid")
    plan = make_plan(settings, float(pack["fs_hz"]), 2048)
    print(
        "| record | class | windows | RMS g | crest factor | kurtosis | RMS velocity mm/s | zone "
        "| band RMS g: 10-1000 / 1000-3000 / 3000-6000 Hz |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for key, label, load_hp in zip(pack["keys"], pack["labels"], pack["load_hp"], strict=True):
        if load_hp != 0:
            continue
        signal = pack[key]
        count = len(signal) // plan.window_samples
        values = compute_indicators(plan, signal[: count * plan.window_samples].reshape(count, 1, -1))
        bands = np.median(values.band_levels[:, 0], axis=0) / G
        print(
            f"| {key} | {pack['class_names'][label]} | {count} | {np.median(values.rms_acceleration_m_s2) / G:.3f} "
            f"| {np.median(values.crest_factor):.2f} | {np.median(values.kurtosis):.2f} "
            f"| {np.median(values.rms_velocity_mm_s):.2f} | {'ABCD'[int(np.median(values.zone))]} "
            f"| {bands[0]:.3f} / {bands[1]:.3f} / {bands[2]:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
