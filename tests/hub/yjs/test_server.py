"""The Yjs endpoint with Python clients speaking y-protocols over wsend (pycrdt documents):
sync, late joiners, hostile messages, limits, unloading, token expiry, lost publications.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pycrdt
import pytest

import wsend
from wsend.cli.serve import HubServer
from wsend.exceptions import ConnectionClosed
from wsend.hub.auth import make_token
from wsend.hub.broker import Publication
from wsend.hub.codes import DisconnectCode
from wsend.hub.options import ConfigError
from wsend.hub.yjs import MemoryStore, YjsOptions, YjsServer
from wsend.hub.yjs.protocol import (
    AwarenessEntry,
    AwarenessMessage,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    YMessage,
    awareness_message,
    encode_awareness,
    parse_message,
    sync_step1,
    sync_step2,
    sync_update,
)
from wsend.hub.yjs.room import YConnection

from .peers import eventually, start_server, until

SECRET = "a-yjs-test-secret-of-32-bytes-or-more"


class PyPeer:
    """A Yjs client in Python: a pycrdt document synced over a wsend connection."""

    def __init__(self, ws: wsend.ClientConnection) -> None:
        self.ws = ws
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.text = self.doc.get("text", type=pycrdt.Text)
        self.received: list[YMessage] = []

    @classmethod
    async def connect(cls, server: HubServer, room: str, query: str = "") -> PyPeer:
        ws = await wsend.connect(f"ws://127.0.0.1:{server.port}/yjs/{room}{query}")
        return cls(ws)

    async def recv(self, timeout: float = 5.0) -> YMessage:
        message = parse_message(await asyncio.wait_for(self.ws.recv(), timeout))
        self.received.append(message)
        if isinstance(message, SyncStep2 | SyncUpdate):
            self.doc.apply_update(message.update)
        return message

    async def sync(self) -> None:
        """The y-websocket handshake: answer the server's SyncStep1, get its SyncStep2."""
        first = await self.recv()
        assert isinstance(first, SyncStep1)
        await self.ws.send(sync_step2(self.doc.get_update(first.state_vector)))
        await self.ws.send(sync_step1(self.doc.get_state()))
        while not isinstance(await self.recv(), SyncStep2):
            pass

    async def insert(self, index: int, value: str) -> None:
        before = self.doc.get_state()
        self.text.insert(index, value)
        await self.ws.send(sync_update(self.doc.get_update(before)))

    async def wait_text(self, expected: str) -> None:
        async with asyncio.timeout(5):
            while str(self.text) != expected:
                await self.recv()

    async def closed(self) -> int | None:
        """Read until the server closes the connection; return its close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), 5)
        except ConnectionClosed:
            return self.ws.close_code


@pytest.fixture
async def server() -> AsyncIterator[HubServer]:
    server = await start_server(
        yjs={"max_message_size": 4000, "max_document_size": 8000, "max_awareness_clients": 2}
    )
    try:
        yield server
    finally:
        await server.stop()


async def test_python_clients_sync_and_late_joiners_get_everything(server: HubServer) -> None:
    ada = await PyPeer.connect(server, "py")
    await ada.sync()
    await ada.insert(0, "hello")
    linus = await PyPeer.connect(server, "py")
    await linus.sync()
    assert str(linus.text) == "hello"
    await linus.insert(5, " world")
    await ada.wait_text("hello world")
    await ada.ws.close()
    await linus.ws.close()


async def test_hostile_messages_close_only_their_connection(server: HubServer) -> None:
    witness = await PyPeer.connect(server, "hostile")
    await witness.sync()
    cases: list[tuple[str | bytes, int]] = [
        ("text", 1003),
        (b"\x04", 1002),
        (b"\x00\x02\x09ab", 1002),
        (sync_update(b"\xff\xff\xff"), 1007),
        (sync_step1(b"\xff\xff"), 1007),
        (awareness_message(b"\x01\x01\x01\x02{x"), 1007),
        (sync_update(b"x" * 5000), 1009),
    ]
    for message, code in cases:
        attacker = await PyPeer.connect(server, "hostile")
        await attacker.sync()
        await attacker.ws.send(message)
        assert await attacker.closed() == code, message
    # The witness was not affected.
    writer = await PyPeer.connect(server, "hostile")
    await writer.sync()
    await writer.insert(0, "still fine")
    await witness.wait_text("still fine")
    await writer.ws.close()
    await witness.ws.close()


async def test_document_size_limit(server: HubServer) -> None:
    writer = await PyPeer.connect(server, "big")
    await writer.sync()
    for _ in range(4):
        await writer.insert(0, "x" * 2500)  # 4 updates of 2.5 KB pass the 8 KB limit
    assert await writer.closed() == 4413
    assert server.yjs.rooms["yjs:big"].size <= 8000


async def test_awareness_rules(server: HubServer) -> None:
    ada = await PyPeer.connect(server, "aw")
    await ada.sync()
    mallory = await PyPeer.connect(server, "aw")
    await mallory.sync()
    await ada.ws.send(awareness_message(encode_awareness([AwarenessEntry(1, 1, '{"a":1}')])))
    message = await mallory.recv()
    assert isinstance(message, AwarenessMessage)
    # Mallory can't remove or replace Ada's state.
    await mallory.ws.send(awareness_message(encode_awareness([AwarenessEntry(1, 9, "null")])))
    await mallory.ws.send(b"\x03")  # query awareness
    answer = await mallory.recv()
    assert isinstance(answer, AwarenessMessage)
    assert answer.entries == (AwarenessEntry(1, 1, '{"a":1}'),)
    # An older clock changes nothing; a state per client id, at most 2 ids per connection.
    await ada.ws.send(awareness_message(encode_awareness([AwarenessEntry(1, 0, '{"old":1}')])))
    entries = [AwarenessEntry(i, 1, "{}") for i in (2, 3)]
    await ada.ws.send(awareness_message(encode_awareness(entries)))
    assert await ada.closed() == 1008
    message = await mallory.recv()  # Ada's state removed when she left
    assert isinstance(message, AwarenessMessage)
    assert message.entries == (AwarenessEntry(1, 2, "null"),)
    # Stale states are removed after the timeout (0 here), and tombstones forgotten.
    await mallory.ws.send(awareness_message(encode_awareness([AwarenessEntry(5, 1, "{}")])))
    room = server.yjs.rooms["yjs:aw"]
    await until(lambda: 5 in room.awareness)
    room.expire_awareness(0)
    assert room.awareness[5].state == "null"
    room.expire_awareness(0)
    assert room.awareness == {}
    await mallory.ws.close()


async def test_rooms_unload_when_empty_and_are_compacted(tmp_path: Path) -> None:
    server = await start_server(
        tmp_path, yjs={"unload_after": 0, "compact_after": 3, "max_rooms": 1}
    )
    try:
        peer = await PyPeer.connect(server, "unload")
        await peer.sync()
        for i in range(5):
            await peer.insert(0, str(i))
        # Only one room per process here: another one is refused with 1013.
        other = await PyPeer.connect(server, "other")
        assert await other.closed() == 1013
        await peer.ws.close()

        async def unloaded() -> bool:
            stored = await server.yjs.store.load("yjs:unload")
            return not server.yjs.rooms and len(stored) == 1

        await eventually(unloaded)
        again = await PyPeer.connect(server, "unload")
        await again.sync()
        assert str(again.text) == "43210"
        await again.ws.close()
    finally:
        await server.stop()


async def test_token_expiry_and_claims(tmp_path: Path) -> None:
    server = await start_server(tmp_path, jwt_secret=SECRET)
    try:
        expired = make_token(SECRET, "ada", exp=time.time() - 60)
        peer = await PyPeer.connect(server, "t", f"?token={expired}")
        assert await peer.closed() == 4004
        soon = make_token(SECRET, "ada", exp=time.time() + 3600)
        peer = await PyPeer.connect(server, "t", f"?token={soon}")
        await peer.sync()
        server.yjs.check_expiry(time.time() + 7200)
        assert await peer.closed() == 4004
        # A user-private room admits only its users.
        private = make_token(SECRET, "bob")
        peer = await PyPeer.connect(server, "notes%23ada", f"?token={private}")
        assert await peer.closed() == 4403
        peer = await PyPeer.connect(server, "notes%23bob", f"?token={private}")
        await peer.sync()
        await peer.ws.close()
    finally:
        await server.stop()


async def test_lost_publications_are_recovered_from_the_store(server: HubServer) -> None:
    peer = await PyPeer.connect(server, "lost")
    await peer.sync()
    room = server.yjs.rooms["yjs:lost"]
    # Another node's client wrote this; its publication never arrived here.
    other: pycrdt.Doc[Any] = pycrdt.Doc()
    other.get("text", type=pycrdt.Text).insert(0, "from elsewhere")
    await server.yjs.store.append("yjs:lost", other.get_update())
    await room.unsubscribe("yjs:lost")  # what the hub does when the broker lost some
    await peer.wait_text("from elsewhere")
    # Publications that aren't the room's are ignored.
    for data in ("junk", {"n": "x", "u": b"\xff"}, {"n": "x", "a": b"\x01"}, {"n": "x"}):
        assert room.deliver_publication("yjs:lost", Publication(data=data))
    assert str(room.doc.get("text", type=pycrdt.Text)) == "from elsewhere"
    await peer.ws.close()


async def test_options_are_checked(server: HubServer) -> None:
    with pytest.raises(ConfigError, match=r"yjs\.max_rooms"):
        YjsOptions.from_dict({"max_rooms": 0})
    with pytest.raises(ConfigError, match=r"yjs\.nope"):
        YjsOptions.from_dict({"nope": 1})
    with pytest.raises(ConfigError, match=r"yjs\.namespaces"):
        YjsOptions.from_dict({"namespaces": "yjs"})
    with pytest.raises(ConfigError, match=r"yjs\.unload_after"):
        YjsOptions.from_dict({"unload_after": "soon"})
    with pytest.raises(ConfigError, match=r"yjs\.namespaces\.absent"):
        YjsServer(server.hub, YjsOptions(namespaces=("absent",)))
    with pytest.raises(ConfigError, match="namespaces"):
        YjsOptions(namespaces=())
    with pytest.raises(ConfigError, match="unload_after"):
        YjsOptions(unload_after=-1)
    assert YjsOptions.from_dict({"namespaces": ["yjs"], "unload_after": 1.5}).unload_after == 1.5


def test_a_slow_client_is_closed_with_4002() -> None:
    conn = YConnection(
        None,  # type: ignore[arg-type]  # never written to here
        user="",
        info=None,
        writable=True,
        expires_at=None,
        queue_max_bytes=10,
    )
    conn.send(b"x" * 50)  # an empty queue takes any one message
    conn.send(b"y" * 5)
    assert conn.closing == (DisconnectCode.SLOW_CONSUMER, "slow consumer")
    conn.send(b"z")  # ignored once closing
    conn.close(1000, "")
    assert conn.closing[0] == DisconnectCode.SLOW_CONSUMER


class FailingStore(MemoryStore):
    async def load(self, room: str) -> list[bytes]:
        raise OSError("disk on fire")


async def test_a_document_that_cant_load_closes_its_clients_with_1011(
    server: HubServer,
) -> None:
    server.yjs.store = FailingStore()
    peer = await PyPeer.connect(server, "broken")
    assert await peer.closed() == 1011
    assert "yjs:broken" not in server.yjs.rooms


async def test_can_write_hook_and_other_refusals(server: HubServer) -> None:
    async def only_ada(user: str, channel: str) -> bool:
        return user == "ada"

    server.yjs.can_write = only_ada
    peer = await PyPeer.connect(server, "hook")
    await peer.sync()
    await peer.insert(0, "dropped")
    await peer.ws.send(b"\x02\x00\x02hi")  # an auth message from a client: ignored
    await peer.ws.send(sync_step1(b"\x00"))
    await peer.recv()  # still connected: the answer
    assert str(server.yjs.rooms["yjs:hook"].doc.get("text", type=pycrdt.Text)) == ""
    await peer.ws.close()
    # Tokens aren't accepted without keys; an unknown namespace; a server shutting down.
    peer = await PyPeer.connect(server, "x", "?token=abc")
    assert await peer.closed() == 4401
    peer = await PyPeer.connect(server, "nope:x")
    assert await peer.closed() == 4404
    await server.yjs.close()
    peer = await PyPeer.connect(server, "late")
    assert await peer.closed() == DisconnectCode.SHUTDOWN


async def test_rooms_stay_loaded_for_the_grace_period_and_keep_presence(
    server: HubServer,
) -> None:
    peer = await PyPeer.connect(server, "grace")
    await peer.sync()
    room = server.yjs.rooms["yjs:grace"]
    await server.yjs.refresh_presence()
    assert len(await server.hub.presence_of("yjs:grace")) == 1
    await peer.ws.close()
    await until(lambda: room.unload_timer is not None)
    again = await PyPeer.connect(server, "grace")  # back within unload_after: same room
    await again.sync()
    assert server.yjs.rooms["yjs:grace"] is room
    assert room.unload_timer is None
    # A removal at the clock of the state it removes wins; repeated, it changes nothing.
    for _ in range(2):
        await again.ws.send(awareness_message(encode_awareness([AwarenessEntry(9, 1, "{}")])))
        await again.ws.send(awareness_message(encode_awareness([AwarenessEntry(9, 1, "null")])))
    await until(lambda: 9 in room.awareness and room.awareness[9].state == "null")
    await again.ws.close()


async def test_new_documents_get_the_apps_first_update() -> None:
    server = await start_server(apps=("collab",))
    try:
        peer = await PyPeer.connect(server, "collab.pad")
        await peer.sync()
        assert str(peer.text).startswith("Welcome to the shared pad!")
        other = await PyPeer.connect(server, "notes")
        await other.sync()
        assert str(other.text) == ""
        await peer.ws.close()
        await other.ws.close()
    finally:
        await server.stop()
