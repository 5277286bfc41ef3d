"""The Redis engine: the engine contract against a real redis-server, then Redis specifics."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from wsend.hub import redis_broker, redis_common
from wsend.hub.broker import Broker, ClientInfo, HistoryOptions, Publication, StreamPosition
from wsend.hub.codes import HubError
from wsend.hub.redis import RedisBroker, RedisPresence, client_from_url, engine_from_url
from wsend.hub.redis_common import decode_publication, encode_publication
from wsend.hub.wire import Encoded

from .contract import (
    HISTORY,
    NO_HISTORY,
    PRESENCE_TTL,
    Engine,
    EngineContract,
    Recorder,
    start,
)
from .contract import wait_until as _wait_until
from .redis_server import RedisServer, running

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running()


def fresh_prefix() -> str:
    """A key prefix no other test used: a clean backend on the shared server."""
    return f"t{next(_prefixes)}"


async def redis_engine(
    url: str, prefix: str, broker_class: type[RedisBroker] = RedisBroker
) -> AsyncIterator[Engine]:
    """An engine fixture's body: brokers of ``broker_class`` and a presence on ``url``."""
    made: list[RedisBroker] = []

    async def new_broker() -> Broker:
        made.append(broker_class(url, prefix=prefix))
        return made[-1]

    presence = RedisPresence(url, prefix=prefix, ttl=PRESENCE_TTL)
    yield Engine(await new_broker(), presence, asyncio.sleep, new_broker)
    for broker in made:
        await broker.close()
    await presence.close()


class TestRedisEngine(EngineContract):
    """The contract, with two brokers on one Redis as two nodes."""

    @pytest.fixture
    async def engine(self, redis_server: RedisServer) -> AsyncIterator[Engine]:
        async for engine in redis_engine(redis_server.url, fresh_prefix()):
            yield engine


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker(redis_server.url, prefix=fresh_prefix())
    yield broker
    await broker.close()


class TestPayloads:
    def test_round_trip(self) -> None:
        info = ClientInfo("c1", "u1", {"name": Encoded("json", b'"Ann"')})
        for data in [
            Encoded("json", b'{"a": [1, 2]}'),
            Encoded("msgpack", b"\x81\xa1a\x01"),
            {"nested": [Encoded("json", b"1"), b"\x00bytes", 1.5, None]},
            "text",
        ]:
            sent = Publication(data=data, key="k", info=info)
            got = decode_publication(encode_publication(sent), 7, "ep", 1500)
            assert (got.data, got.key, got.info) == (data, "k", info)
            assert (got.offset, got.epoch, got.time) == (7, "ep", 1.5)

    def test_unserializable(self) -> None:
        with pytest.raises(NotImplementedError):
            encode_publication(Publication(data=object()))


class TestUrls:
    def test_engine_from_url(self) -> None:
        broker, presence = engine_from_url("redis://127.0.0.1:1/3", prefix="x", presence_ttl=5)
        assert broker.prefix == presence.prefix == "x"
        assert presence.ttl == 5
        assert broker.redis.connection_pool.connection_kwargs["db"] == 3

    def test_sentinel_url(self) -> None:
        client = client_from_url("redis+sentinel://:pw@h1:26379,h2:26380/mymaster/2")
        pool = client.connection_pool
        assert pool.service_name == "mymaster"  # type: ignore[attr-defined]
        assert pool.connection_kwargs["db"] == 2
        assert pool.connection_kwargs["password"] == "pw"
        hosts = [c.connection_pool.connection_kwargs for c in pool.sentinel_manager.sentinels]  # type: ignore[attr-defined]
        assert [(h["host"], h["port"]) for h in hosts] == [("h1", 26379), ("h2", 26380)]

    def test_sentinel_url_needs_master(self) -> None:
        with pytest.raises(ValueError, match="master"):
            client_from_url("redis+sentinel://h1:26379")


