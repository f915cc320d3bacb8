"""Sensor payloads from MQTT (JSON or raw little-endian frames) turned into :class:`Chunk` s.

JSON: ``{"seq": int, "ts": float, "sample_rate_hz": number, "samples": [x, ...] | [[ch0...], [ch1...]]}``.
``seq`` and ``ts`` (epoch seconds of the first sample) are optional; without ``ts`` the chunk is
placed so that its last sample ends at the receive time. ``sample_rate_hz`` may be left out when
the source's config gives the rate; if both are given they must agree. Values are in sensor units
(``scale`` applies to binary frames only); unknown keys are ignored (forward compatibility).

Binary (``f32le`` / ``i16le``): interleaved frames (ch0, ch1, ..., ch0, ch1, ...); rate and
channel count come from config, values are multiplied by ``scale``; no ``seq``, no ``ts``.

Every rejection is a :class:`PayloadError` whose ``reason`` is one of
:data:`edge_agent.metrics.PAYLOAD_ERROR_REASONS`; messages never contain the payload itself.

JSON is decoded with ``msgspec`` (about 3x faster than ``json.loads`` on a 1024-sample chunk; it
keeps integers exact, where ``orjson`` turns those beyond 64 bits into floats). Whatever ``msgspec``
refuses (``NaN``/``Infinity`` literals, ``1e400``, non-UTF-8, UTF-16/32, a BOM, lone surrogates,
deep nesting) goes to ``json.loads`` as before, so every accepted payload, reason and message is
what the standard library alone gives (but for nesting 995-998 levels deep, which msgspec's depth
limit still allows; tests/unit/test_payloads_decoder.py).

Binary frames from an immutable ``bytes`` payload with one channel and no scaling become a
read-only view of it (``np.frombuffer``, no copy); otherwise the samples are a fresh array.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import msgspec
import numpy as np

from edge_agent.metrics import PAYLOAD_ERROR_REASONS
from edge_agent.types import Chunk

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
FORMATS = ("json", "f32le", "i16le")
_BINARY_DTYPES = {"f32le": np.dtype("<f4"), "i16le": np.dtype("<i2")}


def window_bytes(fmt: str, rate_hz: float, channels: int, window_s: float) -> int:
    """Bytes of a binary payload of ``window_s`` seconds (0 for JSON, whose size says nothing of its samples)."""
    dtype = _BINARY_DTYPES.get(fmt)
    return 0 if dtype is None or window_s <= 0 else math.ceil(window_s * rate_hz) * channels * dtype.itemsize


_decode_json = msgspec.json.Decoder().decode  # untyped: dicts, lists, exact ints, like json.loads


class PayloadError(ValueError):
    """A payload that cannot become a chunk; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in PAYLOAD_ERROR_REASONS:
            raise ValueError(f"unknown payload error reason {reason!r}")
        super().__init__(message)
        self.reason = reason


