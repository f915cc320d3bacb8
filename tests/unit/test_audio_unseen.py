"""The leave-speed-out report of the audio classifier: fold order, resuming, partial seeds, decision, page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.training.audio_unseen import _job_key, _row_keys, anomaly_job, classifier_job
from edge_agent.training.audio_unseen_page import write_page
from edge_agent.training.audio_unseen_text import by_priority, complete_seeds, decide, near_folds, summarise

HEALTHY = [0.9, 0.05, 0.05]
PROPELLER = [0.05, 0.9, 0.05]


def _row(variant: str, fold: int, seed: int, clip: str, probabilities: list[list[float]]) -> dict[str, Any]:
    condition = clip.split("/")[0].lower()
    return {
        "variant": variant,
        "fold": fold,
        "seed": seed,
        "clip": clip,
        "condition": condition,
        "motor": clip.split("/")[1],
        "probabilities": probabilities,
    }


def test_folds_nearest_the_reported_speeds_come_first() -> None:
    speeds = [1400, 1450, 1550, 1650, 1700, 1800, 1900, 1950, 2000]
    assert by_priority(speeds) == (1700, 1800, 1900, 1650, 1950, 2000, 1550, 1450, 1400)
    assert near_folds(by_priority(speeds)) == [1700, 1800, 1900, 1650, 1950]


def test_a_resumed_run_recognises_the_jobs_it_already_has() -> None:
    result = {
        "classifier": [_row("shipped recipe", 1650, 1, "Healthy/M2/1650.wav", [HEALTHY])],
        "anomaly": [{"fold": 1650, "seed": 1, "clip": "Healthy/M2/1650.wav", "scores": [0.0], "threshold": 1.0}],
    }
    done = _row_keys(result)
    assert _job_key(classifier_job, {"variant": "shipped recipe", "rpm": 1650, "seed": 1}) in done
    assert _job_key(anomaly_job, {"motor": "M2", "rpm": 1650, "seed": 1}) in done
    assert _job_key(classifier_job, {"variant": "shipped recipe", "rpm": 1650, "seed": 0}) not in done
    assert _job_key(anomaly_job, {"motor": "M1", "rpm": 1650, "seed": 1}) not in done


def _result() -> dict[str, Any]:
    """Two variants, two folds; seed 1 has only the 1950 fold. *aug* has fewer healthy false windows."""
    rows = []
    for seed, folds in ((0, (1650, 1950)), (1, (1950,))):
        for fold in folds:
            fault = [PROPELLER] * 6
            rows += [
                _row("shipped", fold, seed, f"Propeller/M2/{fold}.wav", fault),
                _row("shipped", fold, seed, f"Healthy/M2/{fold}.wav", [PROPELLER] * 3 + [HEALTHY] * 3),
                _row("aug", fold, seed, f"Propeller/M2/{fold}.wav", fault),
                _row("aug", fold, seed, f"Healthy/M2/{fold}.wav", [HEALTHY] * 6),
            ]
    anomaly = [
        {"fold": r["fold"], "seed": r["seed"], "clip": r["clip"], "scores": [0.0] * 6, "threshold": 1.0}
        for r in rows
        if r["variant"] == "shipped"
    ]
    return {
        "classifier": rows,
        "anomaly": anomaly,
        "seeds": [0],
        "folds": [1650, 1950],
        "data_sha256": "x",
        "steps": 1,
        "variants": {"shipped": [], "aug": [0.9, 1.1]},
        "anomaly_variant": "a",
        "seconds": 60.0,
    }


def test_partial_seeds_pool_only_where_every_variant_has_every_fold(tmp_path: Path) -> None:
    result = _result()
    result["classifier"].append(_row("aug15", 1950, 0, "Healthy/M2/1950.wav", [PROPELLER] * 6))  # one fold only
    result["variants"]["aug15"] = [0.85, 1.15]
    assert complete_seeds(result["classifier"], ["shipped", "aug"], [1650, 1950]) == [0]
    assert complete_seeds(result["classifier"], ["shipped", "aug"], [1950]) == [0, 1]
    summary = summarise(result)
    assert summary["protocol"]["seeds"] == []  # aug15 has not run everywhere
    assert summary["protocol"]["pooled_variants"] == ["shipped", "aug"]
    assert (summary["protocol"]["pooled_folds"], summary["protocol"]["pooled_seeds"]) == ([1650, 1950], [0])
    shipped, aug = summary["pooled"]
    assert shipped["seeds"] == [0] and shipped["healthy_window_false"] == [0.5, 0.0]
    assert aug["healthy_window_false"] == [0.0, 0.0] and aug["fault_window_recall"] == [1.0, 0.0]
    fold_1950 = next(f for f in summary["folds"] if f["fold"] == 1950 and f["variant"] == "shipped")
    assert fold_1950["seeds"] == [0, 1] and fold_1950["healthy_clips_alerted"] == "1/1 1/1"
    clip = next(c for c in summary["clips"] if c["clip"] == "Healthy/M2/1950.wav")
    assert [r["seed"] for r in clip["variants"]["shipped"]] == [0, 1]
    assert all(r["flagged"] == 0.5 and r["alert"] for r in clip["variants"]["shipped"])
    (decision,) = summary["decision"]
    assert decision["variant"] == "aug" and decision["better"] and decision["seeds"] == 1
    write_page(summary, tmp_path / "page.md")
    page = (tmp_path / "page.md").read_text()
    assert "*aug* against the *shipped*" in page and "better on this one seed; **no verdict**" in page
    assert "not pooled (run on fewer folds): aug15" in page
    assert "| Healthy/M2/1950 | 50, 50 % · 2/2 alert | 0, 0 % · 0/2 alert |" in page


def test_fewer_false_alarms_do_not_make_up_for_a_missed_fault() -> None:
    def entry(variant: str, recall: float, false: float, missed: list[list[str]]) -> dict[str, Any]:
        return {
            "variant": variant,
            "fault_window_recall": [recall, 0.0],
            "healthy_window_false": [false, 0.0],
            "fault_clips_missed": missed,
            "seeds": [0, 1],
        }

    pooled = [
        entry("shipped", 0.99, 0.10, [[], []]),
        entry("aug10", 0.99, 0.02, [["Propeller/M2/1650.wav"], []]),
        entry("aug15", 0.995, 0.05, [[], []]),
        entry("aug20", 0.98, 0.01, [[], []]),
    ]
    verdicts = {d["variant"]: d["better"] for d in decide(pooled)}
    assert verdicts == {"aug10": False, "aug15": True, "aug20": False}


def test_speed_cv_summary_uses_the_seeds_complete_on_every_fold() -> None:
    from edge_agent.training.audio_unseen_text import speed_cv

    shipped = speed_cv(_result(), "shipped")
    assert shipped is not None and shipped["seeds"] == 1
    assert shipped["window_accuracy_mean"] == 18 / 24  # half of each healthy clip's windows called propeller
    assert speed_cv(_result(), "aug")["window_accuracy_mean"] == 1.0
    assert speed_cv(_result(), "none") is None
