"""The issue's goals table of ``docs/results/anomaly.md``: each goal, met or not, and the numbers behind it.

Besides this page's runs it reads two committed results beside it: the motor detector at unseen speeds
(``anomaly_unseen_speeds.json``, ``python -m edge_agent.training.anomaly_speeds``) and the agent benchmark's
"other sensors while one learns" table (``docs/benchmarks.md``, ``benchmarks/bench_live_learning.py``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.training.anomaly_eval import CWRU_SNRS_DB

logger = logging.getLogger(__name__)

SNR_LABELS = ["clean" if s is None else f"{s:g} dB" for s in CWRU_SNRS_DB]
CLASSES = ("IR007", "B007", "OR007@6", "IR014", "B014", "OR014@6", "IR021", "B021", "OR021@6")

LEARNING_SECTION = "## Learning on the gateway: other sensors while one learns"
UNSEEN_SPEEDS = "anomaly_unseen_speeds.json"
Goal = tuple[str, bool, str]


def min_auc(row: dict[str, Any], prefix: str = "") -> float:
    """The worst fault class's AUC of a CWRU row."""
    return min(row[f"{prefix}auc/{c}"] for c in CLASSES)


def cwru_rate(rows: list[dict[str, Any]], variant: str, snr: str) -> list[float]:
    """False-window rates at the stored threshold of every run (seed) of ``variant`` at ``snr``."""
    return [r["false_rate"] for r in rows if r["variant"] == variant and r["snr"] == snr]


MOTOR_GOAL_VARIANTS = (
    "undercomplete/logmel",
    "undercomplete/bandkurtosis",
    "undercomplete/bandkurtosis+cross-fit",
    "excess/envspread+cross-fit",  # an old run's row; the unseen-speed page's rows name their own detector
)


def _motor_goals(summary: dict[str, Any], variant: str) -> list[Goal]:
    motor = [e for e in summary["motor"] if e["model"] == variant]
    if not motor:
        return []
    alerts = ("healthy_clips_with_alert", "fault_clips_missed")
    return [
        (
            f"Motor AUC >= 0.95 per motor, speeds held out ({variant})",
            all(e["auc"][0] >= 0.95 for e in motor),
            ", ".join(f"{e['motor']} {e['auc'][0]:.3f}" for e in motor),
        ),
        (
            f"Motor <= 2 % false windows on held-out healthy clips ({variant})",
            all(e["false_rate"][0] <= 0.02 for e in motor),
            ", ".join(f"{e['motor']} {100 * e['false_rate'][0]:.1f} %" for e in motor),
        ),
        (
            f"Motor >= 90 % of propeller windows flagged ({variant})",
            all(e["detection_rate"][0] >= 0.9 for e in motor),
            ", ".join(f"{e['motor']} {100 * e['detection_rate'][0]:.0f} %" for e in motor),
        ),
        (
            f"Motor, debounced: no false alert on a held-out healthy clip, an alert on every fault clip ({variant})",
            all(part.startswith("0/") for e in motor for key in alerts for part in e[key].split()),
            "; ".join(
                f"{e['motor']}: healthy clips with an alert {e['healthy_clips_with_alert']}, "
                f"fault clips missed {e['fault_clips_missed']}"
                for e in motor
            ),
        ),
    ]


def unseen_speed_goals(path: Path) -> list[Goal]:
    """The motor goals of the unseen-speed detector (its own page), pooled per motor, from its json."""
    if not path.is_file():
        return []
    motors = json.loads(path.read_text())["motors"]
    pooled = {m: motors[m]["nested"]["pooled"] for m in sorted(motors)}
    lowest = {
        m: min(f["auc"] for f in motors[m]["nested"]["folds"] if f.get("auc") is not None) for m in sorted(motors)
    }
    choices = [c["chosen"].split(" (")[0] for m in motors.values() for c in m["nested"].get("choices", {}).values()]
    chosen = sorted(set(choices)) or ["the unseen-speed detector"]
    page = "[its page](anomaly_unseen_speeds.md)"
    where = f"{' or '.join(chosen)}, cross-fitted threshold, chosen per fold on validation folds; {page}"
    alerts = ("healthy_clips_with_alert", "fault_clips_missed")
    return [
        (
            f"Motor AUC >= 0.95 per motor, speeds held out ({where})",
            all(p["auc"] >= 0.95 for p in pooled.values()),
            ", ".join(f"{m} {p['auc']:.3f} (lowest fold {lowest[m]:.3f})" for m, p in pooled.items()),
        ),
        (
            f"Motor <= 2 % false windows on held-out healthy clips ({where})",
            all(p["false_rate"] <= 0.02 for p in pooled.values()),
            ", ".join(f"{m} {100 * p['false_rate']:.1f} %" for m, p in pooled.items()),
        ),
        (
            f"Motor >= 90 % of propeller windows flagged ({where})",
            all(p["detection_rate"] >= 0.9 for p in pooled.values()),
            ", ".join(f"{m} {100 * p['detection_rate']:.1f} %" for m, p in pooled.items()),
        ),
        (
            f"Motor, debounced: no false alert on a held-out healthy clip, an alert on every fault clip ({where})",
            all(p[key].startswith("0/") for p in pooled.values() for key in alerts),
            "; ".join(
                f"{m}: healthy clips with an alert {p['healthy_clips_with_alert']}, "
                f"fault clips missed {p['fault_clips_missed']}"
                for m, p in pooled.items()
            ),
        ),
    ]


