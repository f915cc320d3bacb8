"""Motor sound at unseen speeds: the envelope-spread detector, chosen per fold on validation folds (one command).

    EDGE_AGENT_DATA=../shared/data nice -n 10 python -m edge_agent.training.anomaly_speeds [--out docs/results]

Writes ``<out>/anomaly_unseen_speeds.md`` and ``<out>/anomaly_unseen_speeds.json``. Per motor (M1, M2) and per
held-out speed (leave one speed out, as in ``anomaly_report``): the healthy clips at the other 5 speeds are the
learning data; the held-out speed's healthy and propeller clips are the test and are used for nothing else.

- **Selection on validation folds** (nested): for each outer fold, every candidate of :data:`CANDIDATES` is
  scored leave-one-*learned*-speed-out on the 5 learned speeds (healthy at the 4 others learned; that speed's
  healthy clip against its propeller clip, where it has one): the best mean validation AUC wins; within
  0.005 of it, the number of validation healthy clips with a debounced alert decides, then the validation
  false-window rate over 2 %, then the validation detection (all at a cross-fitted 99 % healthy quantile, see
  :func:`~edge_agent.training.anomaly_speeds_select.choose`).
  This inner scoring uses the front-end features and the detector's arithmetic directly (fast path).
- **Test**: the chosen candidate is learned through :func:`edge_agent.training.anomaly_learn.learn` with
  ``cross_fit`` (the same code as ``edge-agent learn --cross-fit``: threshold from the leave-one-recording-out
  scores of all 5 learned clips, peaks over threshold at 1 %), exported graph's scores on the test clips.
- **The debounce**, twice over the whole protocol: the agent's default 3 of 5 (the page before), and the one
  ``learn`` stores in the meta (:mod:`edge_agent.training.anomaly_debounce`: the smallest k of n at the
  default's share that raises no episode on the cross-fitted healthy streams of the learned clips at the
  threshold), in the validation folds (from their own cross-fitted streams) as in the test.
- Reference table: every candidate on every test fold (choosing from it would be choosing on the test).

Nothing here is random (no training, no noise draw): one run gives every number.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_agent.training import anomaly_eval as ev
from edge_agent.training.anomaly_debounce import DEFAULT_CONFIRM_K, DEFAULT_CONFIRM_N, alerts, first_alert_s
from edge_agent.training.anomaly_learn import learn
from edge_agent.training.anomaly_speeds_causes import causes
from edge_agent.training.anomaly_speeds_cost import costs_ms_per_window
from edge_agent.training.anomaly_speeds_select import (
    DEFAULT_TARGET,
    MAX_FALSE_RATE,
    RULES,
    SPEEDS,
    FastScorer,
    choose,
    clip_of,
    reference_rows,
    validation,
)
from edge_agent.training.anomaly_train import AnomalyConfig, build_detector, scores_of
from edge_agent.training.audio_data import SAMPLE_RATE_HZ, BldcDataset, Clip, load_bldc

logger = logging.getLogger(__name__)
__all__ = ["MAX_FALSE_RATE", "FastScorer", "choose", "main", "run"]

MOTORS = ("M1", "M2")
HOP_SAMPLES = 2048
PRODUCT_RULES = {"learned": "nested", "default": "nested_default"}  # run through learn; "episode": fast path only


@dataclass(frozen=True)
class Candidate:
    frontend: str
    window_samples: int
    spread_bands: int = 3
    network: str = "excess"
    target_false_rate: float = DEFAULT_TARGET

    @property
    def detector(self) -> str:
        """The name of the exported detector (the target only moves its threshold)."""
        bands = f", {self.spread_bands} bands" if self.frontend in ("envspread", "blockspread") else ""
        return f"{self.network}/{self.frontend} ({self.window_samples} samples{bands})"

    @property
    def name(self) -> str:
        strict = self.target_false_rate != DEFAULT_TARGET
        return f"{self.detector[:-1]}, {100 * self.target_false_rate:g} % target)" if strict else self.detector

    def config(self) -> AnomalyConfig:
        return replace(
            ev.MOTOR_BASE,
            network=self.network,
            frontend=self.frontend,
            window_samples=self.window_samples,
            hop_samples=HOP_SAMPLES,
            train_hop_samples=512,
            spread_bands=self.spread_bands,
            target_false_rate=self.target_false_rate,
            cross_fit=True,
        )


CANDIDATES = (
    Candidate("envspread", 8192, 3),  # the previous state of this page (envspread 4096/0 bands and bandkurtosis
    Candidate("envspread", 8192, 6),  # were candidates there too and never won a fold)
    Candidate("blockspread", 8192, 3),
    Candidate("blockspread", 8192, 6, "consensus"),
    Candidate("blockspread", 16384, 3, "consensus"),
    Candidate("blockspread", 16384, 6),
    Candidate("blockspread", 16384, 6, "consensus"),
    *(Candidate("blockspread", w, b, n, 0.002) for w, b, n in ((16384, 3, "consensus"), (16384, 6, "consensus"))),
)
COST_REFERENCE = CANDIDATES[0]  # costs are also given as a ratio to this one, measured in the same run


def scorer_groups(candidate: Candidate) -> int:
    """``FastScorer``'s ``groups`` for ``candidate``: 0 for ``excess``, the front-end's frame lengths otherwise."""
    if candidate.network != "consensus":
        return 0
    return build_detector(candidate.config(), 1, float(SAMPLE_RATE_HZ)).frontend.feature_groups


def clip_features(dataset: BldcDataset, candidate: Candidate) -> dict[str, np.ndarray]:
    """Front-end features ``(windows, C * F)`` of every M1/M2 clip, at the evaluation hop."""
    front = build_detector(candidate.config(), 1, dataset.sample_rate_hz).frontend
    out = {}
    with torch.inference_mode():
        for clip in _clips(dataset):
            windows = np.lib.stride_tricks.sliding_window_view(clip.samples, candidate.window_samples)[::HOP_SAMPLES]
            out[clip.path] = front(torch.from_numpy(np.ascontiguousarray(windows[:, None, :]))).flatten(1).numpy()
    return out


def _clips(dataset: BldcDataset) -> list[Clip]:
    return [c for c in dataset.clips if c.motor in MOTORS and c.condition in ("healthy", "propeller")]


def held_out_rows(
    dataset: BldcDataset, motor: str, held: int, candidate: Candidate, learned_debounce: bool
) -> list[dict[str, Any]]:
    """The product path: learn (cross-fit) on the learned speeds, score the held-out speed's clips; the
    debounce is the one ``learn`` stored (``learned_debounce``) or the agent's default."""
    config = candidate.config()
    train = [
        c.samples[None, :] for c in dataset.clips if (c.motor, c.condition) == (motor, "healthy") and c.rpm != held
    ]
    result = learn(train, dataset.sample_rate_hz, config)
    confirm = (DEFAULT_CONFIRM_K, DEFAULT_CONFIRM_N)
    if learned_debounce and result.debounce is not None:
        confirm = (result.debounce.confirm_k, result.debounce.confirm_n)
    module = torch.jit.script(result.detector.eval())
    rows = []
    for condition in ("healthy", "propeller"):
        clip = clip_of(dataset, motor, condition, held)
        if clip is None:
            continue
        scores = scores_of(module, [clip.samples[None, :]], config.window_samples, config.hop_samples)
        rows.append(
            {
                "variant": candidate.name,
                "motor": motor,
                "fold": str(held),
                "clip": clip.path,
                "rpm": held,
                "anomalous": condition != "healthy",
                "scores": scores.tolist(),
                "threshold": result.threshold,
                "threshold_method": result.fit.method,
                "confirm_k": confirm[0],
                "confirm_n": confirm[1],
                "window_s": config.window_samples / dataset.sample_rate_hz,
            }
        )
    return rows


