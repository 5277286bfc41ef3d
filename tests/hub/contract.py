"""The engine contract: what every :class:`Broker` and :class:`Presence` implementation must do.

To run it against an engine, subclass :class:`EngineContract` in a test module and define an
``engine`` fixture yielding an :class:`Engine`::

    class TestMyEngine(EngineContract):
        @pytest.fixture
        async def engine(self) -> AsyncIterator[Engine]:
            made: list[Broker] = []

            async def new_broker() -> Broker:
                broker = MyBroker(...)  # not started: tests call start() with their handler
                made.append(broker)
                return broker

            presence = MyPresence(..., ttl=PRESENCE_TTL)
            yield Engine(await new_broker(), presence, advance=asyncio.sleep,
                         new_broker=new_broker)
            for broker in made:
                await broker.close()
            await presence.close()

The fixture's duties:

- give each test a clean backend (no channels, history or presence from other tests);
- yield ``broker`` not started (each test starts it with its own handler) and close it after;
- build ``presence`` with a time-to-live of :data:`PRESENCE_TTL` seconds;
- ``advance(seconds)`` makes that much time pass for the engine: a fake clock moved forward,
  or ``asyncio.sleep`` for engines on real time (tests that call it are marked
  ``time_dependent`` and keep their TTLs around a second, so they stay quick on real time);
- ``new_broker()``, if the engine can run several nodes, makes another unstarted broker on the
  same backend (closed by the fixture too); ``None`` skips the multi-node tests.

Deliveries are asynchronous in general, so tests wait for them (:meth:`Recorder.wait_for`). To
check that something was *not* delivered, a test publishes to the :data:`BARRIER` channel and
waits for that publication: a broker delivers one node's publications in the order they were
published within a channel, and across channels on one Redis (on a Redis Cluster, channels of
different masters arrive over different connections, so tests wait for the publications they
expect before flushing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from wsend.hub.broker import (
    Broker,
    ClientInfo,
    HistoryOptions,
    Presence,
    PresenceStats,
    Publication,
    StreamPosition,
)

__all__ = ["BARRIER", "PRESENCE_TTL", "Engine", "EngineContract", "Recorder"]

#: The presence time-to-live, in seconds, that engine fixtures must configure.
PRESENCE_TTL = 1.0

#: A channel every recorder is subscribed to, used to flush deliveries (see module docstring).
BARRIER = "contract:barrier"

#: How long a test waits for deliveries before failing.
DELIVERY_TIMEOUT = 10.0

HISTORY = HistoryOptions(size=10, ttl=300.0, meta_ttl=3600.0)
NO_HISTORY = HistoryOptions()

time_dependent = pytest.mark.time_dependent


@dataclass
class Engine:
    """What an engine fixture yields (see the module docstring for each field's duties)."""

    broker: Broker
    presence: Presence
    advance: Callable[[float], Awaitable[None]]
    new_broker: Callable[[], Awaitable[Broker]] | None = None


class Recorder:
    """A broker handler that records every call, with helpers to wait for deliveries."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Publication | None]] = []
        self._by_channel: dict[str, list[Publication]] = {}

    def __call__(self, channel: str, publication: Publication | None) -> None:
        self.calls.append((channel, publication))
        if publication is not None:
            self._by_channel.setdefault(channel, []).append(publication)

    def of(self, channel: str) -> list[Publication]:
        """The publications received for ``channel``, in order of delivery."""
        return list(self._by_channel.get(channel, ()))

    def data(self, channel: str) -> list[object]:
        """The payloads received for ``channel``, in order of delivery."""
        return [p.data for p in self._by_channel.get(channel, ())]

    async def wait_for(self, channel: str, count: int, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Wait until ``count`` publications of ``channel`` arrived, or fail."""

        def done() -> bool:
            return len(self._by_channel.get(channel, ())) >= count

        def describe() -> str:
            return f"{channel}: got {len(self._by_channel.get(channel, ()))} of {count}"

        await wait_until(done, timeout, describe)


async def start(broker: Broker) -> Recorder:
    """Start ``broker`` with a new :class:`Recorder` subscribed to :data:`BARRIER`."""
    recorder = Recorder()
    await broker.start(recorder)
    await broker.subscribe(BARRIER)
    return recorder


async def flush(publisher: Broker, *recorders: Recorder) -> None:
    """Wait until every publication ``publisher`` made so far reached each of ``recorders``."""
    expected = [len(r.of(BARRIER)) + 1 for r in recorders]
    await publisher.publish(BARRIER, Publication(data="barrier"), NO_HISTORY)
    for recorder, count in zip(recorders, expected, strict=True):
        await recorder.wait_for(BARRIER, count)


async def publish_many(
    broker: Broker, channel: str, count: int, options: HistoryOptions = HISTORY
) -> list[StreamPosition]:
    """Publish payloads ``0 .. count - 1`` to ``channel`` in sequence; return their positions."""
    return [await broker.publish(channel, Publication(data=i), options) for i in range(count)]


async def wait_until(
    condition: Callable[[], bool],
    timeout: float = DELIVERY_TIMEOUT,
    describe: Callable[[], str] = lambda: "condition not met",
) -> None:
    """Wait until ``condition()`` holds, or fail after ``timeout`` seconds with ``describe()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"{describe()} after {timeout} s")
        await asyncio.sleep(0.001)


async def second_broker(engine: Engine) -> Broker:
    """Another node on the engine's backend; skips the test for single-node engines."""
    if engine.new_broker is None:
        pytest.skip("this engine runs a single node")
    return await engine.new_broker()


class EngineContract:
    """The contract tests. Subclasses provide the ``engine`` fixture."""

    # Fan-out.

    async def test_implements_interfaces(self, engine: Engine) -> None:
        assert isinstance(engine.broker, Broker)
        assert isinstance(engine.presence, Presence)

    async def test_publish_reaches_subscriber(self, engine: Engine) -> None:
        recorder = await start(engine.broker)
        await engine.broker.subscribe("news")
        info = ClientInfo(client="c1", user="u1", info={"name": "Ann"})
        sent = Publication(data={"text": "hi"}, key="k", info=info)
        position = await engine.broker.publish("news", sent, HISTORY)
        await recorder.wait_for("news", 1)
        [got] = recorder.of("news")
        assert (got.data, got.key, got.info) == ({"text": "hi"}, "k", info)
        assert (got.offset, got.epoch) == (position.offset, position.epoch) == (1, got.epoch)
        assert got.time > 0
        assert (sent.offset, sent.epoch) == (0, ""), "the caller's publication is not modified"

    async def test_unsubscribed_channel_not_delivered(self, engine: Engine) -> None:
        recorder = await start(engine.broker)
        await engine.broker.publish("elsewhere", Publication(data=1), NO_HISTORY)
        await flush(engine.broker, recorder)
        assert recorder.of("elsewhere") == []

    async def test_no_delivery_after_unsubscribe(self, engine: Engine) -> None:
        recorder = await start(engine.broker)
        await engine.broker.subscribe("news")
        await engine.broker.publish("news", Publication(data="before"), NO_HISTORY)
        await recorder.wait_for("news", 1)
        await engine.broker.unsubscribe("news")
        await engine.broker.publish("news", Publication(data="after"), NO_HISTORY)
        await flush(engine.broker, recorder)
        assert recorder.data("news") == ["before"]

    async def test_subscribe_and_unsubscribe_are_idempotent(self, engine: Engine) -> None:
        recorder = await start(engine.broker)
        await engine.broker.unsubscribe("news")
        await engine.broker.subscribe("news")
        await engine.broker.subscribe("news")
        await engine.broker.publish("news", Publication(data="once"), NO_HISTORY)
        await recorder.wait_for("news", 1)
        await flush(engine.broker, recorder)
        assert recorder.data("news") == ["once"]
        await engine.broker.unsubscribe("news")
        await engine.broker.unsubscribe("news")
        await engine.broker.publish("news", Publication(data="none"), NO_HISTORY)
        await flush(engine.broker, recorder)
        assert recorder.data("news") == ["once"]

    async def test_async_handler_is_awaited_in_order(self, engine: Engine) -> None:
        done: list[int] = []

        async def handler(channel: str, publication: Publication | None) -> None:
            assert publication is not None
            for _ in range(-publication.offset % 4):  # earlier publications take longer
                await asyncio.sleep(0)
            done.append(publication.offset)

        await engine.broker.start(handler)
        await engine.broker.subscribe("news")

        async def publisher() -> None:
            for _ in range(10):
                await engine.broker.publish("news", Publication(data=0), HISTORY)

        await asyncio.gather(*(publisher() for _ in range(5)))
        await wait_until(lambda: len(done) == 50)
        assert done == list(range(1, 51))

    async def test_handler_exception_does_not_stop_delivery(self, engine: Engine) -> None:
        received: list[object] = []

        def handler(channel: str, publication: Publication | None) -> None:
            assert publication is not None
            if publication.data == "boom":
                raise RuntimeError("handler failure")
            received.append(publication.data)

        await engine.broker.start(handler)
        await engine.broker.subscribe("news")
        for data in ["a", "boom", "b"]:
            await engine.broker.publish("news", Publication(data=data), NO_HISTORY)
        await wait_until(lambda: len(received) == 2)
        assert received == ["a", "b"]

    # Offsets and epochs.

    async def test_channel_without_history_gets_offset_zero(self, engine: Engine) -> None:
        recorder = await start(engine.broker)
        await engine.broker.subscribe("live")
        positions = [
            await engine.broker.publish("live", Publication(data=i), NO_HISTORY) for i in range(3)
        ]
        assert positions == [StreamPosition(0, "")] * 3
        await recorder.wait_for("live", 3)
        assert [(p.offset, p.epoch) for p in recorder.of("live")] == [(0, "")] * 3
        assert (await engine.broker.history("live")).publications == []

    async def test_offsets_increase_by_one_within_epoch(self, engine: Engine) -> None:
        recorder = await start(engine.broker)
        await engine.broker.subscribe("news")
        positions = await publish_many(engine.broker, "news", 5)
        assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
        epoch = positions[0].epoch
        assert epoch
        assert all(p.epoch == epoch for p in positions)
        await recorder.wait_for("news", 5)
        delivered = [(p.offset, p.epoch) for p in recorder.of("news")]
        assert delivered == [(i, epoch) for i in range(1, 6)]

    async def test_position_read_before_first_publication_is_continued(
        self, engine: Engine
    ) -> None:
        before = (await engine.broker.history("fresh", limit=0, history=HISTORY)).position
        assert before.offset == 0
        assert before.epoch
        position = await engine.broker.publish("fresh", Publication(data=1), HISTORY)
        assert position == StreamPosition(1, before.epoch)

    async def test_concurrent_publishers_get_consecutive_offsets(self, engine: Engine) -> None:
        recorder = await start(engine.broker)
        await engine.broker.subscribe("busy")

        async def publisher(i: int) -> list[StreamPosition]:
            positions = []
            for j in range(10):
                publication = Publication(data=(i, j))
                positions.append(await engine.broker.publish("busy", publication, HISTORY))
                await asyncio.sleep(0)
            return positions

        results = await asyncio.gather(*(publisher(i) for i in range(50)))
        assert sorted(p.offset for ps in results for p in ps) == list(range(1, 501))
        assert len({p.epoch for ps in results for p in ps}) == 1
        for positions in results:
            assert [p.offset for p in positions] == sorted(p.offset for p in positions)
        await recorder.wait_for("busy", 500)
        delivered = recorder.of("busy")
        assert [p.offset for p in delivered] == list(range(1, 501))
        by_offset = {p.offset: (i, j) for i, ps in enumerate(results) for j, p in enumerate(ps)}
        assert all(by_offset[p.offset] == tuple(p.data) for p in delivered)

    async def test_ten_thousand_publications_in_order(self, engine: Engine) -> None:
        recorder = await start(engine.broker)
        await engine.broker.subscribe("firehose")
        options = HistoryOptions(size=100, ttl=300.0, meta_ttl=3600.0)
        for i in range(10_000):
            await engine.broker.publish("firehose", Publication(data=i), options)
        await recorder.wait_for("firehose", 10_000, timeout=60.0)
        delivered = recorder.of("firehose")
        assert [p.offset for p in delivered] == list(range(1, 10_001))
        assert [p.data for p in delivered] == list(range(10_000))
        result = await engine.broker.history("firehose")
        assert [p.offset for p in result.publications] == list(range(9_901, 10_001))
        assert result.position.offset == 10_000

    # History.

    async def test_history_returns_publications_and_position(self, engine: Engine) -> None:
        info = ClientInfo(client="c1", user="u1")
        sent = await engine.broker.publish("h", Publication(data="x", key="k", info=info), HISTORY)
        result = await engine.broker.history("h")
        [got] = result.publications
        assert (got.data, got.key, got.info) == ("x", "k", info)
        assert (got.offset, got.epoch) == (1, sent.epoch)
        assert got.time > 0
        assert result.position == sent

    async def test_history_size_bound_drops_oldest(self, engine: Engine) -> None:
        options = HistoryOptions(size=3, ttl=300.0, meta_ttl=3600.0)
        for i in range(5):
            await engine.broker.publish("h", Publication(data=i), options)
        result = await engine.broker.history("h")
        assert [(p.offset, p.data) for p in result.publications] == [(3, 2), (4, 3), (5, 4)]
        assert result.position.offset == 5

    async def test_history_since(self, engine: Engine) -> None:
        positions = await publish_many(engine.broker, "h", 5)
        epoch = positions[0].epoch
        result = await engine.broker.history("h", since=StreamPosition(2, epoch))
        assert [p.offset for p in result.publications] == [3, 4, 5]
        assert result.position == StreamPosition(5, epoch)
        for offset in (5, 7):
            since = StreamPosition(offset, epoch)
            assert (await engine.broker.history("h", since=since)).publications == []

    async def test_history_limit(self, engine: Engine) -> None:
        positions = await publish_many(engine.broker, "h", 5)
        result = await engine.broker.history("h", limit=2)
        assert [p.offset for p in result.publications] == [1, 2]
        result = await engine.broker.history("h", limit=0)
        assert result.publications == []
        assert result.position == positions[-1]
        assert len((await engine.broker.history("h", limit=50)).publications) == 5

    async def test_history_reverse(self, engine: Engine) -> None:
        positions = await publish_many(engine.broker, "h", 5)
        epoch = positions[0].epoch
        result = await engine.broker.history("h", reverse=True)
        assert [p.offset for p in result.publications] == [5, 4, 3, 2, 1]
        result = await engine.broker.history("h", reverse=True, limit=2)
        assert [p.offset for p in result.publications] == [5, 4]
        since = StreamPosition(2, epoch)
        result = await engine.broker.history("h", since=since, reverse=True)
        assert [p.offset for p in result.publications] == [5, 4, 3]

    async def test_history_paging_forward(self, engine: Engine) -> None:
        positions = await publish_many(engine.broker, "h", 7)
        since = StreamPosition(0, positions[0].epoch)
        pages = []
        while True:
            page = (await engine.broker.history("h", since=since, limit=3)).publications
            if not page:
                break
            pages.append([p.data for p in page])
            since = StreamPosition(page[-1].offset, page[-1].epoch)
        assert pages == [[0, 1, 2], [3, 4, 5], [6]]

    async def test_history_extreme_positions_and_limits(self, engine: Engine) -> None:
        # Offsets and limits a client may send: up to 2**63 - 1 (the wire format's bound).
        epoch = (await publish_many(engine.broker, "h", 3))[-1].epoch
        top = 2**63 - 1
        for reverse in (False, True):
            result = await engine.broker.history(
                "h", since=StreamPosition(top, epoch), limit=top, reverse=reverse
            )
            assert result.publications == []
            assert result.position == StreamPosition(3, epoch)
            result = await engine.broker.history("h", limit=top, reverse=reverse)
            assert len(result.publications) == 3

    async def test_very_long_lifetimes(self, engine: Engine) -> None:
        options = HistoryOptions(size=10, ttl=1e12, meta_ttl=1e13)
        first = await engine.broker.publish("long", Publication(data=1), options)
        second = await engine.broker.publish("long", Publication(data=2), options)
        assert second == StreamPosition(2, first.epoch)
        result = await engine.broker.history("long", history=options)
        assert [p.data for p in result.publications] == [1, 2]

    async def test_history_since_other_epoch(self, engine: Engine) -> None:
        old = (await publish_many(engine.broker, "h", 3))[-1]
        await engine.broker.remove_history("h")
        new = (await publish_many(engine.broker, "h", 2))[-1]
        assert new.epoch != old.epoch
        for since in (old, StreamPosition(1, "not-an-epoch")):
            result = await engine.broker.history("h", since=since)
            assert result.publications == []
            assert result.position == new

    async def test_remove_history_starts_new_epoch(self, engine: Engine) -> None:
        old = await engine.broker.publish("h", Publication(data=1), HISTORY)
        await engine.broker.remove_history("h")
        result = await engine.broker.history("h")
        assert result.publications == []
        assert result.position.offset == 0
        assert result.position.epoch != old.epoch
        new = await engine.broker.publish("h", Publication(data=2), HISTORY)
        assert new == StreamPosition(1, result.position.epoch)
        await engine.broker.remove_history("never-published")

    @time_dependent
    async def test_history_ttl(self, engine: Engine) -> None:
        options = HistoryOptions(size=10, ttl=1.0, meta_ttl=60.0)
        await engine.broker.publish("h", Publication(data="old"), options)
        await engine.advance(0.6)
        last = await engine.broker.publish("h", Publication(data="new"), options)
        await engine.advance(0.6)
        result = await engine.broker.history("h")
        assert [p.data for p in result.publications] == ["new"]
        assert result.position == last
        await engine.advance(0.6)
        result = await engine.broker.history("h")
        assert result.publications == []
        assert result.position == last, "expired publications keep the position"

    @time_dependent
    async def test_history_without_ttl_keeps_publications(self, engine: Engine) -> None:
        options = HistoryOptions(size=10, ttl=0.0, meta_ttl=60.0)
        await engine.broker.publish("h", Publication(data="kept"), options)
        await engine.advance(1.5)
        assert [p.data for p in (await engine.broker.history("h")).publications] == ["kept"]

    @time_dependent
    async def test_meta_ttl_expiry_starts_new_epoch(self, engine: Engine) -> None:
        options = HistoryOptions(size=10, ttl=0.0, meta_ttl=1.0)
        old = (await publish_many(engine.broker, "h", 2, options))[-1]
        await engine.advance(1.5)
        result = await engine.broker.history("h", history=options)
        assert result.publications == []
        assert result.position.offset == 0
        assert result.position.epoch != old.epoch
        new = await engine.broker.publish("h", Publication(data="again"), options)
        assert new == StreamPosition(1, result.position.epoch)

    @time_dependent
    async def test_meta_ttl_counts_from_last_publication(self, engine: Engine) -> None:
        options = HistoryOptions(size=10, ttl=0.0, meta_ttl=1.0)
        first = await engine.broker.publish("h", Publication(data=1), options)
        await engine.advance(0.6)
        await engine.broker.publish("h", Publication(data=2), options)
        await engine.advance(0.6)
        result = await engine.broker.history("h", history=options)
        assert result.position == StreamPosition(2, first.epoch)
        assert [p.data for p in result.publications] == [1, 2]

    # Several nodes on one backend.

    async def test_two_brokers_both_receive(self, engine: Engine) -> None:
        other = await second_broker(engine)
        recorders = [await start(engine.broker), await start(other)]
        for broker in (engine.broker, other):
            await broker.subscribe("news")
        await engine.broker.publish("news", Publication(data="from 1"), HISTORY)
        await other.publish("news", Publication(data="from 2"), HISTORY)
        for recorder in recorders:
            await recorder.wait_for("news", 2)
            assert recorder.data("news") == ["from 1", "from 2"]
            assert [p.offset for p in recorder.of("news")] == [1, 2]

    async def test_two_brokers_agree_on_offsets_and_history(self, engine: Engine) -> None:
        other = await second_broker(engine)
        await start(other)
        positions = []
        for i in range(10):
            broker = (engine.broker, other)[i % 2]
            positions.append(await broker.publish("h", Publication(data=i), HISTORY))
        assert [p.offset for p in positions] == list(range(1, 11))
        assert len({p.epoch for p in positions}) == 1
        first = await engine.broker.history("h")
        second = await other.history("h")
        assert first.position == second.position == positions[-1]
        assert [p.data for p in first.publications] == [p.data for p in second.publications]
        await other.remove_history("h")
        assert (await engine.broker.history("h")).position.epoch != positions[0].epoch

    async def test_unsubscribe_on_one_node_only(self, engine: Engine) -> None:
        other = await second_broker(engine)
        recorders = [await start(engine.broker), await start(other)]
        for broker in (engine.broker, other):
            await broker.subscribe("news")
        await other.unsubscribe("news")
        await engine.broker.publish("news", Publication(data="x"), NO_HISTORY)
        await recorders[0].wait_for("news", 1)
        await flush(engine.broker, *recorders)
        assert [r.data("news") for r in recorders] == [["x"], []]

    # Presence.

    async def test_presence_add_and_get(self, engine: Engine) -> None:
        ann = ClientInfo(client="c1", user="ann", info={"name": "Ann"})
        await engine.presence.add("room", ann)
        assert await engine.presence.get("room") == {"c1": ann}
        assert await engine.presence.get("other") == {}

    async def test_presence_several_users_and_clients(self, engine: Engine) -> None:
        clients = [("c1", "ann"), ("c2", "ann"), ("c3", "bob"), ("c4", "")]
        for client, user in clients:
            await engine.presence.add("room", ClientInfo(client=client, user=user))
        await engine.presence.add("hall", ClientInfo(client="c9", user="eve"))
        got = await engine.presence.get("room")
        assert {c: i.user for c, i in got.items()} == dict(clients)
        assert await engine.presence.stats("room") == PresenceStats(num_clients=4, num_users=3)
        assert await engine.presence.stats("hall") == PresenceStats(num_clients=1, num_users=1)
        assert await engine.presence.stats("empty") == PresenceStats(num_clients=0, num_users=0)

    async def test_presence_add_again_replaces_info(self, engine: Engine) -> None:
        await engine.presence.add("room", ClientInfo(client="c1", user="ann", info=1))
        await engine.presence.add("room", ClientInfo(client="c1", user="ann", info=2))
        assert await engine.presence.get("room") == {"c1": ClientInfo("c1", "ann", 2)}
        assert await engine.presence.stats("room") == PresenceStats(1, 1)

    async def test_presence_remove(self, engine: Engine) -> None:
        for client, user in [("c1", "ann"), ("c2", "ann"), ("c3", "bob")]:
            await engine.presence.add("room", ClientInfo(client=client, user=user))
        await engine.presence.remove("room", "c3")
        assert set(await engine.presence.get("room")) == {"c1", "c2"}
        assert await engine.presence.stats("room") == PresenceStats(2, 1)
        await engine.presence.remove("room", "c3")
        await engine.presence.remove("nowhere", "c1")
        for client in ("c1", "c2"):
            await engine.presence.remove("room", client)
        assert await engine.presence.get("room") == {}
        assert await engine.presence.stats("room") == PresenceStats(0, 0)

    @time_dependent
    async def test_presence_expires_without_refresh(self, engine: Engine) -> None:
        await engine.presence.add("room", ClientInfo(client="c1", user="ann"))
        await engine.advance(PRESENCE_TTL + 0.5)
        assert await engine.presence.get("room") == {}
        assert await engine.presence.stats("room") == PresenceStats(0, 0)

    @time_dependent
    async def test_presence_refresh_extends_expiry(self, engine: Engine) -> None:
        for client in ("c1", "c2"):
            await engine.presence.add("room", ClientInfo(client=client, user=client))
        await engine.advance(PRESENCE_TTL * 0.6)
        await engine.presence.add("room", ClientInfo(client="c1", user="c1"))
        await engine.advance(PRESENCE_TTL * 0.6)
        assert set(await engine.presence.get("room")) == {"c1"}
        assert await engine.presence.stats("room") == PresenceStats(1, 1)