class TestRedisBroker:
    async def test_a_burst_of_publications_uses_a_bounded_pool(
        self, redis_server: RedisServer
    ) -> None:
        def clients() -> int:
            info = redis_server.cli("INFO", "clients")
            return int(info.split("connected_clients:")[1].split()[0])

        before = clients()
        default = RedisBroker(redis_server.url, prefix=fresh_prefix())
        assert default.redis.connection_pool.max_connections == redis_common.MAX_CONNECTIONS
        await default.close()
        broker = RedisBroker(redis_server.url + "?max_connections=3", prefix=fresh_prefix())
        try:
            await start(broker)
            positions = await asyncio.gather(
                *(broker.publish("burst", Publication(data=i), HISTORY) for i in range(300))
            )
            assert sorted(p.offset for p in positions) == list(range(1, 301))
            # Three for commands (none opened per publication), one for pub/sub, redis-cli.
            assert clients() - before <= 3 + 1 + 1
        finally:
            await broker.close()

    async def test_one_subscription_per_channel(
        self, broker: RedisBroker, redis_server: RedisServer
    ) -> None:
        await start(broker)
        for channel in ("a", "b", "c"):
            await broker.subscribe(channel)
        await broker.unsubscribe("b")
        await asyncio.sleep(0.05)
        listed = redis_server.cli("PUBSUB", "CHANNELS", f"{broker.prefix}:*").split()
        assert sorted(listed) == sorted(
            [f"{broker.prefix}:{{{c}}}:p" for c in ("contract:barrier", "a", "c")]
            + [f"{broker.prefix}:control"]  # one more per node, for control messages
        )

    async def test_history_keys_expire(
        self, broker: RedisBroker, redis_server: RedisServer
    ) -> None:
        options = HistoryOptions(size=2, ttl=30.0, meta_ttl=60.0)
        for i in range(5):
            await broker.publish("h", Publication(data=i), options)
        stream, meta = f"{broker.prefix}:{{h}}:s", f"{broker.prefix}:{{h}}:m"
        assert redis_server.cli("XLEN", stream).strip() == "2"
        assert 0 < int(redis_server.cli("PTTL", stream)) <= 30_000
        assert 30_000 < int(redis_server.cli("PTTL", meta)) <= 60_000

    async def test_gap_is_filled_from_the_stream(
        self, broker: RedisBroker, redis_server: RedisServer
    ) -> None:
        recorder = await start(broker)
        await broker.subscribe("g")
        await broker.publish("g", Publication(data=0), HISTORY)
        await recorder.wait_for("g", 1)
        # Publications that reach the stream but not pub/sub (as if pub/sub dropped them).
        await _append_silently(broker, "g", [1, 2])
        await broker.publish("g", Publication(data=3), HISTORY)
        await recorder.wait_for("g", 4)
        assert recorder.data("g") == [0, 1, 2, 3]
        assert [p.offset for p in recorder.of("g")] == [1, 2, 3, 4]
        assert broker.lost_signals == 0

    async def test_gap_beyond_history_signals_loss(self, broker: RedisBroker) -> None:
        recorder = await start(broker)
        await broker.subscribe("g")
        small = HistoryOptions(size=2, ttl=300.0, meta_ttl=3600.0)
        await broker.publish("g", Publication(data=0), small)
        await recorder.wait_for("g", 1)
        await _append_silently(broker, "g", [1, 2, 3], size=2)
        await broker.publish("g", Publication(data=4), small)
        await recorder.wait_for("g", 2)
        assert ("g", None) in recorder.calls
        assert recorder.calls.index(("g", None)) < len(recorder.calls) - 1
        assert recorder.data("g") == [0, 4]

    async def test_epoch_change_signals_loss(self, broker: RedisBroker) -> None:
        recorder = await start(broker)
        await broker.subscribe("e")
        await broker.publish("e", Publication(data=0), HISTORY)
        await recorder.wait_for("e", 1)
        await broker.remove_history("e")
        await broker.publish("e", Publication(data=1), HISTORY)
        await recorder.wait_for("e", 2)
        assert ("e", None) in recorder.calls

    async def test_unsubscribing_on_loss_forgets_the_position(self, broker: RedisBroker) -> None:
        # The hub answers a loss by unsubscribing the channel (its sessions resubscribe): no
        # publication may follow, and the position from before must not outlive the
        # subscription, or it would void the next one's baseline (a spurious loss signal).
        calls: list[tuple[str, object]] = []

        async def handler(channel: str, publication: Publication | None) -> None:
            calls.append((channel, None if publication is None else publication.data))
            if publication is None:
                await broker.unsubscribe(channel)

        await broker.start(handler)
        await broker.subscribe("e")
        await broker.publish("e", Publication(data=0), HISTORY)
        await _wait_until(lambda: len(calls) == 1)
        await broker.remove_history("e")
        await broker.publish("e", Publication(data=1), HISTORY)  # a new epoch: a loss
        await _wait_until(lambda: ("e", None) in calls)
        await broker.remove_history("e")
        await broker.publish("e", Publication(data=2), HISTORY)  # another one, unseen
        await broker.subscribe("e")
        await broker.publish("e", Publication(data=3), HISTORY)
        await _wait_until(lambda: calls[-1] == ("e", 3))
        assert calls == [("e", 0), ("e", None), ("e", 3)]
        assert broker.lost_signals == 1

    async def test_errors_are_hub_errors(self) -> None:
        broker = RedisBroker("redis://127.0.0.1:1/0", socket_timeout=0.5)
        try:
            with pytest.raises(HubError) as info:
                await broker.publish("c", Publication(data=1), HISTORY)
            assert info.value.temporary
            await broker.start(Recorder())
            with pytest.raises(HubError):
                await broker.subscribe("c")
            with pytest.raises(HubError):
                await broker.history("c")
        finally:
            await broker.close()

    async def test_join_leave_relayed_to_other_nodes(self, redis_server: RedisServer) -> None:
        prefix = fresh_prefix()
        seen: list[tuple[str, str, ClientInfo]] = []
        first = RedisBroker(redis_server.url, prefix=prefix)
        second = RedisBroker(
            redis_server.url, prefix=prefix, on_event=lambda *args: seen.append(args)
        )
        try:
            await first.start(Recorder())
            await second.start(Recorder())
            for broker in (first, second):
                await broker.subscribe("room")
            ann = ClientInfo("c1", "ann", {"x": 1})
            await first.announce("join", "room", ann)
            await second.announce("join", "room", ClientInfo("c2", "bob"))  # not to itself
            await first.announce("leave", "room", ann)
            await _wait_until(lambda: len(seen) == 2)
            assert seen == [("join", "room", ann), ("leave", "room", ann)]
        finally:
            await first.close()
            await second.close()

    async def test_backlog_is_bounded_while_delivery_is_slow(
        self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A node that delivers slower than Redis sends: reading stops past BACKLOG_MAX, the
        # rest waits in Redis; everything still arrives, in order, and the pause (longer than
        # the health timeout) isn't taken for a dead Redis.
        monkeypatch.setattr(redis_broker, "BACKLOG_MAX", 20_000)
        broker = RedisBroker(
            redis_server.url, prefix=fresh_prefix(), health_interval=0.05, health_timeout=0.2
        )
        peak = 0
        got: list[int] = []
        release = asyncio.Event()

        async def slow(channel: str, publication: Publication | None) -> None:
            nonlocal peak
            peak = max(peak, broker._backlog)
            if publication is not None and channel == "b":
                got.append(publication.data)
                await release.wait()  # stuck on the first one, until released

        try:
            await broker.start(slow)
            await broker.subscribe("b")
            other = RedisBroker(broker.redis, prefix=broker.prefix)
            for i in range(300):
                await other.publish("b", Publication(data=i, key="x" * 1000), HISTORY)
            await asyncio.sleep(0.6)  # three health timeouts without reading
            assert broker._backlog <= 20_000 + 2_000
            release.set()
            await _wait_until(lambda: len(got) == 300)
            assert got == list(range(300))
            assert 10_000 < peak <= 20_000 + 2_000  # reading paused once past the bound
            assert (broker.lost_signals, broker.reconnections) == (0, 0)
        finally:
            await broker.close()

    async def test_key_unsubscribed_by_redis_is_subscribed_again(
        self, broker: RedisBroker, redis_server: RedisServer
    ) -> None:
        # What a cluster master does when it gives a slot up; the link reports it, and a
        # single Redis's broker subscribes the key again (then checks what was missed).
        recorder = await start(broker)
        await broker.subscribe("d")
        await broker.publish("d", Publication(data=0), HISTORY)
        await recorder.wait_for("d", 1)
        key = f"{broker.prefix}:{{d}}:p".encode()
        [link] = broker._links()
        link._unsubscribed(key)  # as if Redis had sent the unsubscribe reply by itself
        assert key not in link.keys
        await _wait_until(lambda: key in link.keys)
        await broker.publish("d", Publication(data=1), HISTORY)
        await recorder.wait_for("d", 2)
        assert recorder.data("d") == [0, 1]
        assert broker.lost_signals == 0

    async def test_negative_limit(self, broker: RedisBroker) -> None:
        with pytest.raises(ValueError, match="limit"):
            await broker.history("h", limit=-1)


async def _append_silently(
    broker: RedisBroker, channel: str, values: list[int], size: int = 10
) -> None:
    """Append to the stream like a publish whose pub/sub message got lost."""
    # The same script, publishing to a channel nobody listens to.
    meta, stream = (f"{broker.prefix}:{{{channel}}}:{s}" for s in ("m", "s"))
    for value in values:
        payload = encode_publication(Publication(data=value))
        await broker._publish([meta, stream, "nowhere"], [payload, size, 300_000, 3_600_000, "x"])


class TestRedisPresenceSpecifics:
    async def test_expired_entries_removed_from_redis(self, redis_server: RedisServer) -> None:
        # Two nodes with different ttls on one prefix: only a lower bound on time matters, so
        # a slow machine can't make the test fail.
        prefix = fresh_prefix()
        short = RedisPresence(redis_server.url, prefix=prefix, ttl=0.2)
        long = RedisPresence(redis_server.url, prefix=prefix, ttl=60)
        try:
            await short.add("room", ClientInfo("c1", "u"))
            await long.add("room", ClientInfo("c2", "u"))
            await asyncio.sleep(0.3)
            assert set(await short.get("room")) == {"c2"}
            zset = f"{prefix}:{{room}}:pz"
            assert redis_server.cli("ZCARD", zset).strip() == "1"
            assert redis_server.cli("HLEN", f"{prefix}:{{room}}:ph").strip() == "1"
        finally:
            await short.close()
            await long.close()

    async def test_add_many_in_one_pipeline(self, redis_server: RedisServer) -> None:
        presence = RedisPresence(redis_server.url, prefix=fresh_prefix(), ttl=60)
        try:
            entries = [("a", ClientInfo("c1", "u1")), ("a", ClientInfo("c2", "u2", {"x": 1}))]
            await presence.add_many([*entries, ("b", ClientInfo("c3", "u1"))])
            assert await presence.get("a") == {"c1": entries[0][1], "c2": entries[1][1]}
            assert set(await presence.get("b")) == {"c3"}
            await presence.add_many([])
        finally:
            await presence.close()

    def test_ttl_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="ttl"):
            RedisPresence("redis://127.0.0.1:1/0", ttl=0)


_ = (NO_HISTORY, StreamPosition)
