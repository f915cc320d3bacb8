"""A seeded corpus of hostile MQTT sensor payloads, every one of which the agent must reject.

Used by ``tests/integration/test_chaos.py`` (10,000 payloads over a real broker) and by
``benchmarks/bench_soak.py`` (100,000 and a steady stream). ``corpus(seed, count, now_s)`` yields
``(sensor_id, payload)``; publish each on ``<prefix>/<sensor_id>/vibration`` of a JSON mqtt source
with one channel and no configured rate, for a 12 kHz model. The first ``len(TABLE_CASES)``
payloads are issue 12's table, in order; the rest are drawn from :data:`KINDS` with a seeded RNG
(``random.Random(seed)``: the same seed and ``now_s`` give the same bytes; the reason counts move by a few
between runs as ``now_s`` changes the length of a truncated text). Every payload is invalid for a
reason the agent counts (``edge_agent_payload_errors_total{reason}``): there is no "odd but valid"
case in the corpus, so the sum of the error counters must equal the number of payloads sent.
Sensor ids mix plain, unicode and one of 65,515 bytes (a topic of 65,531 bytes, under MQTT's
65,535); the long id carries a *valid* payload (the id alone must be refused: ``bad_sensor_id``).
4 MiB bodies (one just under the size limit, with too many samples; one over it) come every
``big_every`` payloads.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

RATE_HZ = 12_000
LONG_ID = "a" * 65_515
IDS = ("pümpe-ü", "é" * 30, "насос-1", "泵", "x y", "h0", "h1", "h2", "h3")
ODD_RATES: tuple[Any, ...] = (11_988.28, 11_999, 1e-7, 0, -5, 1e308, "12000", 7_919.5, 1e9)
BAD_TS: tuple[Any, ...] = (1e12, -1e12, 1e308, -1.0)


def _doc(rng: random.Random, now_s: float, samples: int = 64) -> dict[str, Any]:
    return {"seq": rng.randrange(1000), "ts": now_s, "sample_rate_hz": RATE_HZ, "samples": [0.01] * samples}


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


def big_payload(over_limit: bool) -> bytes:
    """A 4 MiB body: valid JSON with 1,040,000 samples (just under 4 MiB), or padded over 5 MiB."""
    body = b'{"sample_rate_hz": 12000, "samples": [' + b",".join([b"0.1"] * 1_040_000) + b"]}"
    return body + b" " * (5 * 1024 * 1024 - len(body)) if over_limit else body


def _random_bytes(rng: random.Random, _now_s: float) -> bytes:
    return b"\xff" + rng.randbytes(rng.randrange(1, 2000))  # 0xff never starts JSON (nor valid UTF-8)


def _truncated(rng: random.Random, now_s: float) -> bytes:
    text = _dump(_doc(rng, now_s))
    return text[: rng.randrange(1, len(text) - 1)]  # an object cut before its closing brace


def _non_finite(rng: random.Random, now_s: float) -> bytes:
    doc = _doc(rng, now_s)
    doc["samples"][rng.randrange(64)] = rng.choice([float("nan"), float("inf"), -float("inf")])
    return _dump(doc)


def _odd_rate(rng: random.Random, now_s: float) -> bytes:
    doc = _doc(rng, now_s)
    doc["sample_rate_hz"] = rng.choice(ODD_RATES)
    return _dump(doc)


def _channels(rng: random.Random, now_s: float) -> bytes:
    doc = _doc(rng, now_s)
    row = doc["samples"]
    doc["samples"] = rng.choice([[row, row], [row, row, row], [row, row[:10]], [row] * 9])
    return _dump(doc)


def _deep(rng: random.Random, _now_s: float) -> bytes:
    depth = rng.choice([100, 10_000, 100_000])
    return b"[" * depth + b"]" * rng.randrange(depth)  # never balanced


def _deep_samples(rng: random.Random, now_s: float) -> bytes:
    doc = _doc(rng, now_s)
    nested: Any = [0.5]
    for _ in range(rng.choice([3, 50, 500])):
        nested = [nested]
    doc["samples"] = nested
    return _dump(doc)


def _bad_ts(rng: random.Random, now_s: float) -> bytes:
    doc = _doc(rng, now_s)
    doc["ts"] = rng.choice(BAD_TS)
    return _dump(doc)


def _bad_field(rng: random.Random, now_s: float) -> bytes:
    doc = _doc(rng, now_s)
    choice = rng.randrange(5)
    if choice == 0:
        doc["seq"] = rng.choice([-1, 1.5, "7"])
    elif choice == 1:
        doc["samples"] = [rng.choice([True, "1", None, {}]) for _ in range(8)]
    elif choice == 2:
        doc["samples"] = {"x": 1}
    elif choice == 3:
        doc["ts"] = rng.choice(["now", [1], {"t": 1}])
    else:
        del doc["sample_rate_hz"]
    return _dump(doc)


def _not_object(rng: random.Random, _now_s: float) -> bytes:
    return _dump(rng.choice([[], "x", 7, None, [1, 2, 3]]))


def _empty(rng: random.Random, now_s: float) -> bytes:
    if rng.random() < 0.5:
        return b""
    doc = _doc(rng, now_s)
    doc["samples"] = []
    return _dump(doc)


KINDS: tuple[Callable[[random.Random, float], bytes], ...] = (
    _random_bytes,
    _truncated,
    _non_finite,
    _odd_rate,
    _channels,
    _deep,
    _deep_samples,
    _bad_ts,
    _bad_field,
    _not_object,
    _empty,
)


def table_cases(now_s: float) -> list[tuple[str, bytes]]:
    """Issue 12's table, one payload each (valid in every other respect)."""
    rng = random.Random(0)
    cases: list[tuple[str, bytes]] = [("h0", _random_bytes(rng, now_s)), ("h0", _truncated(rng, now_s))]
    for bad in (float("nan"), float("inf")):
        doc = _doc(rng, now_s)
        doc["samples"][0] = bad
        cases.append(("h1", _dump(doc)))
    for rate in (11_988.28, 11_999, 1e-7):
        doc = _doc(rng, now_s)
        doc["sample_rate_hz"] = rate
        cases.append(("h2", _dump(doc)))
    for ts in (1e12, -1e12, 1e308):
        doc = _doc(rng, now_s)
        doc["ts"] = ts
        cases.append(("h3", _dump(doc)))
    doc = _doc(rng, now_s)
    doc["samples"] = [doc["samples"]] * 2  # two channels on a one-channel source
    cases.append(("h1", _dump(doc)))
    cases.append(("h2", b"[" * 100_000))
    cases.append(("pümpe-ü", _odd_rate(rng, now_s)))
    cases.append((LONG_ID, _dump(_doc(rng, now_s))))  # valid payload: the id alone is refused
    cases.append(("big-under", big_payload(over_limit=False)))
    cases.append(("big-over", big_payload(over_limit=True)))
    return cases


def corpus(seed: int, count: int, now_s: float, *, big_every: int = 5_000) -> Iterator[tuple[str, bytes]]:
    """``count`` hostile payloads: the table first, then seeded random ones; 4 MiB ones every ``big_every``."""
    rng = random.Random(seed)
    table = table_cases(now_s)
    for n in range(count):
        if n < len(table):
            yield table[n]
        elif n % big_every == 0:
            yield "big", big_payload(over_limit=(n // big_every) % 2 == 1)
        else:
            sensor = LONG_ID if rng.random() < 0.01 else rng.choice(IDS)
            yield sensor, rng.choice(KINDS)(rng, now_s)
