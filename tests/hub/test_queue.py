"""Tests of the outgoing queue: byte bound, FIFO order, batches, conflation (with properties)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsend.hub.queue import OutgoingQueue


def drain(queue: OutgoingQueue) -> list[bytes]:
    return queue.pop_batch(1 << 30)


def test_fifo_and_size() -> None:
    queue = OutgoingQueue(100)
    assert queue.push(b"aa")
    assert queue.push(b"bbb")
    assert len(queue) == 2
    assert queue.size_bytes == 5
    assert drain(queue) == [b"aa", b"bbb"]
    assert queue.size_bytes == 0
    assert len(queue) == 0
    assert drain(queue) == []


def test_bound_refuses_without_queueing() -> None:
    queue = OutgoingQueue(10)
    assert queue.push(b"x" * 6)
    assert not queue.push(b"y" * 5)
    assert queue.push(b"z" * 4)
    assert queue.size_bytes == 10
    assert not queue.push(b"!")
    assert drain(queue) == [b"x" * 6, b"z" * 4]


def test_item_larger_than_bound() -> None:
    assert not OutgoingQueue(3).push(b"four")


def test_pop_batch_by_bytes() -> None:
    queue = OutgoingQueue(100)
    for item in (b"a" * 4, b"b" * 4, b"c" * 4):
        queue.push(item)
    assert queue.pop_batch(8) == [b"a" * 4, b"b" * 4]
    assert queue.pop_batch(1) == [b"c" * 4]  # at least one item, even if larger


def test_conflation_replaces_in_place() -> None:
    queue = OutgoingQueue(100)
    queue.push(b"A1", channel="t", key="A", conflate=True)
    queue.push(b"B1", channel="t", key="B", conflate=True)
    queue.push(b"reply")
    queue.push(b"A2", channel="t", key="A", conflate=True)
    assert len(queue) == 3
    assert queue.size_bytes == 9
    assert drain(queue) == [b"A2", b"B1", b"reply"]


def test_conflation_per_channel_and_flag() -> None:
    queue = OutgoingQueue(100)
    queue.push(b"1", channel="x", key="k", conflate=True)
    queue.push(b"2", channel="y", key="k", conflate=True)
    queue.push(b"3", channel="x", key="k")  # not conflatable: appended
    queue.push(b"4", channel="x", key=None, conflate=True)
    queue.push(b"5", channel="x", key=None, conflate=True)
    assert drain(queue) == [b"1", b"2", b"3", b"5"]


def test_conflation_after_pop_starts_fresh() -> None:
    queue = OutgoingQueue(100)
    queue.push(b"A1", channel="t", key="A", conflate=True)
    assert drain(queue) == [b"A1"]
    queue.push(b"B1", channel="t", key="B", conflate=True)
    queue.push(b"A2", channel="t", key="A", conflate=True)
    assert drain(queue) == [b"B1", b"A2"]


def test_conflation_counts_replaced_size() -> None:
    queue = OutgoingQueue(10)
    assert queue.push(b"x" * 8, channel="t", key="k", conflate=True)
    assert queue.push(b"y" * 10, channel="t", key="k", conflate=True)
    assert queue.size_bytes == 10
    assert not queue.push(b"z" * 11, channel="t", key="k", conflate=True)
    assert drain(queue) == [b"y" * 10]


def test_clear() -> None:
    queue = OutgoingQueue(10)
    queue.push(b"a", channel="t", key="k", conflate=True)
    queue.clear()
    assert (len(queue), queue.size_bytes) == (0, 0)
    queue.push(b"b", channel="t", key="k", conflate=True)
    assert drain(queue) == [b"b"]


def test_invalid_bound() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        OutgoingQueue(0)


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("push"),
            st.integers(1, 40),
            st.sampled_from(["a", "b"]),
            st.sampled_from(["k1", "k2", "k3", None]),
            st.booleans(),
        ),
        st.tuples(st.just("pop"), st.integers(0, 80)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 100), operations)
def test_model(bound: int, ops: list[tuple[object, ...]]) -> None:
    """Against a list model: bound kept, FIFO, latest per conflation key, in first position."""
    queue = OutgoingQueue(bound)
    model: list[tuple[bytes, tuple[str, object] | None]] = []
    counter = 0
    for op in ops:
        if op[0] == "push":
            _, size, channel, key, conflate = op
            counter += 1
            item = counter.to_bytes(4, "big") * (int(size) // 4 + 1)
            ckey = (str(channel), key) if conflate else None
            index = next((i for i, (_, k) in enumerate(model) if ckey and k == ckey), None)
            current = sum(len(i) for i, _ in model)
            old = len(model[index][0]) if index is not None else 0
            accepted = current - old + len(item) <= bound
            assert (
                queue.push(item, channel=str(channel), key=key, conflate=bool(conflate)) == accepted
            )
            if accepted and index is not None:
                model[index] = (item, ckey)
            elif accepted:
                model.append((item, ckey))
        else:
            batch = queue.pop_batch(int(op[1]))
            expected = [i for i, _ in model[: len(batch)]]
            assert batch == expected
            assert len(batch) >= min(1, len(model))
            if len(batch) > 1:
                assert sum(map(len, batch)) <= int(op[1])
            del model[: len(batch)]
        assert queue.size_bytes == sum(len(i) for i, _ in model) <= bound
        assert len(queue) == len(model)
        keys = [k for _, k in model if k is not None]
        assert len(keys) == len(set(keys))  # only the latest per key
        for channel in {str(op[2]) for op in ops if op[0] == "push"}:
            assert queue.holds(channel) == any(k[0] == channel for k in keys)


def test_holds_counts_conflatable_items_per_channel() -> None:
    queue = OutgoingQueue(1000)
    assert not queue.holds("a")
    queue.push(b"x", channel="a")  # not conflatable: never replaced, not counted
    assert not queue.holds("a")
    queue.push(b"1", channel="a", key="k1", conflate=True)
    queue.push(b"2", channel="a", key="k2", conflate=True)
    queue.push(b"3", channel="a", key="k1", conflate=True)  # replaces "1"
    assert queue.holds("a")
    assert not queue.holds("b")
    assert queue.pop_batch(2) == [b"x", b"3"]
    assert queue.holds("a")  # "2" is still queued
    assert queue.pop_batch(10) == [b"2"]
    assert not queue.holds("a")
    queue.push(b"4", channel="a", conflate=True)
    queue.clear()
    assert not queue.holds("a")
