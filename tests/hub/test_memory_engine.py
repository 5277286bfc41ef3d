"""The in-memory engine: the engine contract, then what is particular to memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from wsend.exceptions import UsageError
from wsend.hub.broker import Broker, ClientInfo, HistoryOptions, Publication, StreamPosition
from wsend.hub.memory import MemoryBackend, MemoryBroker, MemoryPresence

from .contract import (
    HISTORY,
    NO_HISTORY,
    PRESENCE_TTL,
    Engine,
    EngineContract,
    Recorder,
    start,
    wait_until,
)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class TestMemoryEngine(EngineContract):
    """The contract on a fake clock, with two brokers sharing a backend as two nodes."""

    @pytest.fixture
    async def engine(self) -> AsyncIterator[Engine]:
        clock = FakeClock()
        backend = MemoryBackend(clock)
        made: list[MemoryBroker] = []

        async def new_broker() -> Broker:
            made.append(MemoryBroker(backend=backend))
            return made[-1]

        presence = MemoryPresence(clock, ttl=PRESENCE_TTL)
        yield Engine(await new_broker(), presence, clock.advance, new_broker)
        for broker in made:
            await broker.close()
        await presence.close()


class TestMemoryEngineRealTime(EngineContract):
    """The contract on real time, as the Redis engine runs it: one broker, default clock."""

    @pytest.fixture
    async def engine(self) -> AsyncIterator[Engine]:
        broker = MemoryBroker()
        presence = MemoryPresence(ttl=PRESENCE_TTL)
        yield Engine(broker, presence, asyncio.sleep)
        await broker.close()
        await presence.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def broker(clock: FakeClock) -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker(clock)
    yield broker
    await broker.close()


class TestMemoryBroker:
    async def test_stamps_time_from_clock(self, broker: MemoryBroker, clock: FakeClock) -> None:
        await broker.publish("h", Publication(data=1, time=1.0), HISTORY)
        [got] = (await broker.history("h")).publications
        assert got.time == clock.now

    async def test_one_shot_channels_leave_no_state(self, broker: MemoryBroker) -> None:
        recorder = await start(broker)
        for i in range(10_000):
            await broker.publish(f"once:{i}", Publication(data=i), NO_HISTORY)
        for i in range(100):
            await broker.subscribe(f"sub:{i}")
            await broker.publish(f"sub:{i}", Publication(data=i), NO_HISTORY)
            await broker.unsubscribe(f"sub:{i}")
        assert len(recorder.calls) == 100
        assert broker.held_channels == 1  # the recorder's barrier subscription
        await broker.unsubscribe("contract:barrier")
        assert broker.held_channels == 0

    async def test_expired_streams_dropped_after_meta_ttl(
        self, broker: MemoryBroker, clock: FakeClock
    ) -> None:
        options = HistoryOptions(size=5, ttl=0.0, meta_ttl=10.0)
        for i in range(1000):
            await broker.publish(f"h:{i}", Publication(data=i), options)
        assert broker.held_channels == 1000
        await clock.advance(9.0)
        assert broker.cleanup() == 0
        assert broker.held_channels == 1000
        await clock.advance(1.0)
        assert broker.cleanup(limit=10) == 10, "one cleanup examines at most `limit` streams"
        assert broker.cleanup() == 990
        assert broker.held_channels == 0

    async def test_publication_extends_stream_life(
        self, broker: MemoryBroker, clock: FakeClock
    ) -> None:
        options = HistoryOptions(size=5, ttl=0.0, meta_ttl=10.0)
        await broker.publish("h", Publication(data=1), options)
        await clock.advance(8.0)
        await broker.publish("h", Publication(data=2), options)
        await clock.advance(8.0)
        assert broker.cleanup() == 0
        assert broker.held_channels == 1
        await clock.advance(2.0)
        assert broker.cleanup() == 1

    async def test_lazy_cleanup_on_operations(self, broker: MemoryBroker, clock: FakeClock) -> None:
        options = HistoryOptions(size=5, ttl=0.0, meta_ttl=10.0)
        for i in range(100):
            await broker.publish(f"h:{i}", Publication(data=i), options)
        await clock.advance(11.0)
        for _ in range(20):
            await broker.publish("live", Publication(data=0), NO_HISTORY)
        assert broker.held_channels == 0

    async def test_periodic_cleanup_task(self, clock: FakeClock) -> None:
        broker = MemoryBroker(clock, cleanup_interval=0.01)
        try:
            await broker.start(Recorder())
            options = HistoryOptions(size=5, ttl=0.0, meta_ttl=10.0)
            for i in range(3000):
                await broker.publish(f"h:{i}", Publication(data=i), options)
            await clock.advance(11.0)
            await wait_until(lambda: broker.held_channels == 0)
        finally:
            await broker.close()

    async def test_shorter_meta_ttl_reschedules_cleanup(
        self, broker: MemoryBroker, clock: FakeClock
    ) -> None:
        await broker.history("h")  # creates the stream with the default meta_ttl of a day
        await broker.publish("h", Publication(data=1), HistoryOptions(size=5, meta_ttl=10.0))
        await clock.advance(11.0)
        assert broker.cleanup() == 1

    async def test_non_positive_meta_ttl_never_expires(
        self, broker: MemoryBroker, clock: FakeClock
    ) -> None:
        options = HistoryOptions(size=5, ttl=0.0, meta_ttl=0.0)
        first = await broker.publish("h", Publication(data=1), options)
        await clock.advance(10**9)
        assert broker.cleanup() == 0
        assert await broker.publish("h", Publication(data=2), options) == StreamPosition(
            2, first.epoch
        )

    async def test_remove_history_churn_keeps_deadlines_bounded(self, broker: MemoryBroker) -> None:
        for i in range(5000):
            await broker.publish("h", Publication(data=i), HISTORY)
            await broker.remove_history("h")
        assert broker.held_channels == 0
        assert len(broker.backend._deadlines) <= 64 + 1

    async def test_history_ttl_given_at_read(self, broker: MemoryBroker, clock: FakeClock) -> None:
        await broker.publish("h", Publication(data=1), HistoryOptions(size=5, ttl=100.0))
        await clock.advance(20.0)
        assert len((await broker.history("h")).publications) == 1
        short = HistoryOptions(size=5, ttl=10.0)
        assert (await broker.history("h", history=short)).publications == []

    async def test_negative_limit(self, broker: MemoryBroker) -> None:
        with pytest.raises(ValueError, match="limit"):
            await broker.history("h", limit=-1)

    async def test_publish_from_handler(self, broker: MemoryBroker) -> None:
        seen: list[tuple[str, int]] = []

        async def handler(channel: str, publication: Publication | None) -> None:
            assert publication is not None
            seen.append((channel, publication.data))
            if channel == "a":
                await broker.publish("b", Publication(data=publication.data), NO_HISTORY)

        await broker.start(handler)
        for channel in ("a", "b"):
            await broker.subscribe(channel)
        for i in range(3):
            await broker.publish("a", Publication(data=i), NO_HISTORY)
        await wait_until(lambda: len(seen) == 6)
        assert seen == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]

    async def test_cancelled_publisher_strands_nothing(self, broker: MemoryBroker) -> None:
        release = asyncio.Event()
        seen: list[object] = []

        async def handler(channel: str, publication: Publication | None) -> None:
            assert publication is not None
            if publication.data == "slow":
                await release.wait()
            seen.append(publication.data)

        await broker.start(handler)
        await broker.subscribe("c")
        slow = asyncio.create_task(broker.publish("c", Publication(data="slow"), NO_HISTORY))
        await asyncio.sleep(0)
        await broker.publish("c", Publication(data="next"), NO_HISTORY)
        assert seen == []
        slow.cancel()
        await wait_until(lambda: seen == ["next"])

    async def test_not_started_broker_drops_deliveries(self, broker: MemoryBroker) -> None:
        await broker.subscribe("c")
        position = await broker.publish("c", Publication(data=1), HISTORY)
        assert position.offset == 1
        recorder = await start(broker)
        await broker.publish("c", Publication(data=2), HISTORY)
        assert recorder.data("c") == [2]

    async def test_start_twice(self, broker: MemoryBroker) -> None:
        await broker.start(Recorder())
        with pytest.raises(UsageError):
            await broker.start(Recorder())

    async def test_closed_broker(self, broker: MemoryBroker) -> None:
        await start(broker)
        await broker.close()
        await broker.close()
        assert broker.held_channels == 0
        assert not broker._tasks
        for call in (
            broker.start(Recorder()),
            broker.subscribe("c"),
            broker.unsubscribe("c"),
            broker.publish("c", Publication(data=1), NO_HISTORY),
            broker.history("c"),
            broker.remove_history("c"),
        ):
            with pytest.raises(UsageError):
                await call

    async def test_close_keeps_shared_backend(self, clock: FakeClock) -> None:
        backend = MemoryBackend(clock)
        first, second = MemoryBroker(backend=backend), MemoryBroker(backend=backend)
        recorder = await start(second)
        await first.start(Recorder())
        for broker in (first, second):
            await broker.subscribe("c")
        await first.publish("h", Publication(data=1), HISTORY)
        await first.close()
        await second.publish("c", Publication(data=2), NO_HISTORY)
        assert recorder.data("c") == [2]
        assert len((await second.history("h")).publications) == 1
        await second.close()
        assert backend.held_channels == 1  # the history, which outlives the brokers

    async def test_default_clock(self) -> None:
        broker = MemoryBroker()
        await broker.publish("h", Publication(data=1), HISTORY)
        [got] = (await broker.history("h")).publications
        assert abs(got.time - time.time()) < 60
        await broker.close()


class TestMemoryPresence:
    def test_ttl_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="ttl"):
            MemoryPresence(ttl=0)

    async def test_expired_entries_dropped_without_access(self, clock: FakeClock) -> None:
        presence = MemoryPresence(clock, ttl=10.0)
        for i in range(1000):
            await presence.add(f"room:{i}", ClientInfo(client=f"c{i}", user="u"))
        assert presence.held_entries == 1000
        await clock.advance(11.0)
        assert presence.cleanup(limit=100) == 100
        assert presence.cleanup() == 900
        assert presence.held_entries == 0

    async def test_refreshed_entries_survive_cleanup(self, clock: FakeClock) -> None:
        presence = MemoryPresence(clock, ttl=10.0)
        info = ClientInfo(client="c1", user="u")
        await presence.add("room", info)
        await clock.advance(8.0)
        await presence.add("room", info)
        await clock.advance(8.0)
        assert presence.cleanup() == 0
        assert await presence.get("room") == {"c1": info}
        await clock.advance(3.0)
        assert presence.cleanup() == 1

    async def test_lazy_cleanup_on_operations(self, clock: FakeClock) -> None:
        presence = MemoryPresence(clock, ttl=10.0)
        for i in range(80):
            await presence.add(f"room:{i}", ClientInfo(client="c", user="u"))
        await clock.advance(11.0)
        for _ in range(10):
            await presence.stats("elsewhere")
        assert presence.held_entries == 0

    async def test_remove_churn_keeps_deadlines_bounded(self, clock: FakeClock) -> None:
        presence = MemoryPresence(clock)
        for i in range(5000):
            await presence.add("room", ClientInfo(client=f"c{i}", user="u"))
            await presence.remove("room", f"c{i}")
        assert presence.held_entries == 0
        assert len(presence._deadlines) <= 64 + 1

    async def test_close_forgets_everything(self, clock: FakeClock) -> None:
        presence = MemoryPresence(clock)
        await presence.add("room", ClientInfo(client="c", user="u"))
        await presence.close()
        assert presence.held_entries == 0
        assert await presence.get("room") == {}
