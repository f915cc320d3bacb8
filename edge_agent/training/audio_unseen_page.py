"""The page of :mod:`edge_agent.training.audio_unseen` (``docs/results/audio_unseen_speeds.md``) from its summary."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_agent.training.anomaly_eval import DEBOUNCE_K, DEBOUNCE_N
from edge_agent.training.audio_unseen_text import MIN_CONFIDENCE, NEAR_RPM, REPORTED_RPM

logger = logging.getLogger(__name__)


def _pct(value: list[float] | None) -> str:
    return "n/a" if value is None else f"{100 * value[0]:.1f} ± {100 * value[1]:.1f} %"


def _names(per_seed: Sequence[Sequence[str]]) -> str:
    text = " / ".join(", ".join(p.removesuffix(".wav") for p in seed) or "none" for seed in per_seed)
    return text or "none"


def _seeds(seeds: Sequence[int]) -> str:
    return ", ".join(map(str, seeds)) or "none"


def _rate_table(entries: Sequence[dict[str, Any]], first: str, key: str) -> list[str]:
    lines = [
        f"| {first} | seeds | fault windows flagged | healthy false windows | window accuracy | fault clips alerted | "
        "healthy clips alerted | fault clips missed (per seed) | healthy clips with a false alert (per seed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| {e[key]} | {_seeds(e['seeds'])} | {_pct(e['fault_window_recall'])} | "
            f"{_pct(e['healthy_window_false'])} | {_pct(e['window_accuracy'])} | {e['fault_clips_alerted']} | "
            f"{e['healthy_clips_alerted']} | {_names(e['fault_clips_missed'])} | "
            f"{_names(e['healthy_clips_false_alert'])} |"
        )
    return lines


def _clip_table(clips: Sequence[dict[str, Any]], variants: Sequence[str], fault: bool) -> list[str]:
    lines = [
        "| clip | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for entry in clips:
        if (entry["condition"] != "healthy") != fault:
            continue
        cells = []
        for variant in variants:
            runs = entry["variants"].get(variant, [])
            flagged = ", ".join(f"{100 * r['flagged']:.0f}" for r in runs)
            alerts = sum(r["alert"] for r in runs)
            cells.append(f"{flagged} % · {alerts}/{len(runs)} alert" if runs else "n/a")
        lines.append(f"| {entry['clip'].removesuffix('.wav')} | " + " | ".join(cells) + " |")
    return lines


def _decision_lines(summary: dict[str, Any]) -> list[str]:
    pooled = summary["pooled"]
    lines = []
    for d in summary["decision"]:
        verdict = "**better**" if d["better"] else "**not better**"
        if d["seeds"] < 2:
            verdict = f"{'better' if d['better'] else 'not better'} on this one seed; **no verdict** without a spread"
        lines.append(
            f"- *{d['variant']}* against the *{pooled[0]['variant']}*: fault windows flagged "
            f"{'at least as high' if d['recall_at_least'] else 'lower'}, fault clips missed "
            f"{'no more' if d['missed_at_most'] else 'more'}, healthy false windows "
            f"{'lower' if d['false_lower'] else 'not lower'} (means over the pooled seeds and folds): {verdict}."
        )
    return lines


def write_page(summary: dict[str, Any], path: Path) -> None:
    protocol = summary["protocol"]
    variants = protocol["ran_variants"]
    scope = (
        f"folds {', '.join(map(str, protocol['pooled_folds']))} RPM, seeds {_seeds(protocol['pooled_seeds'])}"
        if protocol["pooled_folds"]
        else "no fold yet has every variant"
    )
    left_out = [v for v in variants if v not in protocol["pooled_variants"]]
    scope += f"; not pooled (run on fewer folds): {', '.join(left_out)}" if left_out else ""
    factors = protocol["variants"]
    lines = [
        "# Motor sounds at unseen speeds: speed augmentation for the classifier, and the anomaly model beside it",
        "",
        "Regenerate with `nice -n 10 python -m edge_agent.training.audio_unseen` (every speed, every variant, "
        f"seeds 0, 1, 2; this run: {protocol['seconds'] / 60:.0f} min of wall time, 2 jobs of "
        "one thread each, on the shared 2-core VM; `--resume` continues an interrupted run, `--from-rows` only "
        "rewrites this page). Independent checks at 1750/1850 RPM (clips the data owners keep back, not in this "
        "repository) found the shipped classifier calling a propeller fault on M2 and the bearing fault on M4 "
        "healthy in every window. This page measures, leave-one-speed-out, whether training on resampled copies "
        "of every clip helps.",
        "",
        "## Protocol",
        "",
        f"- Folds: every speed held out in turn, nearest to {'/'.join(map(str, REPORTED_RPM))} first (with "
        f"results here: {', '.join(map(str, protocol['folds']))} RPM): all clips at that speed are tested, the "
        "classifier learns on all others. Seeds complete on every fold for every variant: "
        f"{_seeds(protocol['seeds'])}; a fold's row lists its seeds.",
        f"- Classifier: the shipped recipe (raw 4096, silent edges 10 %, AdamW, lr 3e-3, **{protocol['steps']} "
        "steps**) for every variant. *speed augmentation*: every training clip is also resampled (scipy "
        "`resample_poly`) to play at the listed factors × its speed, and each crop comes from the original or one "
        "copy, uniformly (`--speed-factors` of `edge-agent train-audio`).",
    ]
    for name, fs in factors.items():
        lines.append(f"  - *{name}*: " + (", ".join(f"{f:g}" for f in fs) or "no copies") + ".")
    lines += [
        f"- A window **votes** for a fault when its most probable class is a fault at probability ≥ {MIN_CONFIDENCE} "
        f"(the agent's `min_confidence`); a clip **alerts** when {DEBOUNCE_K} of {DEBOUNCE_N} consecutive windows "
        "vote for the same fault (`confirm_k` of `confirm_n`). A bearing clip called propeller still alerts.",
        "- *fault windows flagged*: share of the fault clips' windows that vote; *healthy false windows*: share of "
        "the healthy clips' windows that vote; *window accuracy*: argmax equals the true class. ± is the std over "
        "seeds; clip counts are given per seed.",
        f"- Anomaly model: `{protocol['anomaly_variant']}` (the anomaly report's recommendation), one per motor "
        "(M1, M2), learned on that motor's healthy clips at the other speeds, its threshold from cross-fitted "
        "healthy scores. A window of the combined system counts when either the classifier votes or the score "
        "exceeds the threshold; a clip alerts when either one's debounced alert fires.",
        "",
        "## Decision rule (issue 10, item 8)",
        "",
        "Augmentation replaces the shipped recipe if it is at least as good on fault recall and better on false "
        f"alarms, pooled ({scope}):",
        "",
        *_decision_lines(summary),
        "",
        "## Classifier, pooled",
        "",
        f"Pooled over {scope}.",
        "",
        *_rate_table(summary["pooled"], "variant", "variant"),
        "",
        f"## Classifier, the folds within {NEAR_RPM} RPM of {'/'.join(map(str, REPORTED_RPM))} pooled "
        f"({', '.join(map(str, summary['near'][0]['folds'] if summary['near'] else [])) or 'none yet'} RPM)",
        "",
        *_rate_table(summary["near"], "variant", "variant"),
        "",
        "## Classifier, fold by fold",
        "",
        *_rate_table(
            [{**f, "name": f"{f['fold']} RPM, {f['variant']}"} for f in summary["folds"] if f["seeds"]],
            "held out",
            "name",
        ),
        "",
        "## Fault clips, one by one (windows that vote, per seed · debounced alerts)",
        "",
        "The reported misses were a propeller fault on M2 and the bearing fault on M4.",
        "",
        *_clip_table(summary["clips"], variants, fault=True),
        "",
        "## Healthy clips, one by one (windows that vote for a fault, per seed · false alerts)",
        "",
        *_clip_table(summary["clips"], variants, fault=False),
        "",
        "## Classifier and anomaly model together (M1 and M2 clips)",
        "",
        f"{len(summary['combined_clips'])} held-out clips of the folds "
        f"{', '.join(map(str, summary['combined_folds']))} RPM: the motors with healthy recordings to learn from "
        "(M4, the bearing motor, has none; 1700, 1800 and 1900 RPM hold only M4 clips).",
        "",
        "| model | seeds | propeller windows flagged | healthy false windows | propeller clips alerted | "
        "healthy clips alerted | fault clips missed (per seed) |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in summary["combined"]:
        lines.append(
            f"| {entry['model']} | {_seeds(entry['seeds'])} | {_pct(entry['fault_window_recall'])} | "
            f"{_pct(entry['healthy_window_false'])} | {entry['fault_clips_alerted']} | "
            f"{entry['healthy_clips_alerted']} | {_names(entry['fault_clips_missed'])} |"
        )
    missed = any(any(seed) for entry in summary["pooled"] for seed in entry["fault_clips_missed"])
    lines += ["", "## What these folds can show", ""]
    if not protocol["seeds"]:
        lines += [
            f"**This run is partial** (stopped, not finished): the pooled tables cover {scope}; the fold and clip "
            "tables show every job that finished. `--resume` with the same `--rows` runs the rest.",
            "",
        ]
    if not missed:
        lines.append(
            "No fault clip is missed by any variant on these folds: the misses found at 1750/1850 RPM do not "
            "reproduce on the speeds available here, so these folds cannot show that augmentation fixes them. "
            "What they do measure is fault recall and healthy false alarms at held-out speeds."
        )
    else:
        lines.append("Some fault clips are missed on these folds (listed above, per seed).")
    lines += ["", "The numbers behind these tables are in `audio_unseen_speeds.json`.", ""]
    path.write_text("\n".join(lines))
    logger.info("wrote %s", path)
