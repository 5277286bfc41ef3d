"""Automatic pipelining of the Redis engine, against a real redis-server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from wsend.hub.broker import ClientInfo, HistoryOptions, Publication
from wsend.hub.codes import HubError
from wsend.hub.redis import RedisBroker, RedisPresence
from wsend.hub.redis_common import ENGINE_ERRORS
from wsend.hub.redis_pipeline import AutoPipeline

from .redis_server import RedisServer, free_port, running

HISTORY = HistoryOptions(size=1000, ttl=60.0)
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running()


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker(redis_server.url, prefix=f"pipe{next(_prefixes)}")
    yield broker
    await broker.close()


async def test_a_burst_goes_in_one_pipeline_in_the_order_issued(broker: RedisBroker) -> None:
    pipeline = broker.pipeline
    assert pipeline is not None
    await broker.publish("burst", Publication(data=-1), HISTORY)  # Redis knows the script
    positions = await asyncio.gather(
        *(broker.publish("burst", Publication(data=i), HISTORY) for i in range(300))
    )
    # The first went out alone (nothing was in flight); the others waited for the end of the
    # turn and went together, in the order issued.
    assert (pipeline.pipelines, pipeline.commands) == (1, 299)
    offsets = [p.offset for p in positions]
    assert sorted(offsets) == list(range(2, 302))
    assert offsets[1:] == sorted(offsets[1:])
    history = await broker.history("burst", history=HISTORY)
    pipelined = [p.data for p in history.publications if p.data not in (-1, 0)]
    assert pipelined == list(range(1, 300))


async def test_a_command_alone_is_not_delayed_into_a_pipeline(broker: RedisBroker) -> None:
    pipeline = broker.pipeline
    assert pipeline is not None
    for i in range(5):
        position = await broker.publish("alone", Publication(data=i), HISTORY)
        assert position.offset == i + 1
    assert (pipeline.pipelines, pipeline.commands) == (0, 0)


async def test_an_error_fails_its_own_command_only(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    # The channel's position hash is a string: its script fails (WRONGTYPE); the others in
    # the same pipeline are published.
    redis_server.cli("SET", f"{broker.prefix}:{{bad}}:m", "not a hash")
    channels = ["good1", "good2", "bad", "good3"]
    results = await asyncio.gather(
        *(broker.publish(name, Publication(data=name), HISTORY) for name in channels),
        return_exceptions=True,
    )
    assert broker.pipeline is not None
    assert broker.pipeline.commands == 3
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1
    assert results.index(errors[0]) == 2
    assert isinstance(errors[0], HubError)
    assert errors[0].code == 100
    assert isinstance(errors[0].__cause__, ResponseError)
    assert [r.offset for r in results if not isinstance(r, BaseException)] == [1, 1, 1]


async def test_scripts_unknown_to_redis_load_again(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    await broker.publish("flush", Publication(data=0), HISTORY)  # the script is loaded
    redis_server.cli("SCRIPT", "FLUSH")
    positions = await asyncio.gather(
        *(broker.publish("flush", Publication(data=i), HISTORY) for i in range(1, 20))
    )
    assert sorted(p.offset for p in positions) == list(range(2, 21))
    result = await broker.history("flush", history=HISTORY)
    assert sorted(p.data for p in result.publications) == list(range(20))


async def test_a_failed_connection_fails_every_command_of_its_pipeline() -> None:
    redis = Redis(port=free_port(), socket_connect_timeout=1)  # nothing listens there
    pipeline = AutoPipeline(redis)
    try:
        results = await asyncio.gather(
            *(pipeline.execute("PUBLISH", "x", str(i)) for i in range(10)),
            return_exceptions=True,
        )
        assert all(isinstance(r, ENGINE_ERRORS) for r in results), results
        assert pipeline.pipelines == 1
    finally:
        await pipeline.close()
        await redis.aclose()


async def test_a_cancelled_caller_leaves_the_others_their_replies(
    redis_server: RedisServer,
) -> None:
    redis = Redis.from_url(redis_server.url)
    pipeline = AutoPipeline(redis)
    try:
        calls = [asyncio.ensure_future(pipeline.execute("ECHO", str(i))) for i in range(6)]
        await asyncio.sleep(0)  # each call queued (the first went alone)
        calls[3].cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[3], asyncio.CancelledError)
        assert [r for i, r in enumerate(results) if i != 3] == [b"0", b"1", b"2", b"4", b"5"]
        await pipeline.close()
        assert not pipeline._tasks
    finally:
        await redis.aclose()


async def test_presence_of_a_crowd_joining_at_once(redis_server: RedisServer) -> None:
    presence = RedisPresence(redis_server.url, prefix=f"pipe{next(_prefixes)}", ttl=30)
    pipeline = presence.pipeline
    assert pipeline is not None
    try:
        infos = [ClientInfo(f"c{i}", f"u{i % 50}", {"n": i}) for i in range(200)]
        await asyncio.gather(*(presence.add("room", info) for info in infos))
        assert pipeline.commands == 199  # all but the first, which went alone
        present, stats = await asyncio.gather(presence.get("room"), presence.stats("room"))
        assert present == {info.client: info for info in infos}
        assert (stats.num_clients, stats.num_users) == (200, 50)
        await asyncio.gather(*(presence.remove("room", f"c{i}") for i in range(0, 200, 2)))
        assert set(await presence.get("room")) == {f"c{i}" for i in range(1, 200, 2)}
    finally:
        await presence.close()


async def test_close_waits_for_the_pipelines_in_flight(redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    pipeline = AutoPipeline(redis)
    try:
        calls = [asyncio.ensure_future(pipeline.execute("ECHO", str(i))) for i in range(5)]
        await asyncio.sleep(0)  # queued; the pipeline goes out at the end of this turn
        await asyncio.sleep(0)
        assert pipeline._tasks
        await pipeline.close()
        assert all(call.done() for call in calls[1:])
        assert [call.result() for call in calls[1:]] == [b"1", b"2", b"3", b"4"]
        assert await calls[0] == b"0"
    finally:
        await redis.aclose()
