"""End to end: how a publication reaches many subscribers.

A publication's ``pub`` push is encoded once per codec and framed once as a WebSocket message
(:meth:`PubFrames.message_for`); a subscriber whose connection can take it as is (nothing
queued, nothing being written, no compression, a peer that reads) gets that shared message
written straight to its socket, without a queue entry or a wakeup of its writer. Everything
else takes the queue: compressed connections, sessions with replies waiting, slow peers (whose
slow-consumer policy then applies, see test_slow_consumer.py). Over real sockets, with real
wsend and hub clients.
"""

from __future__ import annotations

import asyncio
import json

import wsend
from wsend.asyncio.broadcast import write_prepared
from wsend.hub.client import HubClient
from wsend.hub.options import NamespaceOptions
from wsend.hub.session import Session

from .e2e import NAMESPACES, RawClient, options, run_hub, token, wait_until


def sessions_of(running: object, user: str) -> Session:
    [session] = running.hub.sessions(user)  # type: ignore[attr-defined]
    return session


async def test_live_publications_are_written_once_framed_without_the_queue() -> None:
    async with run_hub() as running:
        clients = []
        for i in range(5):
            client = await RawClient.open(running.url, compression=None)
            await client.connect(token(f"u{i}"))
            await client.call("subscribe", channel="feed:room")
            clients.append(client)
        links = [running.hub._links[sessions_of(running, f"u{i}")] for i in range(5)]
        assert all(link.conn is not None for link in links)
        # The replies went out through the writers, which then ended: an idle session holds
        # no writer task.
        await wait_until(lambda: all(link.writer is None for link in links))
        sent_before = running.hub.metrics.messages_out._value.get()
        bytes_before = running.hub.metrics.bytes_out._value.get()
        for n in range(20):
            await running.hub.publish("feed:room", {"n": n})
        lengths = []
        for client in clients:  # one WebSocket message per publication
            messages = [await client.ws.recv() for _ in range(20)]
            assert [json.loads(m)["data"]["n"] for m in messages] == list(range(20))
            lengths += [len(m.encode()) for m in messages]
        # Written by write_now: no writer was started, nothing was queued.
        assert all(link.writer is None for link in links)
        assert all(len(sessions_of(running, f"u{i}").queue) == 0 for i in range(5))
        # Counted like the writer counts: one message each, its payload's bytes.
        assert running.hub.metrics.messages_out._value.get() - sent_before == 100
        assert running.hub.metrics.bytes_out._value.get() - bytes_before == sum(lengths)
        for client in clients:
            await client.close()


async def test_msgpack_subscribers_get_the_shared_binary_message() -> None:
    async with run_hub() as running:
        plain = {"compression": None}
        json_client = HubClient(running.url, token=token("j"), ws_options=plain)
        pack_client = HubClient(running.url, token=token("m"), encoding="msgpack", ws_options=plain)
        async with json_client, pack_client:
            subs = [
                json_client.subscribe("chat:room"),
                pack_client.subscribe("chat:room"),
            ]
            for sub in subs:
                await sub.ready()
            links = [running.hub._links[sessions_of(running, user)] for user in "jm"]
            assert all(link.conn is not None for link in links)
            for n in range(10):
                await running.hub.publish("chat:room", {"n": n, "b": "é" * n})
            for sub in subs:
                got = [(await anext(sub)).data for _ in range(10)]
                assert got == [{"n": n, "b": "é" * n} for n in range(10)]
            assert all(len(sessions_of(running, user).queue) == 0 for user in "jm")


async def test_compressed_connections_take_the_queue_and_get_compressed_messages() -> None:
    async with run_hub() as running:
        client = await RawClient.open(running.url, compression="deflate")
        await client.connect(token("z"))
        await client.call("subscribe", channel="chat:room")
        link = running.hub._links[sessions_of(running, "z")]
        assert link.conn is None  # permessage-deflate: each message is compressed on its own
        assert "permessage-deflate" in client.ws.extensions
        text = "compress me " * 200
        await running.hub.publish("chat:room", {"text": text})
        push = await client.push()
        assert push["data"] == {"text": text}
        await client.close()


async def test_replies_waiting_in_the_queue_keep_their_place() -> None:
    """A publication never overtakes what the session queued before it."""
    async with run_hub() as running:
        client = await RawClient.open(running.url, compression=None)
        await client.connect(token("o"))
        session = sessions_of(running, "o")
        # Subscribe and publish in one batch: the subscribe reply is queued, then the
        # client's own publication arrives while the reply still waits for the writer.
        await client.send(
            {"id": 10, "method": "subscribe", "channel": "chat:room"},
            {"id": 11, "method": "publish", "channel": "chat:room", "data": "first"},
        )
        frames: list[dict[str, object]] = []
        async with asyncio.timeout(5):
            while len(frames) < 3:
                frames += await client.frames()
        kinds = [frame.get("id", frame.get("push")) for frame in frames]
        assert kinds.index(10) < kinds.index("pub")
        assert session.queue.size_bytes == 0
        await client.close()


async def test_a_peer_that_stops_reading_falls_back_to_the_queue() -> None:
    ns = NamespaceOptions(queue_max_bytes=1 << 20)
    async with run_hub(options(namespaces={**NAMESPACES, "ticks": ns})) as running:
        slow = await RawClient.open(running.url, max_queue=1, compression=None, ping_interval=None)
        await slow.connect(token("slow"))
        await slow.call("subscribe", channel="ticks:all")
        session = sessions_of(running, "slow")
        link = running.hub._links[session]
        pad = "x" * 4000
        sent = 0
        while not len(session.queue):  # until the transport pauses and the queue takes over
            await running.hub.publish("ticks:all", {"n": sent, "pad": pad})
            sent += 1
            await asyncio.sleep(0)
            assert sent < 10_000
        assert (link.conn is not None and link.conn._paused_writing) or link.sending
        # The peer reads again: everything arrives, in order, whichever way it went.
        seen = []
        async with asyncio.timeout(10):
            while len(seen) < sent:
                for frame in await slow.frames():
                    if frame.get("push") == "pub":
                        seen.append(frame["data"]["n"])
        assert seen == list(range(sent))
        await slow.close()


async def test_write_prepared_writes_only_what_send_would_write_now() -> None:
    server_side: list[wsend.ServerConnection] = []
    ready = asyncio.Event()

    async def handler(ws: wsend.ServerConnection) -> None:
        server_side.append(ws)
        ready.set()
        await ws.wait_closed()

    frame = b"\x81\x05hello"  # a final text frame, unmasked: "hello"
    async with wsend.serve(handler, "127.0.0.1", 0, compression=None) as server:
        client = await wsend.connect(f"ws://127.0.0.1:{server.port}", compression=None)
        await ready.wait()
        ws = server_side[0]
        assert write_prepared(ws, frame)
        assert await client.recv() == "hello"
        # Corked output goes first: the prepared frame is refused, to be sent in order.
        ws.send_nowait("one")
        ws.send_nowait("two")
        assert not write_prepared(ws, frame)
        assert await client.recv() == "one"
        assert await client.recv() == "two"
        await asyncio.sleep(0)  # the iteration's corked write happened
        assert write_prepared(ws, frame)
        assert await client.recv() == "hello"
        await client.close()
        await ws.wait_closed()
        assert not write_prepared(ws, frame)
