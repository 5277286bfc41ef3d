"""The hub inside a FastAPI application: the application's login cookie authenticates the hub's
WebSocket connections, its backend publishes through the hub's HTTP API.

    pip install 'wsend[hub]' fastapi uvicorn itsdangerous
    python examples/hub/fastapi_app.py        # http://127.0.0.1:8000

``POST /login?user=alice`` sets the session cookie; a WebSocket to ``/ws/`` then connects as
alice without a token (browsers send the cookie with the upgrade request). ``POST /api/publish``
with ``X-API-Key`` publishes; ``GET /metrics`` is for Prometheus. See docs/hub/asgi.md.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware

from wsend.hub.asgi import Scope, api_app, asgi_app, metrics_app
from wsend.hub.auth import ConnectionClaims
from wsend.hub.node import Hub
from wsend.hub.options import HubOptions, NamespaceOptions
from wsend.protocol.http import Request as Handshake

chat = NamespaceOptions(
    subscribe="authenticated",
    publish=True,
    presence=True,
    history_size=100,
    history_ttl=300,
    recovery=True,
)
hub = Hub(
    HubOptions(namespaces={"chat": chat}),
    api_key=os.environ.get("HUB_API_KEY", "change-me"),
)


def from_session(handshake: Handshake, scope: Scope) -> ConnectionClaims | None:
    """The user the application's session cookie names (SessionMiddleware decoded it)."""
    user = scope.get("session", {}).get("user")
    return ConnectionClaims(user=user, info={"name": user}) if user else None


hub_app = asgi_app(hub, authenticate=from_session)
app = FastAPI(lifespan=hub_app.lifespan)  # the hub starts and stops with the application
app.add_middleware(SessionMiddleware, secret_key=os.environ.get("SESSION_SECRET", "change-me"))


@app.post("/login")
async def login(request: Request, user: str) -> dict[str, str]:
    """Log in (a real application checks a password first)."""
    request.session["user"] = user
    return {"user": user}


app.mount("/ws", hub_app)  # ws://HOST/ws/
app.mount("/api", api_app(hub))  # POST /api/publish, /api/presence, ...
app.add_route("/metrics", metrics_app(hub))

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
