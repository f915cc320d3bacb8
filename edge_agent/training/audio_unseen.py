"""The audio classifier at unseen speeds: shipped recipe against speed augmentation, alone and with the anomaly model.

    nice -n 10 python -m edge_agent.training.audio_unseen [--data DIR] [--out docs/results] \\
        [--seeds 0,1] [--steps 600] [--folds 1650,1800,1950] [--jobs 2]

A reduced leave-one-speed-out protocol (the CPU here is shared): the held-out speeds nearest to the
1750/1850 RPM clips the data owners keep back (1650, 1800, 1950; ``--folds`` picks others), the same
number of steps for both variants. Per fold, seed and held-out clip it stores every window's class
probabilities; a window *votes* for a fault when its predicted class is a fault at probability
>= 0.8 (the agent's ``min_confidence``), and a clip *alerts* when 3 of 5 consecutive windows vote for
one fault (the agent's ``confirm_k`` of ``confirm_n``). On the folds with M1/M2 clips the per-motor
anomaly model (undercomplete autoencoder, band kurtosis, cross-fitted threshold: the anomaly report's
recommendation) is learned on that motor's healthy clips at the other speeds, and a window counts for
"either" when the classifier votes or its score exceeds the threshold. Each job runs on one thread;
``--jobs`` jobs in parallel. Raw rows go to ``runs/audio_unseen/rows.json`` (not committed); the page
to ``<out>/audio_unseen_speeds.md`` and its numbers to ``<out>/audio_unseen_speeds.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_agent.training import anomaly_eval as ev
from edge_agent.training.anomaly_learn import learn
from edge_agent.training.anomaly_train import scores_of
from edge_agent.training.audio_data import load_bldc, speed_folds
from edge_agent.training.audio_train import AudioTrainConfig, clip_probabilities, train_audio
from edge_agent.training.audio_unseen_page import write_page
from edge_agent.training.audio_unseen_text import by_priority, speed_cv, summarise
from edge_agent.training.commands import parse_ints

logger = logging.getLogger(__name__)

SPEED_FACTORS = (0.9, 0.95, 1.05, 1.1)
WIDE_SPEED_FACTORS = (0.85, 0.9, 0.95, 1.05, 1.1, 1.15)
SHIPPED = AudioTrainConfig(frontend="raw", window_samples=4096, gap_fraction=0.1)
VARIANTS = {
    "shipped recipe": (),
    "speed augmentation ±10 %": SPEED_FACTORS,
    "speed augmentation ±15 %": WIDE_SPEED_FACTORS,
}
VARIANT_KEYS = dict(zip(("shipped", "aug10", "aug15"), VARIANTS, strict=True))  # --variants names
ANOMALY = ev.Variant("undercomplete", "bandkurtosis", True, cross_fit=True)
ANOMALY_MOTORS = ("M1", "M2")


def _init_worker() -> None:
    torch.set_num_threads(1)


def classifier_job(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Train one classifier on a fold's training clips; one row per held-out clip with its window probabilities."""
    dataset = load_bldc(job["data"])
    fold = next(f for f in speed_folds(dataset) if f.name == f"rpm{job['rpm']}")
    config = dataclasses.replace(
        SHIPPED, steps=job["steps"], seed=job["seed"], speed_factors=tuple(job["speed_factors"])
    )
    started = time.perf_counter()
    model = train_audio(config, fold.train)
    seconds = time.perf_counter() - started
    rows = []
    for clip in fold.test:
        probs = clip_probabilities(model, clip, config.window_samples, config.hop_samples)
        rows.append(
            {
                "variant": job["variant"],
                "fold": job["rpm"],
                "seed": job["seed"],
                "clip": clip.path,
                "motor": clip.motor,
                "condition": clip.condition,
                "probabilities": np.round(probs, 4).tolist(),
                "train_seconds": seconds,
            }
        )
    logger.info("classifier %s rpm %d seed %d: %.0f s", job["variant"], job["rpm"], job["seed"], seconds)
    return rows


