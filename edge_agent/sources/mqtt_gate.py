"""Which of a receive process's messages leave for the agent now, and which wait (``receive = "process"``).

:class:`Gate` holds two stores of messages, each keeping only a sensor's newest (``HELD_MESSAGES``, or the
newest alone when one message makes a window; the older ones are shed, counted per sensor):

- **shed**: the sensors of the agent's latest shed set (over their share of its full inference queue); a
  sensor leaving the set moves its messages to the end of the credit queue, so its next window is made of
  its newest samples;
- **credit**: every other message once the agent grants credit (``grant``, cumulative hops of sensor
  stream its inference queue has room for; -1 until the first grant: no credit control). A message waits
  at the end of a first-in, first-out queue of sensors and leaves when the sensors before it have left
  and credit remains: a sensor with messages waiting keeps its place, so under overload the sensors take
  turns (round-robin), each keeps its newest samples, and what the agent is sent is what its queue takes,
  not messages that would displace other sensors' waiting windows. The front leaves when the credit
  left covers its messages (or the most the agent's queue holds: a message larger than the whole queue
  leaves on a full credit instead of blocking the others).

A change (the detector's mark) and a suspect's message bypass both (the agent serves suspects first);
they are charged all the same. Both stores together hold at most ``max_bytes`` of payload (past it the
new message is shed). A sensor with messages shed since its last message left is in ``after_shed``:
:attr:`resumed` names those whose next message left, so the agent knows that the jump in their stream is
its own doing (not a stream gap to report, not the sender's rate). Not thread-safe: the receive process
calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from edge_agent.sources.mqtt_wire import NO_GRANT, Message

UNBOUNDED = 1 << 62
HELD_MESSAGES = 2  # per waiting sensor: one window where a message is one hop (window = 2 hops)


class Gate:
    """A receive process's shed set, credit and waiting messages (see the module)."""

    def __init__(self, *, window_bytes: int, hop_bytes: int, max_bytes: int, shed: frozenset[str]) -> None:
        self.shed_set = shed
        self.suspects: frozenset[str] = frozenset()
        self.shed_counts: dict[str, int] = {}  # sensor -> messages shed (cumulative)
        self.after_shed: set[str] = set()  # sensors with messages shed since their last one left
        self.resumed: list[str] = []  # those of them whose next message left since the receiver last took these
        self.charged = 0  # hops of the messages let through (cumulative)
        self._granted = NO_GRANT
        self._most = UNBOUNDED  # the most the agent's queue holds (hops)
        self._window_bytes = window_bytes or max_bytes + 1  # a message this long makes a window alone
        self._hop_bytes = hop_bytes  # 0: a message is charged one hop (JSON)
        self._max_bytes = max_bytes
        self._bytes = 0  # payload bytes in both stores
        self._shed: dict[str, deque[Message]] = {}
        self._credit: OrderedDict[str, deque[Message]] = OrderedDict()

    @property
    def waiting_bytes(self) -> int:
        return self._bytes

    def offer(self, message: Message, *, urgent: bool = False) -> list[Message]:
        """``message`` arrived: the messages to send now, oldest first (possibly none, possibly others')."""
        sensor = message[0]
        if urgent or sensor in self.suspects:
            out = self._take(self._shed, sensor) + self._take(self._credit, sensor) + [message]
            self._charge(out)
            return out
        if sensor in self.shed_set:
            self._hold(self._shed, message)
            return []
        if self._granted == NO_GRANT and not self._credit:
            self._charge([message])
            return [message]
        self._hold(self._credit, message)
        return self._pump()

    def grant(self, granted: int, most: int = UNBOUNDED) -> list[Message]:
        """The agent's cumulative credit (hops; ``most``: what its queue holds): the messages it lets go now."""
        self._granted = max(self._granted, granted)
        self._most = max(1, most)
        return self._pump()

    def apply_shed(self, sensors: frozenset[str], suspects: frozenset[str] | None = None) -> list[Message]:
        """The agent's new shed set: the sensors that left it queue for credit (their newest first in line)."""
        self.shed_set = sensors
        if suspects is not None:
            self.suspects = suspects
        for sensor in [sensor for sensor in self._shed if sensor not in sensors]:
            for message in self._shed.pop(sensor):
                self._bytes -= len(message[1])
                self._hold(self._credit, message)
        return self._pump()

    def drain(self) -> list[Message]:
        """Everything waiting, credit or not (a clean stop: these messages were accepted)."""
        out = [m for store in (self._shed, self._credit) for held in store.values() for m in held]
        self._shed.clear()
        self._credit.clear()
        self._bytes = 0
        self._charge(out)
        return out

    def _pump(self) -> list[Message]:
        out: list[Message] = []
        controlled = self._granted != NO_GRANT
        while self._credit:
            if controlled:
                sensor = next(iter(self._credit))
                if self._granted - self.charged < min(self._cost(self._credit[sensor]), self._most):
                    break
            _sensor, held = self._credit.popitem(last=False)
            for message in held:
                self._bytes -= len(message[1])
            self._charge(held)
            out.extend(held)
        return out

    def _hold(self, store: dict[str, deque[Message]], message: Message) -> None:
        sensor, body = message[0], message[1]
        held = store.get(sensor)
        if held is None:
            held = store[sensor] = deque()
        while held and (len(held) >= HELD_MESSAGES or len(body) >= self._window_bytes):  # the older ones go
            self._bytes -= len(held.popleft()[1])
            self._count_shed(sensor)
        if self._bytes + len(body) > self._max_bytes:
            self._count_shed(sensor)
            if not held:
                del store[sensor]
            return
        held.append(message)
        self._bytes += len(body)

    def _take(self, store: dict[str, deque[Message]], sensor: str) -> list[Message]:
        held = store.pop(sensor, ())
        for message in held:
            self._bytes -= len(message[1])
        return list(held)

    def _cost(self, messages: list[Message] | deque[Message]) -> int:
        hop = self._hop_bytes
        return sum(max(1, len(m[1]) // hop) for m in messages) if hop else len(messages)

    def _charge(self, messages: list[Message] | deque[Message]) -> None:
        """``messages`` leave: charged; a sensor in ``after_shed`` moves to ``resumed``."""
        self.charged += self._cost(messages)
        if self.after_shed:
            for sensor in {m[0] for m in messages} & self.after_shed:
                self.after_shed.discard(sensor)
                self.resumed.append(sensor)

    def dropped(self, sensor: str) -> None:
        """A message of ``sensor`` that left was dropped after all (the receiver's buffer was full): its next
        message follows a jump too."""
        self.after_shed.add(sensor)

    def _count_shed(self, sensor: str) -> None:
        self.shed_counts[sensor] = self.shed_counts.get(sensor, 0) + 1
        self.after_shed.add(sensor)