def fold_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per fold: AUC, false and detection rates at the stored threshold, debounced alerts."""
    out = []
    for fold in sorted({r["fold"] for r in rows}, key=int):
        picked = [r for r in rows if r["fold"] == fold]
        healthy = next(r for r in picked if not r["anomalous"])
        fault = next((r for r in picked if r["anomalous"]), None)
        flags_h = np.asarray(healthy["scores"]) > healthy["threshold"]
        k, n = healthy["confirm_k"], healthy["confirm_n"]
        entry: dict[str, Any] = {
            "fold": fold,
            "variant": healthy["variant"],
            "threshold": healthy["threshold"],
            "confirm_k": k,
            "confirm_n": n,
            "false_rate": float(flags_h.mean()),
            "false_alert": alerts(flags_h, k, n),
            "false_windows_s": [round(float(i) * HOP_SAMPLES / SAMPLE_RATE_HZ, 3) for i in np.flatnonzero(flags_h)],
            "most_votes": int(np.convolve(flags_h.astype(int), np.ones(n, int)).max()),  # in any n windows
        }
        if fault is not None:
            flags_f = np.asarray(fault["scores"]) > fault["threshold"]
            entry.update(
                auc=ev.auc(np.asarray(healthy["scores"]), np.asarray(fault["scores"])),
                detection_rate=float(flags_f.mean()),
                fault_missed=not alerts(flags_f, k, n),
                alert_after_s=first_alert_s(flags_f, k, n, HOP_SAMPLES / SAMPLE_RATE_HZ, fault["window_s"]),
            )
        out.append(entry)
    return out


def nested(
    dataset: BldcDataset, motor: str, chosen: dict[str, Any], by_name: dict[str, Candidate], learned_debounce: bool
) -> dict[str, Any]:
    """The product path on every test fold with the candidate ``chosen`` on its validation folds."""
    rows = []
    for held in SPEEDS:
        candidate = by_name[chosen[str(held)]["chosen"]]
        rows += held_out_rows(dataset, motor, held, candidate, learned_debounce)
        logger.info("%s fold %d (debounce learned: %s): %s", motor, held, learned_debounce, candidate.name)
    folds = fold_table(rows)
    delays = [r["alert_after_s"] for r in folds if r.get("alert_after_s") is not None]
    pooled = {**ev.motor_summary(rows), "longest_alert_after_s": max(delays, default=None)}
    return {"folds": folds, "pooled": pooled, "choices": chosen}


def run(data: str | None) -> dict[str, Any]:
    torch.set_num_threads(1)
    started = time.perf_counter()
    dataset = load_bldc(data)
    feats = {c.detector: clip_features(dataset, c) for c in CANDIDATES if c.name == c.detector}
    by_name = {c.name: c for c in CANDIDATES}
    groups = {c.name: scorer_groups(c) for c in CANDIDATES}
    quantiles = {c.name: 1.0 - c.target_false_rate for c in CANDIDATES}
    summary: dict[str, Any] = {"candidates": [c.name for c in CANDIDATES], "motors": {}, "rules": {}}
    for motor in MOTORS:
        summary["motors"][motor] = {}
        for rule in RULES:
            chosen, fast = {}, {}
            fixed = {  # reference: every candidate on every test fold (fast path, 1 - target quantile)
                c.name: reference_rows(dataset, feats[c.detector], motor, groups[c.name], quantiles[c.name], rule)
                for c in CANDIDATES
            }
            for held in SPEEDS:
                learned = tuple(s for s in SPEEDS if s != held)
                scores = {
                    c.name: validation(
                        dataset, feats[c.detector], motor, learned, groups[c.name], quantiles[c.name], rule
                    )
                    for c in CANDIDATES
                }
                chosen[str(held)] = {"chosen": choose(scores), "validation": scores}
                fast[str(held)] = [r for r in fixed[chosen[str(held)]["chosen"]] if r["fold"] == str(held)]
            summary["rules"].setdefault(rule, {})[motor] = ev.motor_summary([r for f in fast.values() for r in f])
            if rule in PRODUCT_RULES:  # "nested": the learned debounce (after), "nested_default": 3 of 5 (before)
                key = PRODUCT_RULES[rule]
                summary["motors"][motor][key] = nested(dataset, motor, chosen, by_name, rule == "learned")
                summary["motors"][motor][key]["reference"] = {n: ev.motor_summary(r) for n, r in fixed.items()}
    summary["cost_ms_per_window"] = costs = costs_ms_per_window(
        {c.name: c.config() for c in CANDIDATES if c.name == c.detector}
    )
    summary["cost_reference"] = COST_REFERENCE.name
    summary["cost_ratio"] = {n: c["min"] / costs[COST_REFERENCE.name]["min"] for n, c in costs.items()}
    summary["causes"] = causes(dataset, MOTORS)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["labels_sha256"] = dataset.sha256
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding machine_sound/ (default: $EDGE_AGENT_DATA)")
    parser.add_argument("--out", default="docs/results", help="where the page and its JSON go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from edge_agent.training.anomaly_speeds_text import render

    summary = run(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "anomaly_unseen_speeds.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    (out / "anomaly_unseen_speeds.md").write_text(render(summary))
    logger.info("wrote %s (%.0f s)", out / "anomaly_unseen_speeds.md", summary["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