def anomaly_job(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Learn one motor's anomaly model on its healthy clips at the other speeds; rows of held-out window scores."""
    dataset = load_bldc(job["data"])
    clips = [c for c in dataset.clips if c.motor == job["motor"] and c.condition in ("healthy", "propeller")]
    train = [c.samples[None, :] for c in clips if c.condition == "healthy" and c.rpm != job["rpm"]]
    config = ANOMALY.config(ev.MOTOR_BASE, job["seed"])
    result = learn(train, dataset.sample_rate_hz, config)
    rows = []
    for clip in (c for c in clips if c.rpm == job["rpm"]):
        scores = scores_of(result.detector, [clip.samples[None, :]], config.window_samples, config.hop_samples)
        rows.append(
            {
                "fold": job["rpm"],
                "seed": job["seed"],
                "clip": clip.path,
                "scores": scores.tolist(),
                "threshold": result.threshold,
                "train_seconds": result.stats["seconds"],
            }
        )
    logger.info("anomaly %s rpm %d seed %d: %.0f s", job["motor"], job["rpm"], job["seed"], result.stats["seconds"])
    return rows


def _job_key(function: Any, job: dict[str, Any]) -> tuple[Any, ...]:
    if function is anomaly_job:
        return ("anomaly", job["motor"], job["rpm"], job["seed"])
    return ("classifier", job["variant"], job["rpm"], job["seed"])


def _row_keys(result: dict[str, Any]) -> set[tuple[Any, ...]]:
    done = {("classifier", r["variant"], r["fold"], r["seed"]) for r in result["classifier"]}
    return done | {("anomaly", r["clip"].split("/")[1], r["fold"], r["seed"]) for r in result["anomaly"]}


def run(
    data: str | None,
    seeds: tuple[int, ...],
    steps: int,
    folds: tuple[int, ...],
    jobs: int,
    rows_path: Path,
    *,
    resume: bool = False,
    variants: tuple[str, ...] = tuple(VARIANTS),
) -> dict[str, Any]:
    """Every job, seed by seed, nearest folds first; ``rows_path`` is rewritten after each job.

    ``result["seeds"]`` lists the seeds complete so far; with ``resume`` the jobs already in
    ``rows_path`` (same steps) are kept and not run again.
    """
    dataset = load_bldc(data)
    folds = folds or by_priority(dataset.speeds)
    pending: dict[int, int] = {}
    jobs_in_order: list[tuple[Any, dict[str, Any]]] = []
    for seed in seeds:
        for rpm in folds:
            for motor in ANOMALY_MOTORS:
                if any(c.motor == motor and c.rpm == rpm for c in dataset.clips):
                    jobs_in_order.append((anomaly_job, {"motor": motor, "rpm": rpm, "seed": seed, "data": data}))
            for name in variants:
                factors = VARIANTS[name]
                job = {"variant": name, "speed_factors": factors, "rpm": rpm, "seed": seed, "steps": steps}
                jobs_in_order.append((classifier_job, {**job, "data": data}))
    result: dict[str, Any] = {
        "data_sha256": dataset.sha256,
        "seeds": [],
        "steps": steps,
        "folds": list(folds),
        "variants": {name: list(factors) for name, factors in VARIANTS.items()},
        "anomaly_variant": ANOMALY.name,
        "seconds": 0.0,
        "classifier": [],
        "anomaly": [],
    }
    if resume and rows_path.is_file():
        previous = json.loads(rows_path.read_text())
        if previous["steps"] != steps or previous["data_sha256"] != dataset.sha256:
            raise ValueError(f"{rows_path}: other steps or data; cannot resume")
        result.update(classifier=previous["classifier"], anomaly=previous["anomaly"], seconds=previous["seconds"])
        result["folds"] = list(by_priority(list({*previous["folds"], *folds})))
        done = _row_keys(result)
        jobs_in_order = [(f, j) for f, j in jobs_in_order if _job_key(f, j) not in done]
    for _, job in jobs_in_order:
        pending[job["seed"]] = pending.get(job["seed"], 0) + 1
    result["seeds"] = [s for s in seeds if pending.get(s, 0) == 0]
    started = time.perf_counter() - result["seconds"]
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
        futures = {pool.submit(function, job): (function, job) for function, job in jobs_in_order}
        for future in as_completed(futures):
            function, job = futures[future]
            result["anomaly" if function is anomaly_job else "classifier"] += future.result()
            pending[job["seed"]] -= 1
            result["seeds"] = [s for s in seeds if pending.get(s, 0) == 0]
            result["seconds"] = time.perf_counter() - started
            rows_path.write_text(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_agent.training.audio_unseen", description=__doc__)
    parser.add_argument("--data", help="folder holding machine_sound/ (default: $EDGE_AGENT_DATA or ../shared/data)")
    parser.add_argument("--out", default="docs/results", help="folder for audio_unseen_speeds.md and .json")
    parser.add_argument("--seeds", type=parse_ints, default="0,1,2")
    parser.add_argument("--steps", type=int, default=1200, help="optimiser steps of every classifier (the recipe's)")
    parser.add_argument("--folds", type=parse_ints, default=(), help="held-out RPMs (default: every speed)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings in parallel, one thread each")
    parser.add_argument("--rows", default="runs/audio_unseen/rows.json", help="raw rows (reused with --from-rows)")
    parser.add_argument("--from-rows", action="store_true", help="only rewrite the page from --rows")
    parser.add_argument("--resume", action="store_true", help="keep the jobs already in --rows, run the rest")
    parser.add_argument(
        "--variants",
        type=lambda text: tuple(VARIANT_KEYS[part] for part in text.split(",")),
        default=tuple(VARIANTS),
        help=f"classifier variants to run, of {','.join(VARIANT_KEYS)} (default: all)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows_path = Path(args.rows)
    if args.from_rows:
        result = json.loads(rows_path.read_text())
    else:
        result = run(
            args.data,
            args.seeds,
            args.steps,
            args.folds,
            args.jobs,
            rows_path,
            resume=args.resume,
            variants=args.variants,
        )
    summary = summarise(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audio_unseen_speeds.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_page(summary, out / "audio_unseen_speeds.md")
    for key, name in VARIANT_KEYS.items():  # --cv-summary files of `edge-agent train-audio` (not committed)
        cv = speed_cv(result, name)
        if cv is not None:
            config = dataclasses.replace(SHIPPED, steps=result["steps"], speed_factors=VARIANTS[name], seed=-1)
            document = {"config": config.to_json(), "speed": cv, "motor": None, "source": str(rows_path)}
            (rows_path.parent / f"cv-{key}.json").write_text(json.dumps(document, indent=1) + "\n")
    for entry in summary["pooled"]:
        print(
            f"{entry['variant']}: fault windows {entry['fault_window_recall']}, healthy false "
            f"{entry['healthy_window_false']}, fault clips {entry['fault_clips_alerted']}, "
            f"healthy clips alerted {entry['healthy_clips_alerted']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
