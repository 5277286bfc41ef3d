"""wsend.broadcast: one frame built once, sent to every open connection."""

from __future__ import annotations

import asyncio

import pytest

import wsend


@pytest.mark.timeout(30)
@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_broadcast_reaches_every_open_client(compression: str | None) -> None:
    connected: list[wsend.ServerConnection] = []
    ready = asyncio.Event()

    async def handler(ws: wsend.ServerConnection) -> None:
        connected.append(ws)
        if len(connected) == 20:
            ready.set()
        await ws.wait_closed()

    async with wsend.serve(handler, "127.0.0.1", 0, compression=compression) as server:
        clients = [
            await wsend.connect(f"ws://127.0.0.1:{server.port}", compression=compression)
            for _ in range(20)
        ]
        await ready.wait()
        await clients[0].close()
        await connected[0].wait_closed()
        assert wsend.broadcast(connected, "hello everyone") == 19
        assert wsend.broadcast(connected, b"\x00\x01") == 19
        for client in clients[1:]:
            assert await client.recv() == "hello everyone"
            assert await client.recv() == b"\x00\x01"
        # Client connections can broadcast too (each frame masked on its own).
        assert wsend.broadcast(clients[1:3], "from clients") == 2
        for ws in connected[1:3]:
            assert await ws.recv() == "from clients"
        for client in clients[1:]:
            await client.close()


@pytest.mark.timeout(30)
async def test_broadcast_skips_slow_connections_and_reports_errors() -> None:
    done = asyncio.Event()
    server_side: list[wsend.ServerConnection] = []

    async def handler(ws: wsend.ServerConnection) -> None:
        server_side.append(ws)
        done.set()
        await ws.wait_closed()

    async with wsend.serve(handler, "127.0.0.1", 0, compression=None) as server:
        client = await wsend.connect(f"ws://127.0.0.1:{server.port}", compression=None)
        await done.wait()
        ws = server_side[0]
        assert wsend.broadcast([ws], "x", max_buffered=-1) == 0
        with pytest.raises(TypeError):
            wsend.broadcast([ws], {"not": "sendable"})  # type: ignore[arg-type]
        await client.close()
        await ws.wait_closed()
        assert wsend.broadcast([ws], "late") == 0


@pytest.mark.timeout(30)
async def test_broadcast_keeps_order_behind_corked_sends_and_skips_streams() -> None:
    async def handler(ws: wsend.ServerConnection) -> None:
        await ws.send("a")
        await ws.send("b")  # corked until the end of this loop iteration
        assert wsend.broadcast([ws], "c") == 1  # queued behind it
        await asyncio.sleep(0.05)
        assert wsend.broadcast([ws], "d") == 1  # nothing pending: written at once

        async def chunks():
            yield "e1"
            await asyncio.sleep(0.1)
            yield "e2"

        streaming = asyncio.ensure_future(ws.send(chunks()))
        await asyncio.sleep(0.05)
        assert wsend.broadcast([ws], "skipped") == 0  # a fragmented message is in progress
        await streaming
        await ws.wait_closed()

    async with (
        wsend.serve(handler, "127.0.0.1", 0) as server,
        wsend.connect(f"ws://127.0.0.1:{server.port}") as client,
    ):
        assert [await client.recv() for _ in range(5)] == ["a", "b", "c", "d", "e1e2"]
