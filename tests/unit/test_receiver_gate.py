"""The receive process's gate (edge_agent.sources.mqtt_gate): the agent's credit decides what leaves,
the sensors waiting for it take turns, each keeps its newest messages, and nothing accepted is lost
without being counted."""

from __future__ import annotations

from edge_agent.sources.mqtt_gate import HELD_MESSAGES, Gate
from edge_agent.sources.mqtt_wire import Message

HOP_BYTES = 16  # a binary hop: 4 float32 samples


def gate(hop_bytes: int = 0, window_bytes: int = 0, max_bytes: int = 1 << 20) -> Gate:
    return Gate(window_bytes=window_bytes, hop_bytes=hop_bytes, max_bytes=max_bytes, shed=frozenset())


def message(sensor: str, k: int, size: int = 8) -> Message:
    return (sensor, bytes([k % 256]) * size, float(k), 1000.0 + k)


def names(messages: list[Message]) -> list[tuple[str, int]]:
    return [(m[0], m[1][0]) for m in messages]


def test_without_credit_control_every_message_leaves_at_once_and_is_charged() -> None:
    g = gate()
    assert names(g.offer(message("a", 1))) == [("a", 1)]
    assert names(g.offer(message("b", 2))) == [("b", 2)]
    assert g.charged == 2 and g.waiting_bytes == 0


def test_without_credit_the_sensors_wait_in_turn_with_their_newest_messages() -> None:
    g = gate()
    assert g.grant(0) == []
    for k in range(5):  # a floods, b and c send one each after a started waiting
        assert g.offer(message("a", k)) == []
    assert g.offer(message("b", 10)) == [] and g.offer(message("c", 20)) == []
    assert g.offer(message("a", 5)) == []  # a keeps its place at the front, with its newest messages
    assert g.shed_counts == {"a": 6 - HELD_MESSAGES}
    assert g.grant(1) == []  # a's two messages cost two hops: the front waits, and so does everyone behind it
    assert names(g.grant(2)) == [("a", 4), ("a", 5)]
    assert names(g.grant(3)) == [("b", 10)]
    assert names(g.grant(4)) == [("c", 20)]
    assert g.grant(5) == [] and g.charged == 4 and g.waiting_bytes == 0
    assert names(g.offer(message("b", 11))) == [("b", 11)]  # credit left and nobody waiting: at once


def test_a_sensor_served_goes_to_the_back_of_the_line() -> None:
    g = gate()
    g.grant(0)
    for sensor in "abc":
        g.offer(message(sensor, 1))
    assert names(g.grant(1)) == [("a", 1)]
    g.offer(message("a", 2))  # a waits again, behind b and c
    assert names(g.grant(4)) == [("b", 1), ("c", 1), ("a", 2)]


def test_a_binary_message_is_charged_its_hops_and_a_window_alone_keeps_only_the_newest() -> None:
    g = gate(hop_bytes=HOP_BYTES, window_bytes=2 * HOP_BYTES)
    g.grant(0)
    for k in range(3):  # 8 hops each: each is a window alone
        g.offer(message("a", k, size=8 * HOP_BYTES))
    assert g.shed_counts == {"a": 2}
    assert g.grant(7) == []
    assert names(g.grant(8)) == [("a", 2)]
    assert g.charged == 8
    g.offer(message("b", 0, size=8 * HOP_BYTES))
    assert g.grant(15) == []
    assert names(g.grant(16)) == [("b", 0)]


def test_a_message_larger_than_the_agents_whole_queue_leaves_on_a_full_credit_instead_of_blocking() -> None:
    g = gate(hop_bytes=HOP_BYTES)
    g.grant(0, most=4)
    g.offer(message("huge", 0, size=100 * HOP_BYTES))  # 100 hops: more than the queue's 4
    g.offer(message("b", 0, size=HOP_BYTES))
    assert g.grant(3, most=4) == []
    assert names(g.grant(4, most=4)) == [("huge", 0)]
    assert g.charged == 100
    assert names(g.grant(101, most=4)) == [("b", 0)]


def test_a_change_or_a_suspect_bypasses_the_line_with_its_waiting_messages_first() -> None:
    g = gate()
    g.grant(0)
    g.offer(message("a", 1))
    g.offer(message("b", 1))
    assert names(g.offer(message("b", 2), urgent=True)) == [("b", 1), ("b", 2)]
    g.apply_shed(frozenset(), frozenset({"c"}))
    assert names(g.offer(message("c", 1))) == [("c", 1)]
    assert g.charged == 3  # charged all the same: the agent's credit counts them
    assert names(g.grant(4)) == [("a", 1)]


def test_the_shed_set_holds_its_sensors_until_they_leave_it_then_they_queue_for_credit() -> None:
    g = gate()
    g.apply_shed(frozenset({"a"}))
    for k in range(4):
        assert g.offer(message("a", k)) == []
    assert g.grant(100) == []  # credit does not release a shed sensor
    assert names(g.offer(message("b", 1))) == [("b", 1)]
    assert names(g.apply_shed(frozenset())) == [("a", 2), ("a", 3)]
    assert g.shed_counts == {"a": 2}


def test_the_waiting_bytes_are_bounded_and_a_message_past_the_bound_is_shed_and_counted() -> None:
    g = gate(max_bytes=20)
    g.grant(0)
    g.offer(message("a", 1, size=8))
    g.offer(message("b", 1, size=8))
    g.offer(message("c", 1, size=8))  # 24 > 20 bytes: c's message is shed
    assert g.shed_counts == {"c": 1} and g.waiting_bytes == 16
    assert names(g.grant(10)) == [("a", 1), ("b", 1)]


def test_a_clean_stop_drains_everything_waiting_credit_or_not() -> None:
    g = gate()
    g.grant(0)
    g.apply_shed(frozenset({"a"}))
    g.offer(message("a", 1))
    g.offer(message("b", 1))
    assert sorted(names(g.drain())) == [("a", 1), ("b", 1)]
    assert g.waiting_bytes == 0 and g.charged == 2


def test_a_sensor_whose_messages_were_shed_is_named_when_its_next_message_leaves() -> None:
    """The agent is told that such a sensor's stream jumps by its own shedding (not a stream gap to report, and
    what arrived before says nothing of the sender's rate); a sensor never shed is not named."""
    g = gate()
    assert g.grant(0) == []
    for k in range(4):  # a waits: its two oldest are shed
        g.offer(message("a", k))
    g.offer(message("b", 10))
    assert g.shed_counts == {"a": 2} and g.resumed == []
    assert names(g.grant(2)) == [("a", 2), ("a", 3)]
    assert g.resumed == ["a"] and g.after_shed == set()
    g.resumed.clear()
    assert names(g.grant(3)) == [("b", 10)]
    assert g.resumed == []
    assert g.grant(4) == []  # (cumulative) one hop left
    assert names(g.offer(message("a", 4))) == [("a", 4)]  # a continues, nothing shed in between
    assert g.resumed == []


def test_a_message_dropped_after_it_left_names_its_sensor_with_the_next_one() -> None:
    """The receiver's buffer overflowed (``dropped``): the sensor's next message follows a jump as well."""
    g = gate()
    assert names(g.offer(message("a", 1))) == [("a", 1)]
    g.dropped("a")
    assert g.resumed == []
    assert names(g.offer(message("a", 2))) == [("a", 2)]
    assert g.resumed == ["a"]
