"""Tables of ``docs/results/anomaly_unseen_speeds.md`` (:mod:`edge_agent.training.anomaly_speeds_text` lays
out the page): the goals before and after, the alerting rules, the reference, the cost and the causes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

RULE_NAMES = {
    "default": "3 of 5 at the cross-fitted threshold (before)",
    "learned": "the debounce learned with the threshold (after; `learn` stores it)",
    "episode": "3 of 5, the threshold raised to the cross-fitted streams' episode level",
}


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def _goals() -> list[tuple[str, Callable[[dict[str, Any], list[float]], tuple[bool, str]]]]:
    return [
        ("AUC >= 0.95 (mean over folds)", lambda p, f: (p["auc"] >= 0.95, f"{p['auc']:.3f}")),
        ("AUC >= 0.95 in every fold", lambda p, f: (min(f) >= 0.95, f"lowest {min(f):.3f}")),
        ("<= 2 % false windows", lambda p, f: (p["false_rate"] <= 0.02, pct(p["false_rate"]))),
        (">= 90 % of propeller windows flagged", lambda p, f: (p["detection_rate"] >= 0.9, pct(p["detection_rate"]))),
        (
            "no false alert on a healthy clip",
            lambda p, f: (p["healthy_clips_with_alert"].startswith("0/"), p["healthy_clips_with_alert"]),
        ),
        (
            "an alert on every fault clip",
            lambda p, f: (p["fault_clips_missed"].startswith("0/"), p["fault_clips_missed"] + " missed"),
        ),
    ]


def goal_lines(motors: dict[str, Any]) -> list[str]:
    """One table: every goal per motor, before (3 of 5) and after (the learned debounce), the product path."""
    head = " | ".join(f"{m} before | {m} after" for m in motors)
    out = [f"| goal | {head} |", "|---" * (1 + 2 * len(motors)) + "|"]
    for goal, test in _goals():
        cells = []
        for motor in motors:
            for key in ("nested_default", "nested"):
                part = motors[motor][key]
                folds = [r["auc"] for r in part["folds"] if "auc" in r]
                met, text = test(part["pooled"], folds)
                cells.append(f"{yes(met)}: {text}")
        out.append(f"| {goal} | {' | '.join(cells)} |")
    delays = []
    for motor in motors:
        delays += [f"{motors[motor][k]['pooled']['longest_alert_after_s']:.2f} s" for k in ("nested_default", "nested")]
    out.append(f"| longest time to the first alert on a fault clip (cost) | {' | '.join(delays)} |")
    return out


def rule_lines(summary: dict[str, Any]) -> list[str]:
    motors = list(summary["motors"])
    out = [
        "",
        "## Alerting rules compared (fast path, nested the same way)",
        "",
        "Each rule is set per fold from the cross-fitted healthy streams of the learned speeds (in the validation",
        "folds, from theirs), the candidate chosen per fold on validation folds under that rule; fast path (99 % or",
        "99.8 % quantile instead of the tail fit), so the rows differ a little from the product path above.",
        "",
        "| rule | " + " | ".join(f"{m} false / flagged / alerts / missed" for m in motors) + " |",
        "|---" * (1 + len(motors)) + "|",
    ]
    for rule, per_motor in summary["rules"].items():
        cells = [
            f"{pct(p['false_rate'])} / {pct(p['detection_rate'])} / {p['healthy_clips_with_alert']} / "
            f"{p['fault_clips_missed']}"
            for p in (per_motor[m] for m in motors)
        ]
        out.append(f"| {RULE_NAMES[rule]} | {' | '.join(cells)} |")
    return out


def reference_lines(summary: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## Every candidate on every test fold (reference, not a selection)",
        "",
        "Fast path (features cached, the detector's arithmetic in numpy, threshold: the 1 - target quantile of the",
        "cross-fitted healthy scores instead of the tail fit), with the learned debounce (in brackets: 3 of 5).",
        "Picking the best row here would be choosing on the test folds.",
        "",
        "| candidate | M1 AUC | M1 false | M1 flagged | M1 alerts / missed | M2 AUC | M2 false | M2 flagged "
        "| M2 alerts / missed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in summary["candidates"]:
        cells = []
        for part in summary["motors"].values():
            r, d = part["nested"]["reference"][name], part["nested_default"]["reference"][name]
            cells += [
                f"{r['auc']:.3f}",
                pct(r["false_rate"]),
                pct(r["detection_rate"]),
                f"{r['healthy_clips_with_alert']} / {r['fault_clips_missed']} "
                f"({d['healthy_clips_with_alert']} / {d['fault_clips_missed']})",
            ]
        out.append(f"| {name} | {' | '.join(cells)} |")
    return out


def cost_lines(summary: dict[str, Any]) -> list[str]:
    ratio = summary["cost_ratio"]
    out = [
        "",
        "## Cost",
        "",
        "Time per window of the scripted detector (front-end included) at batch 32 on one thread, all",
        "candidates in one run taking turns (30 rounds) on the shared machine (other engineers' jobs running:",
        "the fastest round is the least disturbed; the ratio, of the fastest rounds, is the comparison), against",
        f"{summary['cost_reference']}. Goal: 0.1 ms per window. The debounce costs no computation.",
        "",
        "| candidate | ms per window, fastest round | median round | ratio |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {n} | {c['min']:.3f} | {c['median']:.3f} | {ratio[n]:.2f} |"
        for n, c in summary["cost_ms_per_window"].items()
    ]
    return out


def cause_lines(summary: dict[str, Any]) -> list[str]:
    m1 = summary["causes"]["M1"]["band_liveliness"]
    out = [
        "",
        "## Causes of false windows, measured (edge_agent/training/anomaly_speeds_causes.py)",
        "",
        "How modulated each band of each healthy M1 clip is: `blockspread` (16384 samples, 6 bands), the",
        "512-sample-frame feature, median over the clip's windows (log standard deviation of the log envelope;",
        "**bold**: livelier than every other healthy M1 clip):",
        "",
        "| M1 healthy clip | " + " | ".join(m1["bands"]) + " |",
        "|---" * (len(m1["bands"]) + 1) + "|",
    ]
    for rpm, values in m1["clips"].items():
        lively = m1["livelier_than_all"].get(rpm, [])
        cells = [f"**{v:.2f}**" if b in lively else f"{v:.2f}" for b, v in enumerate(values)]
        out.append(f"| {rpm} RPM | " + " | ".join(cells) + " |")
    out += [
        "",
        "Stretches of livelier running inside healthy clips: the 128 ms hops whose envelope spread (128-sample",
        "frames) is more than 1.5 times the clip's median in at least 3 of 4 bands (whole window, 3 bands):",
        "",
    ]
    for motor, part in summary["causes"].items():
        found = [
            f"{rpm} RPM at {', '.join(f'{t:g}' for t in times)} s"
            for rpm, times in part["lively_stretches"].items()
            if times
        ]
        out.append(f"- {motor}: " + ("; ".join(found) if found else "none") + ".")
    return out
