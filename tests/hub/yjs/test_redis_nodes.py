"""Yjs clients on two ``wsend serve`` nodes sharing one real redis-server converge.

Each node relays its clients' updates and awareness through the Redis broker; the documents
are stored in Redis (the node a write arrives on stores it), so a node that loads a document
later gets what the other node's clients wrote.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pycrdt
import pytest

from wsend.cli.serve import HubServer

from ..redis_server import RedisServer, running
from .peers import NodePeer, converged, eventually, start_server, yjs_url


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from running()


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[list[HubServer]]:
    servers = [await start_server(redis=redis_server.url, yjs_store="redis") for _ in range(2)]
    try:
        yield servers
    finally:
        for server in servers:
            await server.stop()


def text_of(server: HubServer, room: str) -> str:
    return str(server.yjs.rooms[room].doc.get("text", type=pycrdt.Text))


async def test_clients_on_two_nodes_converge(nodes: list[HubServer]) -> None:
    room = f"two-{uuid.uuid4().hex[:8]}"
    peers = []
    for i in range(4):  # two clients on each node
        peers.append(await NodePeer.start(yjs_url(nodes[i % 2]), room))
    try:
        await asyncio.gather(*(peer.synced() for peer in peers))
        await asyncio.gather(
            *(peer.call("edit", count=120, seed=seed + 11) for seed, peer in enumerate(peers))
        )
        text = await converged(peers)
        assert len(text) > 100
        assert text_of(nodes[0], f"yjs:{room}") == text
        assert text_of(nodes[1], f"yjs:{room}") == text

        # Awareness crosses nodes too.
        await peers[0].call("user", user={"name": "Ada"})

        async def seen_on_the_other_node() -> bool:
            states = (await peers[1].call("states"))["states"]
            return any(s.get("user", {}).get("name") == "Ada" for s in states.values())

        await eventually(seen_on_the_other_node)
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))


async def test_a_node_loads_what_the_other_stored(nodes: list[HubServer]) -> None:
    room = f"load-{uuid.uuid4().hex[:8]}"
    writer = await NodePeer.start(yjs_url(nodes[0]), room)
    await writer.synced()
    await writer.call("insert", index=0, text="written on node 0")
    await converged([writer], "written on node 0")

    async def stored() -> bool:
        return bool(await nodes[0].yjs.store.load(f"yjs:{room}"))

    await eventually(stored)
    # Node 1 has never seen the room: it loads it from the shared store.
    reader = await NodePeer.start(yjs_url(nodes[1]), room)
    try:
        await reader.synced()
        assert await reader.text() == "written on node 0"
    finally:
        await writer.close()
        await reader.close()
