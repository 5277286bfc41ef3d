"""Unmodified Yjs clients (yjs + y-websocket from npm, in Node) on ``wsend serve``'s /yjs.

Several clients edit one document at once and converge, with the server's copy; late joiners
get everything; the document survives a restart with the SQLite store; awareness is relayed,
shown in the hub's presence and removed when a client leaves; tokens and read-only rooms.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pycrdt
import pytest

from wsend.cli.serve import HubServer
from wsend.hub.auth import make_token
from wsend.hub.client import HubClient

from .peers import NodePeer, converged, eventually, start_server, yjs_url

SECRET = "a-yjs-test-secret-of-32-bytes-or-more"


def server_text(server: HubServer, room: str) -> str:
    doc = server.yjs.rooms[room].doc
    return str(doc.get("text", type=pycrdt.Text))


@pytest.fixture
async def server(tmp_path: Path):
    server = await start_server(tmp_path)
    try:
        yield server
    finally:
        await server.stop()


async def start_peers(url: str, room: str, count: int, **kwargs) -> list[NodePeer]:
    peers = [await NodePeer.start(url, room, **kwargs) for _ in range(count)]
    await asyncio.gather(*(peer.synced() for peer in peers))
    return peers


async def close_all(peers: list[NodePeer]) -> None:
    await asyncio.gather(*(peer.close() for peer in peers))


async def test_concurrent_edits_converge(server: HubServer) -> None:
    room = f"storm-{uuid.uuid4().hex[:8]}"
    peers = await start_peers(yjs_url(server), room, 4)
    try:
        # Four clients at once, 150 random inserts and deletes each, interleaved.
        await asyncio.gather(
            *(peer.call("edit", count=150, seed=seed + 1) for seed, peer in enumerate(peers))
        )
        text = await converged(peers)
        assert len(text) > 100
        assert server_text(server, f"yjs:{room}") == text

        # A late joiner gets the whole document.
        late = await NodePeer.start(yjs_url(server), room)
        await late.synced()
        assert await late.text() == text
        await late.close()
    finally:
        await close_all(peers)


async def test_document_survives_a_restart(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    room = "kept"
    peers = await start_peers(yjs_url(server), room, 2)
    try:
        await peers[0].call("insert", index=0, text="before the restart. ")
        await peers[1].call("edit", count=60, seed=5)
        text = await converged(peers)
    finally:
        await close_all(peers)
    await server.stop()  # compacts and stores the document

    server = await start_server(tmp_path)
    try:
        peer = await NodePeer.start(yjs_url(server), room)
        await peer.synced()
        assert await peer.text() == text
        # Compacted: one row left for the room.
        assert len(await server.yjs.store.load("yjs:kept")) == 1
        await peer.close()
    finally:
        await server.stop()


async def test_clients_reconnect_after_a_restart_and_keep_editing(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    port = server.port
    peers = await start_peers(yjs_url(server), "live", 2)
    try:
        await peers[0].call("insert", index=0, text="one ")
        await converged(peers, "one ")
        await server.stop()
        # Offline edits in one client while the server is down.
        await peers[1].call("insert", index=4, text="two ")
        server = await start_server(tmp_path, port=port)
        await asyncio.gather(*(peer.wait_event("synced", count=2) for peer in peers))
        await peers[0].call("insert", index=0, text="zero ")
        assert await converged(peers) == "zero one two "
        assert server_text(server, "yjs:live") == "zero one two "
    finally:
        await close_all(peers)
        await server.stop()


async def test_awareness_is_relayed_in_presence_and_removed(server: HubServer) -> None:
    room = f"aware-{uuid.uuid4().hex[:8]}"
    ada, linus = await start_peers(yjs_url(server), room, 2)
    try:
        await ada.call("user", user={"name": "Ada", "color": "#f00"})

        async def names(peer: NodePeer) -> list[str]:
            states = (await peer.call("states"))["states"]
            return sorted(s["user"]["name"] for s in states.values() if s.get("user"))

        async def linus_sees_ada() -> bool:
            return await names(linus) == ["Ada"]

        await eventually(linus_sees_ada)

        # The hub's presence of the room's channel lists both, Ada with her awareness user.
        hub = HubClient(f"ws://127.0.0.1:{server.port}/ws")
        await hub.connect()
        try:

            async def present(count: int, ada: bool) -> bool:
                clients = await hub.presence(f"yjs:{room}")
                infos = [c.info for c in clients.values()]
                return len(clients) == count and ada == ({"name": "Ada", "color": "#f00"} in infos)

            await eventually(lambda: present(2, True))

            # A late joiner gets Ada's state at once.
            late = await NodePeer.start(yjs_url(server), room)
            await late.synced()

            async def late_sees_ada() -> bool:
                return await names(late) == ["Ada"]

            await eventually(late_sees_ada)

            # Ada leaves: her state is removed for the others, and from presence.
            await ada.close()

            async def nobody_sees_ada() -> bool:
                return not await names(linus) and not await names(late)

            await eventually(nobody_sees_ada)
            await eventually(lambda: present(2, False))  # Linus and the late joiner
            await late.close()
        finally:
            await hub.close()
    finally:
        await close_all([ada, linus])


async def test_tokens_and_read_only_rooms(tmp_path: Path) -> None:
    hub_table = {
        "namespaces": {
            "yjs": {"publish": True, "subscribe": "authenticated"},
            "view": {"publish": False},
        }
    }
    server = await start_server(
        tmp_path, jwt_secret=SECRET, hub=hub_table, yjs={"namespaces": ["yjs", "view"]}
    )
    url = yjs_url(server)
    token = make_token(SECRET, "ada")
    try:
        # No token, a bad one: refused with 4401 (y-websocket stops retrying).
        for params in (None, {"token": "not-a-jwt"}):
            peer = await NodePeer.start(url, "secret", params)
            closed = await peer.wait_event("terminal")
            assert closed["code"] == 4401
            await peer.close()
        # Not a Yjs namespace: 4404.
        peer = await NodePeer.start(url, "chat:lobby", {"token": token})
        assert (await peer.wait_event("terminal"))["code"] == 4404
        await peer.close()

        writer = await NodePeer.start(url, "view:board", {"token": token})
        reader = await NodePeer.start(url, "view:board", {"token": token})
        await writer.synced()
        await reader.synced()
        # "view" has publish = false: everyone is read-only there; writes are dropped.
        await writer.call("insert", index=0, text="ignored")
        await asyncio.sleep(0.3)
        assert await reader.text() == ""
        assert server_text(server, "view:board") == ""
        await close_all([writer, reader])

        # With a token, "yjs" (publish = true) is writable.
        peers = await start_peers(url, "secret", 2, params={"token": token})
        await peers[0].call("insert", index=0, text="hello")
        assert await converged(peers) == "hello"
        await close_all(peers)
    finally:
        await server.stop()
