"""parse_payload: every rejection reason and the happy paths, table-driven; RateLimitedLog."""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

import numpy as np
import pytest

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.metrics import PAYLOAD_ERROR_REASONS
from edge_agent.sources.payloads import PayloadError, parse_payload

WALL = 1_700_000_000.0


def parse(payload: bytes, **overrides: Any):
    kwargs: dict[str, Any] = {
        "fmt": "json",
        "sensor": "s1",
        "expected_rate_hz": 12_000.0,
        "channels": 1,
        "scale": 1.0,
        "received_at": 5.0,
        "wall_time": WALL,
    }
    kwargs.update(overrides)
    return parse_payload(payload, **kwargs)


def js(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# (case id, payload, parse_payload overrides, expected reason)
REJECTED = [
    ("garbage", b"not json {", {}, "not_json"),
    ("truncated", b'{"samples": [1, 2', {}, "not_json"),
    ("invalid utf-8", b"\xff\xfe\x00{", {}, "not_json"),
    ("array, not object", b"[1, 2, 3]", {}, "not_json"),
    ("number, not object", b"42", {}, "not_json"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, {}, "not_json"),
    ("samples missing", js({"seq": 1}), {}, "bad_field"),
    ("samples a string", js({"samples": "1,2,3"}), {}, "bad_field"),
    ("samples an object", js({"samples": {"a": 1}}), {}, "bad_field"),
    ("string in samples", js({"samples": [1.0, "2.0", 3.0]}), {}, "bad_field"),
    ("null in samples", js({"samples": [1.0, None]}), {}, "bad_field"),
    ("bool in samples", js({"samples": [1.0, True, 3.0]}), {}, "bad_field"),
    ("all bools", js({"samples": [True, False]}), {}, "bad_field"),
    ("bool in a channel", js({"samples": [[1.0, 2.0], [False, 1.0]]}), {"channels": 2}, "bad_field"),
    ("object in samples", js({"samples": [1.0, {"x": 1}]}), {}, "bad_field"),
    ("number and list mixed", js({"samples": [1.0, [2.0]]}), {}, "bad_field"),
    ("three levels", js({"samples": [[[1.0]]]}), {}, "bad_field"),
    ("huge integer", b'{"samples": [1' + b"0" * 400 + b"]}", {}, "bad_field"),
    ("seq a string", js({"seq": "7", "samples": [1.0]}), {}, "bad_field"),
    ("seq a bool", js({"seq": True, "samples": [1.0]}), {}, "bad_field"),
    ("seq a float", js({"seq": 7.5, "samples": [1.0]}), {}, "bad_field"),
    ("seq negative", js({"seq": -1, "samples": [1.0]}), {}, "bad_field"),
    ("ts a string", js({"ts": "2026-01-01", "samples": [1.0]}), {}, "bad_field"),
    ("ts a bool", js({"ts": True, "samples": [1.0]}), {}, "bad_field"),
    ("rate a bool", js({"sample_rate_hz": True, "samples": [1.0]}), {"expected_rate_hz": 0.0}, "bad_field"),
    ("rate a string", js({"sample_rate_hz": "12000", "samples": [1.0]}), {}, "bad_field"),
    ("rate zero", js({"sample_rate_hz": 0, "samples": [1.0]}), {"expected_rate_hz": 0.0}, "bad_field"),
    ("rate missing, not configured", js({"samples": [1.0]}), {"expected_rate_hz": 0.0}, "bad_field"),
    ("NaN sample", b'{"samples": [1.0, NaN]}', {}, "non_finite"),
    ("Infinity sample", b'{"samples": [Infinity, 1.0]}', {}, "non_finite"),
    ("-Infinity in a channel", b'{"samples": [[1.0], [-Infinity]]}', {"channels": 2}, "non_finite"),
    ("overflowing literal", b'{"samples": [1e400]}', {}, "non_finite"),
    ("beyond float32", b'{"samples": [1e39]}', {}, "non_finite"),
    ("NaN ts", b'{"ts": NaN, "samples": [1.0]}', {}, "non_finite"),
    ("NaN rate", b'{"sample_rate_hz": NaN, "samples": [1.0]}', {}, "non_finite"),
    ("empty payload", b"", {}, "empty"),
    ("empty samples", js({"samples": []}), {}, "empty"),
    ("empty channels", js({"samples": [[], []]}), {"channels": 2}, "empty"),
    ("over max_bytes", js({"samples": [0.0] * 100}), {"max_bytes": 64}, "too_large"),
    ("10 MB", b'{"samples": [' + b"0," * 5_000_000 + b"0]}", {}, "too_large"),
    ("2 channels, configured 1", js({"samples": [[1.0, 2.0], [3.0, 4.0]]}), {}, "wrong_channels"),
    ("1 channel, configured 2", js({"samples": [1.0, 2.0]}), {"channels": 2}, "wrong_channels"),
    ("ragged channels", js({"samples": [[1.0, 2.0], [3.0]]}), {"channels": 2}, "wrong_channels"),
    ("rate differs", js({"sample_rate_hz": 8000, "samples": [1.0]}), {}, "wrong_rate"),
    ("f32 length", b"\x00" * 6, {"fmt": "f32le"}, "bad_length"),
    ("f32 frame length", b"\x00" * 12, {"fmt": "f32le", "channels": 2}, "bad_length"),
    ("i16 odd length", b"\x00" * 3, {"fmt": "i16le"}, "bad_length"),
    ("i16 frame length", b"\x00" * 8, {"fmt": "i16le", "channels": 3}, "bad_length"),
    ("f32 NaN", struct.pack("<2f", 1.0, float("nan")), {"fmt": "f32le"}, "non_finite"),
    ("f32 inf", struct.pack("<2f", float("inf"), 1.0), {"fmt": "f32le"}, "non_finite"),
    ("f32 scaled past float32", struct.pack("<f", 3e38), {"fmt": "f32le", "scale": 10.0}, "non_finite"),
    ("binary empty", b"", {"fmt": "i16le"}, "empty"),
    ("binary too large", b"\x00" * 1024, {"fmt": "i16le", "max_bytes": 1000}, "too_large"),
]


@pytest.mark.parametrize(("payload", "overrides", "reason"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected_payloads_name_their_reason(payload: bytes, overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(payload, **overrides)
    assert caught.value.reason == reason
    assert str(caught.value)


def test_every_parse_reason_is_covered_and_known() -> None:
    reasons = {c[3] for c in REJECTED}
    assert reasons <= set(PAYLOAD_ERROR_REASONS)
    # the remaining reasons are decided by the source (the topic's sensor id), not by the payload
    assert set(PAYLOAD_ERROR_REASONS) - reasons == {"unknown_sensor", "too_many_sensors", "bad_sensor_id"}


def test_error_messages_do_not_echo_the_payload() -> None:
    with pytest.raises(PayloadError) as caught:
        parse(js({"samples": [1.0, "secret-token-123"]}))
    assert "secret" not in str(caught.value)


def test_unknown_reason_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown payload error reason"):
        PayloadError("nope", "x")


@pytest.mark.parametrize(
    "overrides",
    [{"fmt": "xml"}, {"channels": 0}, {"fmt": "f32le", "expected_rate_hz": 0.0}],
    ids=["format", "channels", "binary without rate"],
)
def test_configuration_errors_are_plain_value_errors(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        parse(b"\x00\x00\x00\x00", **overrides)
    assert not isinstance(caught.value, PayloadError)


# (case id, payload, overrides, expected samples (channels, n), seq, t0)
ACCEPTED = [
    (
        "flat",
        js({"seq": 7, "ts": 1.5e9, "sample_rate_hz": 12000, "samples": [0.5, -1, 2]}),
        {},
        [[0.5, -1, 2]],
        7,
        1.5e9,
    ),
    ("no seq, no ts", js({"samples": [1, 2, 3, 4]}), {}, [[1, 2, 3, 4]], None, WALL - 4 / 12_000),
    (
        "two channels, rate from payload",
        js({"sample_rate_hz": 100.0, "samples": [[1, 2], [3, 4]]}),
        {"channels": 2, "expected_rate_hz": 0.0},
        [[1, 2], [3, 4]],
        None,
        WALL - 2 / 100,
    ),
    ("extra keys ignored", js({"samples": [1], "unit": "g", "flag": True}), {}, [[1]], None, WALL - 1 / 12_000),
    ("integer ts", js({"ts": 1700000000, "samples": [1]}), {}, [[1]], None, 1_700_000_000.0),
    (
        "f32le interleaved",
        struct.pack("<6f", 1, 10, 2, 20, 3, 30),
        {"fmt": "f32le", "channels": 2, "scale": 0.5},
        [[0.5, 1, 1.5], [5, 10, 15]],
        None,
        WALL - 3 / 12_000,
    ),
    (
        "i16le three channels",
        struct.pack("<6h", 1, -2, 32767, -32768, 0, 100),
        {"fmt": "i16le", "channels": 3, "scale": 0.001},
        [[0.001, -32.768], [-0.002, 0], [32.767, 0.1]],
        None,
        WALL - 2 / 12_000,
    ),
]


@pytest.mark.parametrize(
    ("payload", "overrides", "expected", "seq", "t0"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_accepted_payloads(
    payload: bytes, overrides: dict[str, Any], expected: Any, seq: int | None, t0: float
) -> None:
    chunk = parse(payload, **overrides)
    want = np.asarray(expected, dtype=np.float32)
    assert chunk.sensor == "s1"
    assert chunk.samples.dtype == np.float32
    assert chunk.samples.flags.c_contiguous
    assert chunk.samples.shape == want.shape
    np.testing.assert_allclose(chunk.samples, want, rtol=1e-6)
    assert chunk.seq == seq
    assert chunk.t0 == pytest.approx(t0, abs=1e-9)
    assert chunk.received_at == 5.0
    assert chunk.sample_rate_hz == (overrides.get("expected_rate_hz") or 12_000.0) or chunk.sample_rate_hz == 100.0


def test_binary_chunk_does_not_alias_the_payload() -> None:
    raw = bytearray(struct.pack("<2f", 1.0, 2.0))
    chunk = parse(raw, fmt="f32le")
    raw[:4] = struct.pack("<f", 99.0)
    assert chunk.samples[0, 0] == 1.0


def test_binary_chunk_of_immutable_bytes_is_a_read_only_view_without_copy() -> None:
    raw = struct.pack("<3f", 1.0, 2.0, 3.0)
    chunk = parse(raw, fmt="f32le")
    assert np.shares_memory(chunk.samples, np.frombuffer(raw, "<f4"))
    assert not chunk.samples.flags.writeable
    np.testing.assert_array_equal(chunk.samples, [[1.0, 2.0, 3.0]])
    for overrides in ({"scale": 2.0}, {"channels": 3}):  # scaled or interleaved: a fresh, writable array
        other = parse(raw, fmt="f32le", **overrides)
        assert not np.shares_memory(other.samples, np.frombuffer(raw, "<f4"))
        assert other.samples.flags.writeable


def test_large_payload_is_fast_enough() -> None:
    """A 1024-sample JSON chunk (a typical hop) parses in well under a millisecond on average."""
    import time

    payload = js(
        {"seq": 1, "ts": WALL, "sample_rate_hz": 12000, "samples": np.random.default_rng(0).random(1024).tolist()}
    )
    start = time.perf_counter()
    for _ in range(200):
        parse(payload)
    per_call_s = (time.perf_counter() - start) / 200
    assert per_call_s < 0.005  # generous: a loaded 2-core CI box; ~0.3 ms measured idle


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limited_log_once_per_interval_with_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), interval_s=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        assert log.warning("a", "bad %s", "x")
        for _ in range(5):
            clock.now += 10
            assert not log.warning("a", "bad %s", "x")
        assert log.warning("b", "other key %d", 1)  # keys are independent
        clock.now = 61
        assert log.warning("a", "bad %s", "y")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["bad x", "other key 1", "bad y (5 similar suppressed in the last 60 s)"]


@pytest.mark.parametrize(
    ("payload", "overrides", "estimated"),
    [
        (js({"ts": WALL, "samples": [1.0, 2.0]}), {}, False),
        (js({"samples": [1.0, 2.0]}), {}, True),
        (np.ones(4, "<f4").tobytes(), {"fmt": "f32le"}, True),
        (np.ones(4, "<i2").tobytes(), {"fmt": "i16le"}, True),
    ],
)
def test_chunks_without_a_sender_time_are_marked_estimated(payload: bytes, overrides: dict, estimated: bool) -> None:
    assert parse(payload, **overrides).t0_estimated is estimated
