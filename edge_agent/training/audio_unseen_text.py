"""Summary of :mod:`edge_agent.training.audio_unseen`: per fold, pooled, per clip, with the anomaly model, decision.

The page is written by :mod:`edge_agent.training.audio_unseen_page`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_agent.training.anomaly_eval import debounced_alert
from edge_agent.training.audio_data import CLASS_NAMES

logger = logging.getLogger(__name__)

MIN_CONFIDENCE = 0.8  # the agent's decision.min_confidence default


def fault_votes(probabilities: np.ndarray) -> np.ndarray:
    """Per window, the fault class it votes for (index into CLASS_NAMES), or 0 (healthy) when it does not vote."""
    predicted = probabilities.argmax(axis=1)
    confident = probabilities.max(axis=1) >= MIN_CONFIDENCE
    return np.where(confident & (predicted != CLASS_NAMES.index("healthy")), predicted, 0)


def clip_alerts(votes: np.ndarray) -> bool:
    """True when k of n consecutive windows vote for one fault class (the agent's debouncing, per label)."""
    return any(debounced_alert(votes == label) for label in range(1, len(CLASS_NAMES)))


def combined_flags(row: dict[str, Any], anomaly: dict[str, Any] | None) -> tuple[np.ndarray, bool]:
    """Window flags (classifier vote or anomaly score over threshold) and the clip's debounced alert."""
    votes = fault_votes(np.asarray(row["probabilities"]))
    if anomaly is None:
        return votes > 0, clip_alerts(votes)
    scores = np.asarray(anomaly["scores"])
    if len(scores) != len(votes):
        raise ValueError(f"{row['clip']}: {len(votes)} classifier windows but {len(scores)} anomaly windows")
    over = scores > anomaly["threshold"]
    return (votes > 0) | over, clip_alerts(votes) or debounced_alert(over)


RATES = ("fault_window_recall", "healthy_window_false", "window_accuracy")


def _clip_result(row: dict[str, Any], anomaly: dict[str, Any] | None, use_classifier: bool = True) -> dict[str, Any]:
    if use_classifier:
        flags, alert = combined_flags(row, anomaly)
    else:  # the anomaly model alone
        flags = np.asarray(anomaly["scores"]) > anomaly["threshold"]
        alert = debounced_alert(flags)
    probs = np.asarray(row["probabilities"])
    return {
        "clip": row["clip"],
        "fault": row["condition"] != "healthy",
        "flags": flags,
        "alert": alert,
        "correct": probs.argmax(axis=1) == CLASS_NAMES.index(row["condition"]),
    }


def _rates(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Window and debounced clip rates of one seed's clip results."""
    faults = [r for r in results if r["fault"]]
    healthy = [r for r in results if not r["fault"]]

    def pooled(group: Sequence[dict[str, Any]], key: str) -> float:
        return float(np.concatenate([r[key] for r in group]).mean()) if group else float("nan")

    return {
        "fault_window_recall": pooled(faults, "flags"),
        "healthy_window_false": pooled(healthy, "flags"),
        "window_accuracy": pooled(results, "correct"),
        "fault_clips_alerted": f"{sum(r['alert'] for r in faults)}/{len(faults)}",
        "healthy_clips_alerted": f"{sum(r['alert'] for r in healthy)}/{len(healthy)}",
        "fault_clips_missed": sorted(r["clip"] for r in faults if not r["alert"]),
        "healthy_clips_false_alert": sorted(r["clip"] for r in healthy if r["alert"]),
    }


def _over_seeds(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key in RATES:
        values = [s[key] for s in per_seed if not np.isnan(s[key])]
        entry[key] = [float(np.mean(values)), float(np.std(values))] if values else None
    for key in ("fault_clips_alerted", "healthy_clips_alerted"):
        entry[key] = " ".join(s[key] for s in per_seed)
    for key in ("fault_clips_missed", "healthy_clips_false_alert"):
        entry[key] = [s[key] for s in per_seed]
    return entry


NEAR_RPM = 100  # folds within this of 1750 or 1850 RPM (the reported speeds) are "near"
REPORTED_RPM = (1750, 1850)  # the independent checks' speeds (clips held back by the data owners)


def by_priority(speeds: Sequence[int]) -> tuple[int, ...]:
    """Held-out speeds, nearest to the reported 1750/1850 RPM first (ties: the lower speed first)."""
    return tuple(sorted(speeds, key=lambda rpm: (min(abs(rpm - r) for r in REPORTED_RPM), rpm)))


def near_folds(folds: Sequence[int]) -> list[int]:
    return [f for f in folds if min(abs(f - r) for r in REPORTED_RPM) <= NEAR_RPM]


def complete_seeds(rows: Sequence[dict[str, Any]], variants: Sequence[str], folds: Sequence[int]) -> list[int]:
    """Seeds with a row of every variant at every fold in ``folds`` (so variants compare on the same models' folds)."""
    have = {(r["variant"], r["fold"], r["seed"]) for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    return [s for s in seeds if all((v, f, s) in have for v in variants for f in folds)]


def pooled_scope(
    rows: Sequence[dict[str, Any]], variants: Sequence[str], folds: Sequence[int]
) -> tuple[list[str], list[int], list[int]]:
    """(variants, folds, seeds) that pooled tables compare on the same held-out clips.

    The folds are those where the first two variants (the shipped recipe and the first augmentation)
    both have the first seed; the seeds, those that have all these folds too; the variants, those
    with a row at every such fold and seed (a variant run on fewer folds is left out of the pool).
    With every job done that is every fold, seed and variant.
    """
    have = {(r["variant"], r["fold"], r["seed"]) for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    base = list(variants[:2])
    scope = [f for f in folds if seeds and all((v, f, seeds[0]) in have for v in base)]
    kept = [s for s in seeds if all((v, f, s) in have for v in base for f in scope)]
    included = [v for v in variants if all((v, f, s) in have for f in scope for s in kept)]
    return included, scope, kept


def _pooled(
    rows: Sequence[dict[str, Any]], variants: Sequence[str], folds: Sequence[int], seeds: Sequence[int]
) -> list[dict[str, Any]]:
    out = []
    for variant in variants:
        per_seed = [
            _rates(
                [
                    _clip_result(r, None)
                    for r in rows
                    if r["variant"] == variant and r["seed"] == s and r["fold"] in folds
                ]
            )
            for s in seeds
        ]
        out.append({"variant": variant, "seeds": list(seeds), "folds": list(folds), **_over_seeds(per_seed)})
    return out


def per_clip(rows: Sequence[dict[str, Any]], variants: Sequence[str], folds: Sequence[int]) -> list[dict[str, Any]]:
    """Per held-out clip and variant: share of its windows that vote for a fault, and its debounced alert, per seed."""
    out = []
    for fold in folds:
        for clip in sorted({r["clip"] for r in rows if r["fold"] == fold}):
            condition = next(r["condition"] for r in rows if r["clip"] == clip)
            entry: dict[str, Any] = {"clip": clip, "fold": fold, "condition": condition, "variants": {}}
            for variant in variants:
                picked = sorted(
                    (r for r in rows if r["clip"] == clip and r["variant"] == variant), key=lambda r: r["seed"]
                )
                results = [_clip_result(r, None) for r in picked]
                entry["variants"][variant] = [
                    {"seed": r["seed"], "flagged": float(c["flags"].mean()), "alert": bool(c["alert"])}
                    for r, c in zip(picked, results, strict=True)
                ]
            out.append(entry)
    return out


def decide(pooled: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each augmentation variant against the first (the shipped recipe), on the pooled means over seeds.

    *better* when fault recall (windows) is at least as high, no more fault clips are missed in any
    seed, and healthy false windows are lower; a verdict needs at least 2 seeds (``seeds``).
    """
    base = pooled[0]
    missed_base = max((len(m) for m in base["fault_clips_missed"]), default=0)
    out = []
    for entry in pooled[1:]:
        if base["fault_window_recall"] is None or entry["fault_window_recall"] is None:
            continue
        recall_ok = entry["fault_window_recall"][0] >= base["fault_window_recall"][0]
        missed_ok = max((len(m) for m in entry["fault_clips_missed"]), default=0) <= missed_base
        false_pair = (entry["healthy_window_false"], base["healthy_window_false"])
        false_lower = None not in false_pair and false_pair[0][0] < false_pair[1][0]  # no healthy clip: not lower
        out.append(
            {
                "variant": entry["variant"],
                "recall_at_least": recall_ok,
                "missed_at_most": missed_ok,
                "false_lower": false_lower,
                "better": recall_ok and missed_ok and false_lower,
                "seeds": len(entry["seeds"]),  # below 2 there is no spread over seeds: no verdict
            }
        )
    return out


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Per fold and variant, pooled over folds, per clip, and the classifier + anomaly table (mean, std over seeds)."""
    rows = result["classifier"]
    anomaly = {(a["clip"], a["seed"]): a for a in result["anomaly"]}
    ran = set(r["variant"] for r in rows)
    variants = [v for v in [*result.get("variants", {}), *sorted(ran)] if v in ran]
    variants = list(dict.fromkeys(variants))  # the run's order: the shipped recipe first
    fold_list = [f for f in by_priority(result["folds"]) if any(r["fold"] == f for r in rows)]
    folds: list[dict[str, Any]] = []
    for fold in fold_list:
        for variant in variants:
            seeds = complete_seeds(rows, [variant], [fold])
            per_seed = [
                _rates(
                    [
                        _clip_result(r, None)
                        for r in rows
                        if r["variant"] == variant and r["fold"] == fold and r["seed"] == s
                    ]
                )
                for s in seeds
            ]
            clips = sorted({r["clip"] for r in rows if r["fold"] == fold})
            folds.append({"variant": variant, "fold": fold, "seeds": seeds, "clips": clips, **_over_seeds(per_seed)})
    pooled_variants, scope, seeds = pooled_scope(rows, variants, fold_list)
    pooled = _pooled(rows, pooled_variants, scope, seeds)
    near = _pooled(rows, pooled_variants, near_folds(scope), seeds)
    combined_folds = [f for f in scope if any((r["clip"], r["seed"]) in anomaly for r in rows if r["fold"] == f)]
    paired = [r for r in rows if (r["clip"], r["seed"]) in anomaly and r["seed"] in seeds and r["fold"] in scope]
    combined: list[dict[str, Any]] = []
    for name, variant, how in _combinations(pooled_variants) if pooled_variants else []:
        per_seed = []
        for s in seeds:
            picked = [r for r in paired if r["seed"] == s and r["variant"] == variant]
            per_seed.append(
                _rates(
                    [
                        _clip_result(r, anomaly[(r["clip"], s)] if how != "classifier" else None, how != "anomaly")
                        for r in picked
                    ]
                )
            )
        combined.append({"model": name, "seeds": seeds, **_over_seeds(per_seed)})
    protocol = {k: result[k] for k in ("steps", "anomaly_variant", "seconds")}
    protocol.update(seeds=complete_seeds(rows, variants, fold_list), folds=fold_list, ran_variants=variants)
    protocol.update(pooled_folds=scope, pooled_seeds=seeds, pooled_variants=pooled_variants)
    protocol["variants"] = result.get("variants", {})
    return {
        "protocol": protocol,
        "data_sha256": result["data_sha256"],
        "combined_clips": sorted({r["clip"] for r in paired}),
        "combined_folds": combined_folds,
        "folds": folds,
        "pooled": pooled,
        "near": near,
        "clips": per_clip(rows, variants, fold_list),
        "combined": combined,
        "decision": decide(pooled) if pooled else [],
    }


def _combinations(variants: Sequence[str]) -> list[tuple[str, str, str]]:
    out = [(f"classifier, {v}", v, "classifier") for v in variants]
    out.append(("anomaly model alone", variants[0], "anomaly"))
    out += [(f"classifier ({v}) or anomaly model", v, "either") for v in variants]
    return out


def speed_cv(result: dict[str, Any], variant: str) -> dict[str, Any] | None:
    """Leave-one-speed-out accuracy of ``variant`` in the form of ``train-audio --cv`` (``summarise_cv``).

    Window accuracy pools every held-out window; clip accuracy takes the argmax of a clip's mean
    probabilities; mean and std over the seeds complete on every fold. None without such a seed.
    """
    rows = [r for r in result["classifier"] if r["variant"] == variant]
    folds = sorted({r["fold"] for r in result["classifier"]})
    seeds = complete_seeds(rows, [variant], folds)
    if not seeds:
        return None
    window, clip = [], []
    for seed in seeds:
        picked = [r for r in rows if r["seed"] == seed]
        truth = [CLASS_NAMES.index(r["condition"]) for r in picked]
        probabilities = [np.asarray(r["probabilities"]) for r in picked]
        correct = np.concatenate([p.argmax(axis=1) == t for p, t in zip(probabilities, truth, strict=True)])
        window.append(float(correct.mean()))
        clip.append(float(np.mean([p.mean(axis=0).argmax() == t for p, t in zip(probabilities, truth, strict=True)])))
    return {
        "seeds": len(seeds),
        "window_accuracy_mean": float(np.mean(window)),
        "window_accuracy_std": float(np.std(window)),
        "clip_accuracy_mean": float(np.mean(clip)),
        "clip_accuracy_std": float(np.std(clip)),
    }
