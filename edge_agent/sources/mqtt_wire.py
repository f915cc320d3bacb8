"""What the agent and its MQTT receive process (``receive = "process"``) send each other over their pipe.

One ``send_bytes`` per frame, msgpack-encoded by ``msgspec`` (tagged structs, arrays on the wire):

- receive process -> agent: :class:`Batch` (the messages it kept, oldest first: sensor id, payload,
  ``time.monotonic()`` and ``time.time()`` at receipt; ``CLOCK_MONOTONIC`` is one clock for every
  process of the machine; and the change detector's marks since the previous batch) and
  :class:`Report` (counters since its previous report, its connection state; at least every
  ``REPORT_EVERY_S``, at once when the state changes);
- agent -> receive process: :class:`Shed` (the sensors whose messages it is to drop unparsed: those
  over their share of the full inference queue; and the suspects; sent when either changes),
  :class:`Credit` (the hops of sensor stream its inference queue has room for, cumulative; sent when it
  grows; each :class:`Batch` says what its messages were charged, edge_agent.sources.mqtt_gate) and
  :class:`Stop`.

:class:`ReceiverSpec` is what the receive process is started with (pickled by ``multiprocessing``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec

from edge_agent.config import MqttSection
from edge_agent.sources.mqtt_config import MqttSourceSection

logger = logging.getLogger(__name__)

Message = tuple[str, bytes, float, float]  # sensor, payload, received_at (monotonic), wall_time
REPORT_EVERY_S = 0.25  # the agent calls a receive process hung after HANG_S without a frame
HANG_S = 10.0
FLUSH_EVERY_S = 0.005  # a batch leaves at least this often while messages wait ...
BATCH_MESSAGES = 256  # ... or as soon as this many wait
BUFFER_BYTES = 16 * 1024 * 1024  # payload bytes of kept messages waiting for the pipe; past it: dropped (counted)


NO_GRANT = -1  # no Credit frame yet: no credit control


class Batch(msgspec.Struct, tag="b", array_like=True):
    messages: list[Message]
    marks: list[tuple[str, float]] = []  # (sensor, score): the change detector's marks, applied before the messages
    charged: int = 0  # hops of credit the receive process charged since its previous batch
    resumed: list[str] = []  # sensors whose next message here follows messages of theirs shed (applied first)


class Report(msgspec.Struct, tag="r", array_like=True):
    received: int = 0  # messages read off the broker
    foreign: int = 0  # another instance's sensors (instances > 1)
    shed: dict[str, int] = {}  # sensor -> messages dropped unparsed (the agent's Shed set)
    rejected: dict[str, int] = {}  # reason -> messages whose topic could not be admitted
    rejected_detail: dict[str, str] = {}  # reason -> the last such message's topic problem (for the log)
    overflow: int = 0  # kept messages dropped because the agent did not read them in time
    internal_errors: int = 0  # exceptions caught in its message callback
    connected: bool = False  # the broker connection
    subscribed: bool = False  # the broker accepted the subscription (source_up)
    torch_loaded: bool = False  # must stay False: the receive process never imports torch


class Shed(msgspec.Struct, tag="s", array_like=True):
    sensors: list[str]
    suspects: list[str] = []  # the agent's suspects now: their change baselines do not learn


class Credit(msgspec.Struct, tag="c", array_like=True):
    granted: int  # hops of credit granted to this receive process so far
    most: int  # the most the agent's queue holds (hops): a message that costs more leaves once this much is left


class Stop(msgspec.Struct, tag="x", array_like=True):
    pass


@dataclass(frozen=True)
class ReceiverSpec:
    """Everything the receive process needs: the sections, this instance, the sensors admitted so far."""

    section: MqttSourceSection
    mqtt: MqttSection
    password: str | None
    agent_id: str
    instance: int
    known: tuple[str, ...]  # sensors the agent admitted (max_sensors counts them after a restart)
    shed: tuple[str, ...] = ()
    log_level: int = logging.INFO
    window_bytes: int = 0  # a binary payload this long makes a window alone (0: JSON, or unknown)
    hop_bytes: int = 0  # a binary payload's bytes per hop: what it is charged (0: JSON, one hop a message)


ENCODE = msgspec.msgpack.Encoder().encode
TO_AGENT = msgspec.msgpack.Decoder(Batch | Report).decode
TO_RECEIVER = msgspec.msgpack.Decoder(Shed | Credit | Stop).decode
