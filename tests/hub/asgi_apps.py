"""Helpers of the ASGI tests: host applications with the hub mounted, served by real servers.

:func:`fastapi_app` mounts the hub's WebSocket endpoint at ``/ws`` (so its URL is ``/ws/``) and
:func:`starlette_app` routes it at ``/ws``; both mount the HTTP API at ``/api`` and route the
metrics at ``/metrics``, behind Starlette's ``SessionMiddleware``
(the host application's login sets ``request.session["user"]``). :func:`authenticate` is the
hook they use: the session cookie first, then an ``Authorization: Bearer`` header the host
application knows, else the hub's own tokens. :func:`run_uvicorn` serves an app on a free
loopback port with uvicorn (its default WebSocket layer, or another one).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute

from wsend.hub.asgi import ASGIApp, HubApp, Scope, api_app, asgi_app, metrics_app
from wsend.hub.auth import ConnectionClaims
from wsend.hub.codes import ErrorCode, HubError
from wsend.hub.node import Hub
from wsend.protocol.http import Request

COOKIE_SECRET = "host-application-cookie-secret"
#: The bearer tokens the host application knows, and their users.
BEARERS = {"bob-token": "bob"}


def authenticate(request: Request, scope: Scope) -> ConnectionClaims | None:
    """The host application's credentials: its session cookie, then its bearer tokens.

    Raises:
        HubError: 101, an unknown bearer token.
    """
    user = scope.get("session", {}).get("user")
    if user:
        return ConnectionClaims(user=user, info={"via": "cookie"})
    scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer":
        if value not in BEARERS:
            raise HubError(ErrorCode.UNAUTHORIZED, "unknown bearer token")
        return ConnectionClaims(user=BEARERS[value], info={"via": "header"})
    return None


def fastapi_app(hub: Hub, **hub_app_options: Any) -> FastAPI:
    """A FastAPI application with a login route and the hub mounted."""
    hub_app = asgi_app(hub, authenticate=authenticate, **hub_app_options)
    app = FastAPI(lifespan=hub_app.lifespan)
    app.add_middleware(SessionMiddleware, secret_key=COOKIE_SECRET)

    @app.post("/login")
    async def login(request: FastAPIRequest, user: str) -> dict[str, str]:
        request.session["user"] = user
        return {"user": user}

    app.mount("/ws", hub_app)
    app.mount("/api", api_app(hub))
    app.add_route("/metrics", metrics_app(hub))
    return app


def starlette_app(hub: Hub, **hub_app_options: Any) -> Starlette:
    """The same as :func:`fastapi_app`, in plain Starlette."""
    hub_app = asgi_app(hub, authenticate=authenticate, **hub_app_options)

    async def login(request: StarletteRequest) -> JSONResponse:
        request.session["user"] = request.query_params["user"]
        return JSONResponse({"user": request.session["user"]})

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            WebSocketRoute("/ws", hub_app),
            Mount("/api", api_app(hub)),
            Route("/hub-api/{method}", api_app(hub), methods=["POST"]),  # routed, not mounted
            Route("/metrics", metrics_app(hub)),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=COOKIE_SECRET)],
        lifespan=hub_app.lifespan,
    )


#: The host applications, and the URL path of the hub's endpoint in each.
APPS = {"fastapi": (fastapi_app, "/ws/"), "starlette": (starlette_app, "/ws")}


@dataclass
class Served:
    """An application being served: its hub and its port."""

    hub: Hub
    port: int
    server: uvicorn.Server
    path: str = "/ws"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def run_uvicorn(
    app: ASGIApp | HubApp, **config: Any
) -> AsyncIterator[tuple[int, uvicorn.Server]]:
    """Serve ``app`` with uvicorn on a free loopback port (``config``: uvicorn's options)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    settings = {"log_level": "warning", "lifespan": "on", **config}
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield sock.getsockname()[1], server
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task
        sock.close()


@contextlib.asynccontextmanager
async def serve_app(
    hub: Hub, kind: str = "fastapi", hub_app_options: dict[str, Any] | None = None, **config: Any
) -> AsyncIterator[Served]:
    """The ``kind`` host application (:data:`APPS`) with ``hub`` mounted, served by uvicorn
    (``config``: uvicorn's options)."""
    make, path = APPS[kind]
    async with run_uvicorn(make(hub, **(hub_app_options or {})), **config) as (port, server):
        yield Served(hub, port, server, path)