def parse_payload(
    payload: bytes | bytearray | memoryview,
    *,
    fmt: str,
    sensor: str,
    expected_rate_hz: float,
    channels: int,
    scale: float = 1.0,
    received_at: float,
    wall_time: float | None = None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Chunk:
    """Decode one message into a float32 ``(channels, n)`` chunk or raise :class:`PayloadError`.

    ``expected_rate_hz`` is the configured rate (``0``: JSON must carry it; binary needs it).
    ``received_at`` is ``time.monotonic()`` at receipt (kept in the chunk for latency);
    ``wall_time`` is ``time.time()`` at receipt (default: now), used when the payload has no ``ts``.
    Raises plain ``ValueError`` for a bad *configuration* (unknown format, channels < 1, ...).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if len(payload) > max_bytes:  # before any parsing: a huge payload costs nothing more
        raise PayloadError("too_large", f"payload of {len(payload)} bytes exceeds the limit of {max_bytes}")
    if len(payload) == 0:
        raise PayloadError("empty", "empty payload")
    now = time.time() if wall_time is None else wall_time
    if fmt == "json":
        return _parse_json(payload, sensor, expected_rate_hz, channels, received_at, now)
    return _parse_binary(payload, fmt, sensor, expected_rate_hz, channels, scale, received_at, now)


def _parse_json(
    payload: bytes | bytearray | memoryview,
    sensor: str,
    expected_rate_hz: float,
    channels: int,
    received_at: float,
    now: float,
) -> Chunk:
    doc = _loads(payload)
    if not isinstance(doc, dict):
        raise PayloadError("not_json", f"JSON value is a {type(doc).__name__}, not an object")
    seq = doc.get("seq")
    if seq is not None and (not _is_int(seq) or seq < 0):
        raise PayloadError("bad_field", f"seq must be a non-negative integer, got {type(seq).__name__}")
    rate = _json_rate(doc.get("sample_rate_hz"), expected_rate_hz)
    samples = _json_samples(doc.get("samples"), payload, channels)
    if samples.shape[1] == 0:
        raise PayloadError("empty", "samples is empty")
    if not np.isfinite(samples).all():
        raise PayloadError("non_finite", "samples contain NaN or infinity")
    ts = doc.get("ts")
    if ts is None:
        t0 = now - samples.shape[1] / rate
    else:
        t0 = _finite_number(ts, "ts")
    return Chunk(
        sensor=sensor,
        t0=t0,
        sample_rate_hz=rate,
        samples=samples,
        seq=seq,
        received_at=received_at,
        t0_estimated=ts is None,
    )


def _loads(payload: bytes | bytearray | memoryview) -> Any:
    """The decoded document: ``msgspec``, or ``json.loads`` (its reasons) for whatever ``msgspec`` refuses."""
    try:
        return _decode_json(payload)
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        return json.loads(bytes(payload))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, "[[[[..." nesting
        raise PayloadError("not_json", f"not JSON ({type(exc).__name__})") from None


def _json_rate(value: Any, expected_rate_hz: float) -> float:
    if value is None:
        if expected_rate_hz <= 0:
            raise PayloadError("bad_field", "sample_rate_hz missing and not configured")
        return float(expected_rate_hz)
    rate = _finite_number(value, "sample_rate_hz")
    if rate <= 0:
        raise PayloadError("bad_field", "sample_rate_hz must be positive")
    if expected_rate_hz > 0 and not math.isclose(rate, expected_rate_hz, rel_tol=1e-9):
        raise PayloadError("wrong_rate", f"sample_rate_hz {rate:g} differs from the configured {expected_rate_hz:g}")
    return rate


def _json_samples(value: Any, payload: bytes | bytearray | memoryview, channels: int) -> np.ndarray:
    if not isinstance(value, list):
        raise PayloadError("bad_field", f"samples must be a list, got {type(value).__name__}")
    if not value:
        raise PayloadError("empty", "samples is empty")
    nested = bool(value) and all(isinstance(v, list) for v in value)
    try:
        arr = np.asarray(value)
    except ValueError:  # numpy refuses inhomogeneous shapes
        if nested:
            raise PayloadError("wrong_channels", "channels have different lengths") from None
        raise PayloadError("bad_field", "samples mix numbers and lists") from None
    if arr.dtype.kind not in "iuf" or arr.ndim > 2:
        raise PayloadError("bad_field", "samples must be numbers, or one list of numbers per channel")
    # numpy turns booleans mixed with numbers into 1/0 silently; JSON booleans only exist as these
    # literals, so the (slow) element check runs only when one appears somewhere in the payload
    # (first a one-byte search: "true" has a "u", "false" an "f"; no number or standard key has either).
    if _may_hold_bool(payload) and _has_bool(value):
        raise PayloadError("bad_field", "samples contain booleans")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.shape[0] != channels:
        raise PayloadError("wrong_channels", f"{arr.shape[0]} channels, configured {channels}")
    with np.errstate(over="ignore"):  # overflow becomes inf, rejected as non_finite by the caller
        return np.ascontiguousarray(arr, dtype=np.float32)


def _may_hold_bool(payload: bytes | bytearray | memoryview) -> bool:
    raw = payload if isinstance(payload, bytes | bytearray) else bytes(payload)
    return (b"u" in raw or b"f" in raw) and (b"true" in raw or b"false" in raw)


def _has_bool(samples: list[Any]) -> bool:
    return any(type(v) is bool or (isinstance(v, list) and any(type(x) is bool for x in v)) for v in samples)


def _parse_binary(
    payload: bytes | bytearray | memoryview,
    fmt: str,
    sensor: str,
    rate: float,
    channels: int,
    scale: float,
    received_at: float,
    now: float,
) -> Chunk:
    if rate <= 0:
        raise ValueError(f"format {fmt} needs a configured sample_rate_hz > 0, got {rate}")
    dtype = _BINARY_DTYPES[fmt]
    frame_bytes = channels * dtype.itemsize
    if len(payload) % frame_bytes:
        raise PayloadError("bad_length", f"{len(payload)} bytes is not a multiple of the {frame_bytes}-byte frame")
    frames = np.frombuffer(payload, dtype=dtype).reshape(-1, channels).T
    if type(payload) is bytes and channels == 1 and scale == 1.0 and dtype == np.float32:
        samples = frames.reshape(1, -1)  # a read-only view of an immutable payload: no copy needed
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            samples = np.array(frames, dtype=np.float32, order="C")  # a copy: never alias a mutable payload
            if scale != 1.0:
                samples *= np.float32(scale)
    if not np.isfinite(samples).all():
        raise PayloadError("non_finite", "samples contain NaN or infinity")
    t0 = now - samples.shape[1] / rate
    return Chunk(
        sensor=sensor,
        t0=t0,
        sample_rate_hz=float(rate),
        samples=samples,
        seq=None,
        received_at=received_at,
        t0_estimated=True,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("bad_field", f"{name} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise PayloadError("non_finite", f"{name} is not finite")
    return number
