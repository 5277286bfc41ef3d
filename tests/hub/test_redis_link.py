"""One pub/sub link of the Redis engine against a real redis-server: what it leaves subscribed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from wsend.hub.redis_link import PubSubLink

from .contract import wait_until
from .redis_server import RedisServer, running


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running()


class Owner:
    """A link owner that records what the link reports."""

    health_interval = 0.5
    health_timeout = 10.0

    def __init__(self) -> None:
        self.confirmed: list[tuple[bytes, bool]] = []
        self.dropped: list[bytes] = []
        self.lost = 0

    def reading_paused(self) -> bool:
        return False

    async def link_message(self, link: PubSubLink, key: bytes, payload: bytes) -> None:
        pass

    def link_confirmed(self, link: PubSubLink, key: bytes, resumed: bool) -> None:
        self.confirmed.append((key, resumed))

    def link_dropped(self, link: PubSubLink, key: bytes) -> None:
        self.dropped.append(key)

    def link_live(self, link: PubSubLink, again: bool) -> None:
        pass

    async def link_lost(self, link: PubSubLink) -> None:
        self.lost += 1


def channels(server: RedisServer, sharded: bool) -> list[str]:
    kind = "SHARDCHANNELS" if sharded else "CHANNELS"
    return sorted(server.cli("PUBSUB", kind, "link:*").split())


@pytest.mark.parametrize("sharded", [False, True], ids=["subscribe", "ssubscribe"])
async def test_a_key_left_before_redis_confirms_it_is_unsubscribed(
    redis_server: RedisServer, sharded: bool
) -> None:
    """A key discarded while the connection still awaits the confirmations of its subscribe
    must not stay subscribed in Redis (the connection lives on for the other keys)."""
    redis = Redis.from_url(redis_server.url)
    paused = asyncio.Event()

    async def connect() -> AbstractConnection:
        conn: AbstractConnection = redis.connection_pool.make_connection()
        await conn.connect()
        if not paused.is_set():  # the subscribes of this connection wait in Redis's socket
            redis_server.pause()
            paused.set()
        return conn

    link = PubSubLink(Owner(), "redis", connect, sharded=sharded)
    try:
        await link.add(b"link:gone", resumed=False)
        await link.add(b"link:stays", resumed=False)
        try:
            await wait_until(lambda: b"link:gone" in link._sent, timeout=5)
            assert not link.live.is_set()
            await link.discard(b"link:gone")
        finally:
            redis_server.resume()
        await asyncio.wait_for(link.live.wait(), 5)
        await wait_until(lambda: channels(redis_server, sharded) == ["link:stays"], timeout=5)
        assert link.keys == {b"link:stays": True}
        assert link.owner.dropped == []  # type: ignore[attr-defined]
        # The reply to that unsubscribe was counted, not taken for Redis dropping the key.
        assert not link._unsubscribing
    finally:
        redis_server.resume()
        await link.close()
        await redis.aclose()


async def test_discarding_every_key_closes_the_connection(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)

    async def connect() -> AbstractConnection:
        conn: AbstractConnection = redis.connection_pool.make_connection()
        await conn.connect()
        return conn

    owner = Owner()
    link = PubSubLink(owner, "redis", connect)
    try:
        await link.add(b"link:only", resumed=False)
        await asyncio.wait_for(link.live.wait(), 5)
        assert owner.confirmed == [(b"link:only", False)]
        assert channels(redis_server, False) == ["link:only"]
        await link.discard(b"link:only")
        await wait_until(lambda: link.done, timeout=5)
        await wait_until(lambda: channels(redis_server, False) == [], timeout=5)
        assert owner.lost == 0
    finally:
        await link.close()
        await redis.aclose()