def learning_benchmark_goal(path: Path) -> Goal:
    """The agent benchmark's other-sensors-while-one-learns table: per-sensor windows/s and drops per phase."""
    goal = "Other sensors' throughput unchanged while one learns (agent benchmark)"
    text = path.read_text() if path.is_file() else ""
    if LEARNING_SECTION not in text:
        return goal, False, "not measured"
    section = text.split(LEARNING_SECTION, 1)[1].split("\n## ", 1)[0]
    phases = re.findall(r"^\| ([^|]+?) \| [\d.]+ \| [\d.]+ \(([\d.]+)\) \| (\d+) \|", section, re.MULTILINE)
    if not phases:
        return goal, False, "not measured"
    rates = [float(rate) for _, rate, _ in phases]
    dropped = sum(int(d) for _, _, d in phases)
    unchanged = (max(rates) - min(rates)) <= 0.01 * max(rates) and dropped == 0
    listing = ", ".join(f"{name.replace('`', '')} {rate}" for name, rate, _ in phases)
    return (
        goal,
        unchanged,
        f"windows/s per other sensor: {listing}; {dropped} windows dropped "
        "([docs/benchmarks.md](../benchmarks.md#learning-on-the-gateway-other-sensors-while-one-learns))",
    )


def goals(rows: list[dict[str, Any]], networks: list[str], summary: dict[str, Any], out: Path) -> str:
    """The issue's goals, each with the numbers of the autoencoder chosen on validation and met / not met."""

    def worst(variant: str, snr: str) -> float:
        return float(np.mean([min_auc(r) for r in rows if r["variant"] == variant and r["snr"] == snr]))

    def spread(variant: str, snr: str) -> float:
        return float(np.std([min_auc(r) for r in rows if r["variant"] == variant and r["snr"] == snr]))

    best = max(networks, key=lambda v: summary["cwru_validation"][v])  # chosen on validation, not on test
    rates = {s: cwru_rate(rows, best, s) for s in SNR_LABELS}
    worst_snr = max(SNR_LABELS, key=lambda s: np.mean(rates[s]))
    cost = summary["cost"]
    lines = [
        (
            "CWRU AUC >= 0.99 for every class, clean and 0 dB",
            min(worst(best, "clean"), worst(best, "0 dB")) >= 0.99,
            f"{best}: worst class {worst(best, 'clean'):.3f} clean, {worst(best, '0 dB'):.3f} at 0 dB",
        ),
        (
            "CWRU AUC >= 0.97 at -10 dB",
            worst(best, "-10 dB") >= 0.97,
            f"{best}: {worst(best, '-10 dB'):.3f} ± {spread(best, '-10 dB'):.3f} (mean ± std over seeds)",
        ),
        (
            "CWRU <= 2 % false windows on later healthy data at every noise level",
            np.mean(rates[worst_snr]) <= 0.02,
            f"{best}: worst SNR ({worst_snr}) {100 * np.mean(rates[worst_snr]):.1f} ± "
            f"{100 * np.std(rates[worst_snr]):.1f} % (mean ± std over seeds; "
            f"{rows[0]['healthy_test_windows']} later healthy windows per run); by SNR "
            + ", ".join(f"{s} {100 * np.mean(v):.1f} %" for s, v in rates.items()),
        ),
        *[line for variant in MOTOR_GOAL_VARIANTS for line in _motor_goals(summary, variant)],
        *unseen_speed_goals(out / UNSEEN_SPEEDS),
        (
            "Learning 10 min of 12 kHz on one core in <= 5 min",
            cost["learn_seconds_10min_12kHz"] <= 300,
            f"{cost['learn_seconds_10min_12kHz']:.0f} s",
        ),
        (
            "<= 0.1 ms per window at batch 32, one thread",
            cost["ms_per_window_batch32"]["float32"] <= 0.1,
            f"{cost['ms_per_window_batch32']['float32']:.3f} ms",
        ),
        learning_benchmark_goal(out.parent / "benchmarks.md"),
    ]
    table = ["| goal | met | measured |", "|---|---|---|"]
    table += [f"| {goal} | {'yes' if met else '**no**'} | {text} |" for goal, met, text in lines]
    return "\n".join(table)
