"""End to end: a client that stops reading, under both slow-consumer policies.

The slow client is a plain ``wsend`` connection that stops calling ``recv()``: its receive queue
fills, reading pauses, the TCP buffers fill, and the hub's writer blocks. The hub must keep its
memory for that connection bounded (the session's queue within its bound, the transport's
buffer near its high-water mark) while fast clients keep receiving everything.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wsend.hub.client import HubClient, Publication
from wsend.hub.codes import DisconnectCode
from wsend.hub.options import NamespaceOptions
from wsend.hub.session import Session

from .e2e import NAMESPACES, RawClient, Running, options, run_hub, token, wait_until

QUEUE_BOUND = 32 * 1024
PAYLOAD = "x" * 8000
# The transport's high-water mark (wsend's default write limit) plus one batch of frames.
BUFFER_BOUND = 65536 + 65536 + 2 * len(PAYLOAD)


def hub_options(policy: str) -> Any:
    ns = NamespaceOptions(
        history_size=100, history_ttl=60, slow_consumer=policy, queue_max_bytes=QUEUE_BOUND
    )
    return options(namespaces={**NAMESPACES, "ticks": ns})


async def stalled_client(running: Running) -> tuple[RawClient, Session]:
    """A subscribed client that will stop reading (it holds one message before pausing)."""
    client = await RawClient.open(running.url, max_queue=1, ping_interval=None, compression=None)
    await client.connect(token("slow"))
    await client.call("subscribe", channel="ticks:all")
    [session] = running.hub.sessions("slow")
    return client, session


def memory(running: Running, session: Session) -> tuple[int, int]:
    """What the hub holds for a session: its queue's bytes and the transport's buffer."""
    link = running.hub._links.get(session)
    buffered = link.ws.buffered_amount if link is not None else 0
    return session.queue.size_bytes, buffered


class Fast:
    """A fast subscriber (the real Python client) counting what it receives."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def __call__(self, pub: Publication) -> None:
        self.received.append(pub.data)


@pytest.mark.time_dependent
async def test_disconnect_policy_closes_4002_and_bounds_memory() -> None:
    async with run_hub(hub_options("disconnect")) as running:
        fast = Fast()
        async with HubClient(running.url, token=token("fast"), max_queue=10_000) as client:
            await client.subscribe("ticks:all", on_publication=fast).ready()
            slow, session = await stalled_client(running)
            peak = (0, 0)
            sent = 0
            while not session.closed:
                await running.hub.publish("ticks:all", {"n": sent, "pad": PAYLOAD})
                sent += 1
                await asyncio.sleep(0.0005)  # let the broker deliver as we go
                now = memory(running, session)
                peak = (max(peak[0], now[0]), max(peak[1], now[1]))
            assert session.close_code == DisconnectCode.SLOW_CONSUMER
            assert peak[0] <= QUEUE_BOUND
            assert peak[1] <= BUFFER_BOUND
            # The slow client reads again: what was in flight, then the close frame.
            assert await slow.closed() == DisconnectCode.SLOW_CONSUMER
            await wait_until(lambda: len(fast.received) == sent)
            assert [d["n"] for d in fast.received] == list(range(sent))
        metrics = running.hub.metrics.render().decode()
        assert 'wsend_hub_disconnects_total{code="4002"} 1.0' in metrics
        assert 'wsend_hub_dropped_total{reason="slow_consumer"}' in metrics


@pytest.mark.time_dependent
async def test_conflate_policy_delivers_latest_per_key() -> None:
    keys = [f"k{i}" for i in range(3)]  # one queued frame per key fits in the bound
    async with run_hub(hub_options("conflate")) as running:
        fast = Fast()
        async with HubClient(running.url, token=token("fast"), max_queue=100_000) as client:
            sub = client.subscribe("ticks:all", on_publication=fast, fill_gaps=False)
            await sub.ready()
            slow, session = await stalled_client(running)
            latest: dict[str, int] = {}
            sent = 0
            # Publish until the hub's writer for the slow client is blocked and the session
            # has conflated (replaced) queued publications, then some more.
            while session.queue.replaced < 200 and not session.closed:
                key = keys[sent % len(keys)]
                await running.hub.publish("ticks:all", {"n": sent, "pad": PAYLOAD}, key=key)
                latest[key] = sent
                sent += 1
                await asyncio.sleep(0.0005)
                queued, buffered = memory(running, session)
                assert queued <= QUEUE_BOUND
                assert buffered <= BUFFER_BOUND
            assert not session.closed
            # Counted as they happen, not when the session ends.
            metrics = running.hub.metrics.render().decode()
            line = next(
                x
                for x in metrics.splitlines()
                if x.startswith('wsend_hub_dropped_total{reason="conflated"}')
            )
            assert float(line.split()[-1]) == session.queue.replaced
            # The slow client resumes: the last publication it gets per key is the latest.
            seen: dict[str, int] = {}
            async with asyncio.timeout(10):
                while seen != latest:
                    for frame in await slow.frames():
                        if frame.get("push") == "pub":
                            seen[frame["key"]] = frame["data"]["n"]
            assert seen == latest
            await wait_until(lambda: len(fast.received) == sent)
            assert [d["n"] for d in fast.received] == list(range(sent))
            await slow.close()


async def test_a_client_that_never_reads_again_is_dropped() -> None:
    """The close can't wait for a writer blocked on a peer that doesn't read: the close frame
    is written at once and the close timeout drops the connection."""
    quick = {"close_timeout": 0.2}
    async with run_hub(hub_options("disconnect"), serve_options=quick) as running:
        slow, session = await stalled_client(running)
        sent = 0
        while not session.closed:
            await running.hub.publish("ticks:all", {"n": sent, "pad": PAYLOAD})
            sent += 1
            await asyncio.sleep(0.0005)
        await wait_until(lambda: session not in running.hub._links)
        assert session.close_code == DisconnectCode.SLOW_CONSUMER
        slow.ws.abort()
