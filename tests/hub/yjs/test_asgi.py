"""The Yjs endpoint mounted in a Starlette application, served by real uvicorn: Node clients
(yjs + y-websocket) edit one document through it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pycrdt
from starlette.applications import Starlette
from starlette.routing import Mount

from wsend.hub.node import Hub
from wsend.hub.options import HubOptions, NamespaceOptions
from wsend.hub.yjs import MemoryStore, YjsServer
from wsend.hub.yjs.asgi import yjs_app

from ..asgi_apps import run_uvicorn
from .peers import NodePeer, converged


async def test_node_clients_through_a_starlette_mount() -> None:
    options = HubOptions(
        namespaces={"yjs": NamespaceOptions(publish=True, presence=True)}, allow_anonymous=True
    )
    hub = Hub(options)
    yjs = YjsServer(hub, store=MemoryStore())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await yjs.close()
        await hub.close()

    app = Starlette(routes=[Mount("/yjs", app=yjs_app(yjs))], lifespan=lifespan)
    async with run_uvicorn(app) as (port, _):
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/yjs/notes")
            assert response.status_code == 426
        url = f"ws://127.0.0.1:{port}/yjs"
        peers = [await NodePeer.start(url, "notes") for _ in range(2)]
        try:
            await asyncio.gather(*(peer.synced() for peer in peers))
            await asyncio.gather(
                peers[0].call("edit", count=50, seed=3), peers[1].call("edit", count=50, seed=4)
            )
            text = await converged(peers)
            assert str(yjs.rooms["yjs:notes"].doc.get("text", type=pycrdt.Text)) == text
            assert len(await hub.presence_of("yjs:notes")) == 2
        finally:
            await asyncio.gather(*(peer.close() for peer in peers))
