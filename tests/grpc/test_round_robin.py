"""The per-connection round-robin queue shared by the write window and the turns."""

from __future__ import annotations

import pytest

from broadcaster.grpc._round_robin import RoundRobin


def test_first_come_first_served_within_a_key_one_key_after_another() -> None:
    queue: RoundRobin[str] = RoundRobin()
    for item in ("a1", "a2", "a3", "b1", "c1", "b2"):
        queue.push(item[0], item)
    assert len(queue) == 6
    assert [queue.pop() for _ in range(6)] == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert not queue
    with pytest.raises(IndexError):
        queue.pop()


def test_remove_takes_an_item_and_an_emptied_key_out_of_the_turn() -> None:
    queue: RoundRobin[str] = RoundRobin()
    for item in ("a1", "b1", "b2", "c1"):
        queue.push(item[0], item)
    queue.remove("a", "a1")
    queue.remove("b", "b9")  # not there: nothing happens
    queue.remove("z", "z1")
    assert len(queue) == 3
    assert [queue.pop() for _ in range(3)] == ["b1", "c1", "b2"]
