"""The fast JSON decoder (msgspec) accepts, rejects and explains exactly what ``json.loads`` did.

Each payload below is one where a decoder other than the standard library's could differ: NaN and
Infinity literals, integers beyond 64 bits (``orjson`` would turn them into floats), duplicate keys,
nesting at and past the decoders' depth limits, encodings other than UTF-8, lone surrogates, numbers
beyond float range, booleans. Each is parsed twice: with the module's decoder and with the decoder
seam forced to refuse everything (so only ``json.loads`` decides, as before msgspec); the outcomes,
chunk or ``(reason, message)``, must be identical.

One difference is known and left: nesting deeper than ``json.loads`` allows (994 levels when called
from a shallow stack) but within msgspec's limit (998) is now accepted in an ignored key; both
limits come from the interpreter's recursion limit and move with the caller's stack depth.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np
import pytest

import edge_agent.sources.payloads as payloads
from edge_agent.sources.payloads import PayloadError, parse_payload

WALL = 1_700_000_000.0
NUMBERS = b"[" + b",".join(f"{x!r}".encode() for x in np.random.default_rng(3).normal(0, 1e3, 256).tolist()) + b"]"


def deep(levels: int) -> bytes:
    return b'{"samples": [1.0], "x": ' + b"[" * levels + b"]" * levels + b"}"


CASES: list[tuple[str, bytes, dict[str, Any]]] = [
    ("NaN literal", b'{"samples": [NaN, 1.0]}', {}),
    ("Infinity literal", b'{"samples": [1.0, Infinity]}', {}),
    ("-Infinity literal", b'{"samples": [-Infinity]}', {}),
    ("NaN in an ignored key", b'{"samples": [1.0], "x": NaN}', {}),
    ("Infinity ts", b'{"ts": Infinity, "samples": [1.0]}', {}),
    ("int beyond 64 bits in samples", b'{"samples": [1, 1180591620717411303424]}', {}),
    ("int just past uint64 in samples", b'{"samples": [18446744073709551616]}', {}),
    ("uint64 max in samples", b'{"samples": [18446744073709551615]}', {}),
    ("int below int64 in samples", b'{"samples": [-9223372036854775809]}', {}),
    ("seq beyond 64 bits", b'{"seq": 1180591620717411303424, "samples": [1.0]}', {}),
    ("seq at uint64 max", b'{"seq": 18446744073709551615, "samples": [1.0]}', {}),
    ("ts a 400-digit integer", b'{"ts": 1' + b"0" * 400 + b', "samples": [1.0]}', {}),
    (
        "rate a 400-digit integer",
        b'{"sample_rate_hz": 1' + b"0" * 400 + b', "samples": [1.0]}',
        {"expected_rate_hz": 0.0},
    ),
    ("1e400 sample", b'{"samples": [1e400]}', {}),
    ("1e400 ts", b'{"ts": 1e400, "samples": [1.0]}', {}),
    ("float max and beyond", b'{"samples": [1.7976931348623157e308, 2e308]}', {}),
    ("subnormal and underflow", b'{"samples": [5e-324, 1e-400, -0.0]}', {}),
    ("beyond float32", b'{"samples": [3.5e38]}', {}),
    (
        "many digits",
        b'{"samples": [0.1000000000000000055511151231257827021181583404541015625, 123456789012345678901234567890.5]}',
        {},
    ),
    ("duplicate keys: last wins", b'{"samples": [1.0], "samples": [2.0, 3.0], "seq": 1, "seq": 2}', {}),
    ("duplicate keys: last one bad", b'{"samples": [1.0], "samples": "x"}', {}),
    ("nesting 500", deep(500), {}),
    ("nesting 1010", deep(1010), {}),
    ("nesting 1030", deep(1030), {}),
    ("nesting 100 000", b"[" * 100_000 + b"]" * 100_000, {}),
    ("invalid UTF-8 in a string", b'{"samples": [1.0], "unit": "\xff"}', {}),
    ("invalid UTF-8 bytes", b"\xff\xfe\x00{", {}),
    ("UTF-8 BOM", b'\xef\xbb\xbf{"samples": [1.0]}', {}),
    ("UTF-16", '{"samples": [1.0, 2.0]}'.encode("utf-16-le"), {}),
    ("UTF-16 with BOM", '{"samples": [1.0]}'.encode("utf-16"), {}),
    ("UTF-32", '{"samples": [1.0]}'.encode("utf-32-le"), {}),
    ("lone surrogate escape", b'{"samples": [1.0], "unit": "\\ud800"}', {}),
    ("control character in a string", b'{"samples": [1.0], "unit": "a\x01"}', {}),
    ("NUL after the document", b'{"samples": [1.0]}\x00', {}),
    ("trailing garbage", b'{"samples": [1.0]} x', {}),
    ("surrounding whitespace", b' \r\n\t{"samples": [1.0]} \n', {}),
    ("leading zero", b'{"samples": [01]}', {}),
    ("trailing comma", b'{"samples": [1.0],}', {}),
    ("single quotes", b"{'samples': [1.0]}", {}),
    ("bool among numbers", b'{"samples": [1.0, true]}', {}),
    ("bool in a channel", b'{"samples": [[1.0, 2.0], [false, 1.0]]}', {"channels": 2}),
    ("bool in an ignored key", b'{"samples": [1.0, 2.0], "flag": true, "other": false}', {}),
    ("null in samples", b'{"samples": [1.0, null]}', {}),
    ("ints and floats", b'{"seq": 3, "ts": 1700000000, "sample_rate_hz": 12000.0, "samples": [1, 2.5, -3]}', {}),
    ("random floats", b'{"samples": ' + NUMBERS + b"}", {}),
]


def outcome(payload: bytes | bytearray | memoryview, overrides: dict[str, Any]) -> tuple[Any, ...]:
    kwargs: dict[str, Any] = {
        "fmt": "json",
        "sensor": "s1",
        "expected_rate_hz": 12_000.0,
        "channels": 1,
        "received_at": 5.0,
        "wall_time": WALL,
    }
    kwargs.update(overrides)
    try:
        chunk = parse_payload(payload, **kwargs)
    except PayloadError as err:
        return ("rejected", err.reason, str(err))
    samples = chunk.samples
    return ("chunk", samples.dtype.str, samples.shape, samples.tobytes(), chunk.seq, type(chunk.seq), chunk.t0)


def standard_library_only(payload: bytes | bytearray | memoryview) -> Any:
    raise msgspec.DecodeError("forced: let json.loads decide")


@pytest.mark.parametrize(("payload", "overrides"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_same_outcome_as_the_standard_library(
    payload: bytes, overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = outcome(payload, overrides)
    monkeypatch.setattr(payloads, "_decode_json", standard_library_only)
    assert outcome(payload, overrides) == fast


def test_the_fast_decoder_decides_the_common_payload() -> None:
    """The differential test above means something only if msgspec really decodes these."""
    doc = {"seq": 1, "ts": WALL, "sample_rate_hz": 12000, "samples": np.linspace(-1, 1, 1024).tolist()}
    assert payloads._decode_json(json.dumps(doc).encode()) == doc


@pytest.mark.parametrize(
    ("payload", "reason", "message"),
    [
        (
            b'{"samples": [1, 1180591620717411303424]}',
            "bad_field",
            "samples must be numbers, or one list of numbers per channel",
        ),
        (b'{"samples": [1.0, NaN]}', "non_finite", "samples contain NaN or infinity"),
        (b'{"ts": 1e400, "samples": [1.0]}', "non_finite", "ts is not finite"),
        (deep(1030), "not_json", "not JSON (RecursionError)"),
        (b'{"samples": [1.0], "unit": "\xff"}', "not_json", "not JSON (UnicodeDecodeError)"),
        (b'{"samples": [1.0]} x', "not_json", "not JSON (JSONDecodeError)"),
        (b'{"samples": [1.0, true]}', "bad_field", "samples contain booleans"),
    ],
)
def test_reasons_and_messages_of_tricky_payloads(payload: bytes, reason: str, message: str) -> None:
    assert outcome(payload, {})[1:] == (reason, message)


def test_big_integer_seq_stays_an_exact_integer() -> None:
    chunk = parse_payload(
        b'{"seq": 1180591620717411303424, "samples": [1.0]}',
        fmt="json",
        sensor="s1",
        expected_rate_hz=12_000.0,
        channels=1,
        received_at=0.0,
    )
    assert chunk.seq == 2**70 and type(chunk.seq) is int


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_any_buffer_type_decodes_the_same(wrap: Any) -> None:
    payload = b'{"seq": 4, "samples": [1.0, 2.5], "flag": true}'
    assert outcome(wrap(payload), {}) == outcome(payload, {})
    bad = b'{"samples": [1.0, false]}'
    assert outcome(wrap(bad), {}) == ("rejected", "bad_field", "samples contain booleans")
